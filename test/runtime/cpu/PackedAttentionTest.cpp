// Tests of the CPU rotary and attention kernels over documents packed in one
// row (position ids restarting at each document): an fp64 reference with a
// block-diagonal causal mask, finite differences, and equality with running
// each document alone.
#include "runtime/cpu/Attention.h"
#include "test/Tolerances.h"
#include "test/runtime/cpu/AttentionReference.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace mt::cpu {
namespace {

using namespace check;
namespace tol = mt::tolerance;
using Doubles = std::vector<double>;
using Floats = std::vector<float>;
using Ids = std::vector<int32_t>;

Floats randomFloats(size_t n, uint32_t seed, float range = 1.0f) {
  std::mt19937 rng(seed);
  return randomVector(rng, n, -range, range);
}

/// Position ids of rows made of documents of the given lengths (each row's
/// lengths sum to seq), as LLaMA-Factory's packing writes them.
Ids positionsOf(const std::vector<std::vector<int32_t>> &rows) {
  Ids ids;
  for (const auto &lengths : rows)
    for (int32_t n : lengths)
      for (int32_t p = 0; p < n; ++p)
        ids.push_back(p);
  return ids;
}

/// Two rows of 13 tokens: documents 5, 1, 7 and 13 (one document).
struct Packed {
  AttentionShape shape;
  std::vector<std::vector<int32_t>> lengths = {{5, 1, 7}, {13}};
  Ids positions = positionsOf(lengths);
  Floats q, k, v, dout;

  Packed(int64_t heads, int64_t kvHeads, int64_t dim, uint32_t seed)
      : shape{2, 13, heads, kvHeads, dim, 1.0f / std::sqrt(float(dim))},
        q(randomFloats(size_t(2 * 13 * heads * dim), seed, 1.5f)),
        k(randomFloats(size_t(2 * 13 * kvHeads * dim), seed + 1, 1.5f)),
        v(randomFloats(size_t(2 * 13 * kvHeads * dim), seed + 2)),
        dout(randomFloats(size_t(2 * 13 * heads * dim), seed + 3)) {}
};

TEST(PackedAttention, ForwardMatchesBlockDiagonalReference) {
  for (auto [heads, kvHeads] : {std::pair{4, 2}, {4, 4}, {6, 1}}) {
    Packed p(heads, kvHeads, 16, 7);
    Floats out(p.q.size()), lse(size_t(2 * heads * 13));
    attentionForward(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(), p.shape,
                     p.positions.data());
    Doubles refOut, refLse;
    refAttention(toDouble(p.q), toDouble(p.k), toDouble(p.v), p.shape, refOut, refLse,
                 &p.positions);
    const std::string what = "heads " + std::to_string(heads) + "/" + std::to_string(kvHeads);
    expectClose(out, refOut, tol::kFp32KernelRel, tol::kFp32KernelAbs, "out " + what);
    expectClose(lse, refLse, tol::kFp32KernelRel, tol::kFp32KernelAbs, "lse " + what);
  }
}

TEST(PackedAttention, BackwardMatchesFiniteDifferences) {
  Packed p(4, 2, 8, 17);
  Floats out(p.q.size()), lse(size_t(2 * 4 * 13));
  attentionForward(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(), p.shape,
                   p.positions.data());
  Floats dq(p.q.size(), 0.0f), dk(p.k.size(), 0.0f), dv(p.v.size(), 0.0f);
  attentionBackward(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(),
                    p.dout.data(), dq.data(), dk.data(), dv.data(), p.shape,
                    p.positions.data());
  Doubles q = toDouble(p.q), k = toDouble(p.k), v = toDouble(p.v);
  const Doubles dout = toDouble(p.dout);
  const auto loss = [&] {
    Doubles o, l;
    refAttention(q, k, v, p.shape, o, l, &p.positions);
    return sumProduct(dout, o);
  };
  expectClose(dq, finiteDifference(q, loss), tol::kGradientRel, tol::kGradientAbs, "dq");
  expectClose(dk, finiteDifference(k, loss), tol::kGradientRel, tol::kGradientAbs, "dk");
  expectClose(dv, finiteDifference(v, loss), tol::kGradientRel, tol::kGradientAbs, "dv");
}

/// Rows [row * seq + first, + n) of a [batch, seq, heads, dim] tensor.
Floats slice(const Floats &x, int64_t seq, int64_t heads, int64_t dim, int64_t row,
             int64_t first, int64_t n) {
  const int64_t width = heads * dim;
  auto begin = x.begin() + (row * seq + first) * width;
  return Floats(begin, begin + n * width);
}

// Each document of a packed row computes exactly what it computes alone in a
// row of its own length: out, lse, dq, dk, dv and the rotary embedding are
// bit-identical (the kernels sum the same terms in the same order).
TEST(PackedAttention, EqualsEachDocumentAlone) {
  const int64_t H = 4, G = 2, D = 16;
  Packed p(H, G, D, 27);
  const AttentionShape &s = p.shape;
  Floats out(p.q.size()), lse(size_t(2 * H * 13));
  attentionForward(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(), s,
                   p.positions.data());
  Floats dq(p.q.size(), 0.0f), dk(p.k.size(), 0.0f), dv(p.v.size(), 0.0f);
  attentionBackward(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(),
                    p.dout.data(), dq.data(), dk.data(), dv.data(), s, p.positions.data());
  RotaryParams rope;
  Floats rotated(p.q.size());
  rotaryForward(p.q.data(), rotated.data(), s.batch, s.seq, H, D, rope, p.positions.data());
  int documents = 0;
  for (int64_t row = 0; row < s.batch; ++row) {
    int64_t first = 0;
    for (int32_t n : p.lengths[size_t(row)]) {
      const AttentionShape alone{1, n, H, G, D, s.scale};
      auto sq = [&](const Floats &x) { return slice(x, s.seq, H, D, row, first, n); };
      auto skv = [&](const Floats &x) { return slice(x, s.seq, G, D, row, first, n); };
      const Floats q = sq(p.q), k = skv(p.k), v = skv(p.v), dOut = sq(p.dout);
      Floats o(q.size()), l(size_t(H * n));
      attentionForward(q.data(), k.data(), v.data(), o.data(), l.data(), alone);
      Floats gq(q.size(), 0.0f), gk(k.size(), 0.0f), gv(v.size(), 0.0f);
      attentionBackward(q.data(), k.data(), v.data(), o.data(), l.data(), dOut.data(),
                        gq.data(), gk.data(), gv.data(), alone);
      Floats r(q.size());
      rotaryForward(q.data(), r.data(), 1, n, H, D, rope);
      const std::string what = "row " + std::to_string(row) + " document at " +
                               std::to_string(first) + " (" + std::to_string(n) + " tokens)";
      EXPECT_EQ(sq(out), o) << what;
      EXPECT_EQ(sq(dq), gq) << what;
      EXPECT_EQ(skv(dk), gk) << what;
      EXPECT_EQ(skv(dv), gv) << what;
      EXPECT_EQ(sq(rotated), r) << what;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < n; ++i)
          EXPECT_EQ(lse[size_t((row * H + h) * s.seq + first + i)], l[size_t(h * n + i)])
              << what << " lse head " << h << " position " << i;
      first += n;
      ++documents;
    }
  }
  EXPECT_EQ(documents, 4);
}

