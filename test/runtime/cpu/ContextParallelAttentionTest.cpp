// The CPU attention kernels under context parallelism: each rank's queries
// in Megatron-Core's load-balanced layout against every rank's gathered keys
// and values (cp_comm_type all_gather), or against each rank's in turn with
// log-sum-exp merges (p2p, the ring), give the single rank's output,
// log-sum-exp and, summed over ranks, gradients, at the tokens' places in the
// sequence. Chunks of 3 and 5 tokens: no block size divides them. With
// packed documents (position ids restarting per document, whose boundaries
// fall inside chunks, on chunk boundaries, and whose documents span chunks
// of other ranks) attention stays within each document under both.
#include "runtime/cpu/Attention.h"
#include "runtime/cpu/RingAttention.h"
#include "runtime/kernels/ContextParallel.h"
#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <vector>

namespace mt::cpu {
namespace {

using Floats = std::vector<float>;
namespace tol = mt::tolerance;

struct Case {
  int64_t cp, seq;
  bool documents = false;
  friend void PrintTo(const Case &c, std::ostream *os) {
    *os << "cp " << c.cp << ", seq " << c.seq << (c.documents ? ", documents" : "");
  }
};

class ContextParallelAttention : public ::testing::TestWithParam<Case> {};

/// Rows [batch, seq, width] of `full` at the places of rank `rank`'s tokens.
template <typename T>
std::vector<T> slice(const std::vector<T> &full, int64_t batch, int64_t seq, int64_t width,
                     int64_t rank, int64_t cp) {
  const int64_t local = seq / cp;
  std::vector<T> out(size_t(batch * local * width));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t l = 0; l < local; ++l) {
      int64_t s = kernels::contextParallelPosition(l, local, rank, cp);
      std::copy_n(full.begin() + (b * seq + s) * width, width,
                  out.begin() + (b * local + l) * width);
    }
  return out;
}

/// The all-gather over cp of every rank's slice: [batch, cp · local, width],
/// rank-major along the sequence (mt.all_gather along dimension 1).
Floats gathered(const Floats &full, int64_t batch, int64_t seq, int64_t width, int64_t cp) {
  const int64_t local = seq / cp;
  Floats out(full.size());
  for (int64_t r = 0; r < cp; ++r) {
    Floats mine = slice(full, batch, seq, width, r, cp);
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(mine.begin() + b * local * width, local * width,
                  out.begin() + (b * seq + r * local) * width);
  }
  return out;
}

/// Within fp32 kernel tolerance of the largest magnitude of `want`
/// (test/Tolerances.h): the sums run in another order than the single rank's.
void expectClose(const Floats &got, const Floats &want, const char *what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0;
  for (float w : want)
    scale = std::max(scale, double(std::fabs(w)));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol::kFp32KernelAbs + tol::kFp32KernelRel * scale)
        << what << " at " << i;
}

/// Position ids [batch, seq] of documents packed in rows: lengths 5, 1, 4,
/// 2, 7 in turn (row b starting b places into the cycle), the last one cut
/// by the row's end.
std::vector<int32_t> packedPositions(int64_t batch, int64_t seq) {
  const int32_t lengths[] = {5, 1, 4, 2, 7};
  std::vector<int32_t> pos(size_t(batch * seq));
  for (int64_t b = 0; b < batch; ++b) {
    int64_t doc = b, at = 0;
    for (int64_t s = 0; s < seq; ++s, ++at) {
      if (at == lengths[doc % 5])
        at = 0, ++doc;
      pos[size_t(b * seq + s)] = int32_t(at);
    }
  }
  return pos;
}

/// Random queries, keys, values and output gradient of a whole sequence
/// (seeded), with packed documents' position ids or none, and the single
/// rank's attention of them: the reference.
struct WholeSequence {
  static constexpr int64_t batch = 2, heads = 4, kvHeads = 2, dim = 8;
  static constexpr int64_t qw = heads * dim, kw = kvHeads * dim;
  Floats q, k, v, dout, out, lse, dq, dk, dv;
  std::vector<int32_t> pos;