TEST(PackedRotary, BackwardMatchesFiniteDifferences) {
  Packed p(3, 3, 16, 37);
  const AttentionShape &s = p.shape;
  Floats dx(p.q.size(), 0.0f);
  RotaryParams rope;
  rotaryBackward(p.dout.data(), dx.data(), s.batch, s.seq, s.heads, s.headDim, rope,
                 p.positions.data());
  Doubles x = toDouble(p.q);
  const Doubles dy = toDouble(p.dout);
  const auto loss = [&] {
    // sum(dy * rotary(x)) in fp64, with the kernel's cos/sin at each
    // token's own position.
    Doubles inv(size_t(s.headDim / 2));
    kernels::rotaryInverseFrequencies(rope, s.headDim, inv.data());
    double total = 0;
    const int64_t half = s.headDim / 2;
    for (int64_t row = 0; row < s.batch * s.seq; ++row)
      for (int64_t h = 0; h < s.heads; ++h)
        for (int64_t i = 0; i < half; ++i) {
          float c, sn;
          kernels::rotaryCosSin(p.positions[size_t(row)], inv[size_t(i)], c, sn);
          const size_t at = size_t((row * s.heads + h) * s.headDim + i);
          total += dy[at] * (x[at] * c - x[at + half] * sn) +
                   dy[at + half] * (x[at + half] * c + x[at] * sn);
        }
    return total;
  };
  expectClose(dx, finiteDifference(x, loss), tol::kGradientRel, tol::kGradientAbs, "dx");
}

// A row holding one document (position ids 0..S-1) is plain causal attention.
TEST(PackedAttention, OneDocumentIsCausalAttention) {
  Packed p(4, 2, 8, 47);
  Ids plain(26);
  for (size_t i = 0; i < plain.size(); ++i)
    plain[i] = int32_t(i % 13);
  Floats o1(p.q.size()), l1(size_t(2 * 4 * 13)), o2 = o1, l2 = l1;
  attentionForward(p.q.data(), p.k.data(), p.v.data(), o1.data(), l1.data(), p.shape,
                   plain.data());
  attentionForward(p.q.data(), p.k.data(), p.v.data(), o2.data(), l2.data(), p.shape);
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(l1, l2);
}

} // namespace
} // namespace mt::cpu