  /// The rank's slice of the position ids; null without documents.
  const int32_t *positionsOf(std::vector<int32_t> &mine, int64_t seq, int64_t rank,
                             int64_t cp) const {
    if (pos.empty())
      return nullptr;
    mine = slice(pos, batch, seq, 1, rank, cp);
    return mine.data();
  }

  WholeSequence(int64_t seq, unsigned seed, bool documents) {
    if (documents)
      pos = packedPositions(batch, seq);
    const int32_t *positions = documents ? pos.data() : nullptr;
    std::mt19937 rng(seed);
    q = check::randomVector(rng, size_t(batch * seq * qw), -1, 1);
    k = check::randomVector(rng, size_t(batch * seq * kw), -1, 1);
    v = check::randomVector(rng, size_t(batch * seq * kw), -1, 1);
    dout = check::randomVector(rng, q.size(), -1, 1);
    const AttentionShape whole{batch, seq, heads, kvHeads, dim, 0.35f};
    out.resize(q.size()), lse.resize(size_t(batch * heads * seq));
    attentionForward(q.data(), k.data(), v.data(), out.data(), lse.data(), whole, positions);
    dq.resize(q.size()), dk.resize(k.size()), dv.resize(v.size());
    attentionBackward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(),
                      dq.data(), dk.data(), dv.data(), whole, positions);
  }
};

TEST_P(ContextParallelAttention, MatchesTheWholeSequence) {
  const auto [cp, seq, documents] = GetParam();
  const WholeSequence w(seq, 7, documents);
  const int64_t batch = w.batch, heads = w.heads, kvHeads = w.kvHeads, dim = w.dim;
  const int64_t local = seq / cp, qw = w.qw, kw = w.kw;
  const Floats &q = w.q, &k = w.k, &v = w.v, &dout = w.dout, &out = w.out, &lse = w.lse;
  const Floats &dq = w.dq, &dk = w.dk, &dv = w.dv;

  const Floats kAll = gathered(k, batch, seq, kw, cp), vAll = gathered(v, batch, seq, kw, cp);
  Floats dkSum(k.size()), dvSum(v.size()); // over ranks, in gathered order
  for (int64_t r = 0; r < cp; ++r) {
    AttentionShape shape{batch, local, heads, kvHeads, dim, 0.35f};
    shape.cpRank = r;
    shape.cpSize = cp;
    Floats qr = slice(q, batch, seq, qw, r, cp), dor = slice(dout, batch, seq, qw, r, cp);
    std::vector<int32_t> posR;
    const int32_t *positions = w.positionsOf(posR, seq, r, cp);
    Floats outR(qr.size()), lseR(size_t(batch * heads * local));
    attentionForward(qr.data(), kAll.data(), vAll.data(), outR.data(), lseR.data(), shape,
                     positions);
    expectClose(outR, slice(out, batch, seq, qw, r, cp), "out");
    // lse [batch, heads, seq]: the rank's tokens of each (batch, head) row.
    Floats lseWant = slice(lse, batch * heads, seq, 1, r, cp);
    expectClose(lseR, lseWant, "lse");
    Floats dqR(qr.size()), dkR(kAll.size()), dvR(vAll.size());
    attentionBackward(qr.data(), kAll.data(), vAll.data(), outR.data(), lseR.data(), dor.data(),
                      dqR.data(), dkR.data(), dvR.data(), shape, positions);
    expectClose(dqR, slice(dq, batch, seq, qw, r, cp), "dq");
    for (size_t i = 0; i < dkSum.size(); ++i)
      dkSum[i] += dkR[i], dvSum[i] += dvR[i];
  }
  expectClose(dkSum, gathered(dk, batch, seq, kw, cp), "dk summed over cp");
  expectClose(dvSum, gathered(dv, batch, seq, kw, cp), "dv summed over cp");
}

// The ring on one process: rank r's step t reads the slice of rank
// (r - t) mod cp; the backward runs autodiff's chain in reverse (merges,
// then blocks) and hands each step's key/value gradients to their owner.
TEST_P(ContextParallelAttention, RingMatchesTheWholeSequence) {
  const auto [cp, seq, documents] = GetParam();
  const WholeSequence w(seq, 11, documents);
  const int64_t batch = w.batch, heads = w.heads, kvHeads = w.kvHeads, dim = w.dim;
  const int64_t local = seq / cp, qw = w.qw, kw = w.kw;
  const Floats &q = w.q, &k = w.k, &v = w.v, &dout = w.dout, &out = w.out, &lse = w.lse;
  const Floats &dq = w.dq, &dk = w.dk, &dv = w.dv;

  std::vector<Floats> ks, vs, dks(static_cast<size_t>(cp)), dvs(dks);
  for (int64_t r = 0; r < cp; ++r) {
    ks.push_back(slice(k, batch, seq, kw, r, cp));
    vs.push_back(slice(v, batch, seq, kw, r, cp));
    dks[size_t(r)].assign(ks.back().size(), 0.0f);
    dvs[size_t(r)].assign(vs.back().size(), 0.0f);
  }
  const size_t outSize = size_t(batch * local * qw), lseSize = size_t(batch * heads * local);
  for (int64_t r = 0; r < cp; ++r) {
    AttentionShape shape{batch, local, heads, kvHeads, dim, 0.35f};
    shape.cpRank = r;
    shape.cpSize = cp;
    Floats qr = slice(q, batch, seq, qw, r, cp);
    std::vector<int32_t> posR;
    const int32_t *positions = w.positionsOf(posR, seq, r, cp);
    // Forward: blocks o[t], l[t]; merged m[t], ml[t] (m[0] = o[0]).
    std::vector<Floats> o(static_cast<size_t>(cp), Floats(outSize));
    std::vector<Floats> l(static_cast<size_t>(cp), Floats(lseSize));
    std::vector<Floats> m(o), ml(l);
    for (int64_t t = 0; t < cp; ++t) {
      const int64_t src = (r - t + cp) % cp;
      attentionBlockForward(qr.data(), ks[size_t(src)].data(), vs[size_t(src)].data(),
                            o[size_t(t)].data(), l[size_t(t)].data(), shape, t, positions);
      if (t == 0)
        m[0] = o[0], ml[0] = l[0];
      else
        attentionMergeForward(m[size_t(t - 1)].data(), ml[size_t(t - 1)].data(),
                              o[size_t(t)].data(), l[size_t(t)].data(), m[size_t(t)].data(),
                              ml[size_t(t)].data(), batch, local, heads, dim);
    }
    expectClose(m.back(), slice(out, batch, seq, qw, r, cp), "ring out");
    expectClose(ml.back(), slice(lse, batch * heads, seq, 1, r, cp), "ring lse");
    // Backward: dm, dml of the last merge; then each merge's and block's.
    Floats dm = slice(dout, batch, seq, qw, r, cp), dml(lseSize, 0.0f), dqR(qr.size());
    for (int64_t t = cp - 1; t >= 0; --t) {
      Floats dO(outSize), dL(lseSize);
      if (t == 0) {
        dO = dm, dL = dml;
      } else {
        Floats dPrev(outSize), dPrevL(lseSize);
        attentionMergeBackward(m[size_t(t - 1)].data(), ml[size_t(t - 1)].data(),
                               o[size_t(t)].data(), l[size_t(t)].data(), m[size_t(t)].data(),
                               ml[size_t(t)].data(), dm.data(), dml.data(), dPrev.data(),
                               dPrevL.data(), dO.data(), dL.data(), batch, local, heads, dim);
        dm = dPrev, dml = dPrevL;
      }
      const int64_t src = (r - t + cp) % cp;
      attentionBlockBackward(qr.data(), ks[size_t(src)].data(), vs[size_t(src)].data(),
                             o[size_t(t)].data(), l[size_t(t)].data(), dO.data(), dL.data(),
                             dqR.data(), dks[size_t(src)].data(), dvs[size_t(src)].data(),
                             shape, t, positions);
    }
    expectClose(dqR, slice(dq, batch, seq, qw, r, cp), "ring dq");
  }
  for (int64_t r = 0; r < cp; ++r) {
    expectClose(dks[size_t(r)], slice(dk, batch, seq, kw, r, cp), "ring dk");
    expectClose(dvs[size_t(r)], slice(dv, batch, seq, kw, r, cp), "ring dv");
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, ContextParallelAttention,
                         ::testing::Values(Case{2, 12}, Case{4, 24}, Case{2, 20},
                                           Case{2, 12, true}, Case{4, 24, true},
                                           Case{2, 20, true}),
                         [](const auto &info) {
                           return "cp" + std::to_string(info.param.cp) + "_seq" +
                                  std::to_string(info.param.seq) +
                                  (info.param.documents ? "_documents" : "");
                         });

TEST(ContextParallelPosition, IsMegatronCoresLoadBalancedLayout) {
  // cp 2, 8 tokens: rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
  const int64_t want[2][4] = {{0, 1, 6, 7}, {2, 3, 4, 5}};
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t l = 0; l < 4; ++l)
      EXPECT_EQ(kernels::contextParallelPosition(l, 4, r, 2), want[r][l]) << r << " " << l;
  EXPECT_EQ(kernels::contextParallelGatheredPosition(5, 4, 2), 3);
}

// The ring attention kernels bound a block's work by it: for every place of
// the whole sequence (and one past either end), the rows of a slice placed
// before it, counted one by one.
TEST(ContextParallelRowsBefore, InvertsThePositions) {
  for (int64_t cp : {1, 2, 3, 4})
    for (int64_t local : {2, 6, 74})
      for (int64_t rank = 0; rank < cp; ++rank)
        for (int64_t place = -1; place <= local * cp + 1; ++place) {
          int64_t want = 0;
          for (int64_t l = 0; l < local; ++l)
            want += kernels::contextParallelPosition(l, local, rank, cp) < place;
          EXPECT_EQ(kernels::contextParallelRowsBefore(place, local, rank, cp), want)
              << "cp " << cp << " local " << local << " rank " << rank << " place " << place;
        }
}

// The CUDA rotary kernels look each angle up in a table of
// kernels::rotaryTableRows rows, clamping a position into it. A cp rank's
// rotary takes its tokens' places in the whole row, or with packed
// documents their position ids (no context_parallel_axis), which a
// document begun in an earlier chunk takes past the slice's length. That
// lookup, emulated by the CPU kernel at the clamped positions, must rotate
// as the CPU kernel does at the positions themselves: a table of the
// slice's length rotated such tokens at its last row (the packed cp2 runs
// on two GPUs drifted from one GPU by 1e-3 at step 1).
TEST(ContextParallelRotary, TableRowsCoverEveryRanksPositions) {
  const int64_t batch = 2, seq = 24, heads = 2, dim = 8;
  // Row b: a document of b + 2 tokens, then one to the row's end.
  std::vector<int32_t> ids(size_t(batch * seq)), places(ids.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s) {
      ids[size_t(b * seq + s)] = int32_t(s < b + 2 ? s : s - (b + 2));
      places[size_t(b * seq + s)] = int32_t(s);
    }
  const RotaryParams params{500000.0, 32.0, 1.0, 4.0, 16};
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  bool pastTheSlice = false;
  for (int64_t cp : {2, 4})
    for (int64_t rank = 0; rank < cp; ++rank)
      for (bool documents : {false, true}) {
        const int64_t local = seq / cp;
        const std::vector<int32_t> mine = slice(documents ? ids : places, batch, seq, 1, rank, cp);
        const int64_t rows = kernels::rotaryTableRows(local, documents ? 1 : cp, seq);
        std::vector<int32_t> looked(mine);
        for (int32_t &p : looked) {
          pastTheSlice |= documents && p >= local;
          p = std::clamp(p, int32_t(0), int32_t(rows - 1));
        }
        Floats x(size_t(batch * local * heads * dim));
        for (float &f : x)
          f = uniform(rng);
        Floats want(x.size()), got(x.size());
        rotaryForward(x.data(), want.data(), batch, local, heads, dim, params, mine.data());
        rotaryForward(x.data(), got.data(), batch, local, heads, dim, params, looked.data());
        EXPECT_EQ(got, want) << "cp " << cp << " rank " << rank
                             << (documents ? " position ids" : " places") << ", table of "
                             << rows << " rows";
      }
  EXPECT_TRUE(pastTheSlice) << "no rank holds a position id past its slice's length";
}

} // namespace
} // namespace mt::cpu
