// Tests of the MoE permutation kernels (runtime/cpu/MoEPermute.h): the order
// and the capacity/drop rules on hand-computed cases, permute -> grouped
// SwiGLU -> unpermute against the fp64 reference of the routed experts, and
// each backward against central finite differences of an fp64 reference.
#include "runtime/cpu/MoEPermute.h"

#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace mt::cpu {
namespace {

using namespace check;
namespace tol = mt::tolerance;
using Vec = std::vector<float>;
using DVec = std::vector<double>;
using IVec = std::vector<int32_t>;

constexpr int64_t kHidden = 3, kFfn = 4;

PermuteShape dropless(int64_t tokens, int64_t experts, int64_t topK) {
  return {tokens, kHidden, experts, topK, tokens * topK, 0, DropPolicy::probs, false};
}

/// x[t] = (t + 1, t + 1, t + 1): a permuted row shows which token it holds.
Vec tokenRows(int64_t tokens) {
  Vec x(tokens * kHidden);
  for (int64_t i = 0; i < tokens * kHidden; ++i)
    x[i] = float(i / kHidden + 1);
  return x;
}

struct Permuted {
  Vec rows;
  IVec counts, slotRows;
  /// The token each row of tokenRows() holds, -1 for a zero (padding) row.
  IVec tokens() const {
    IVec t;
    for (size_t r = 0; r * kHidden < rows.size(); ++r)
      t.push_back(int32_t(rows[r * kHidden]) - 1);
    return t;
  }
};

Permuted permute(const Vec &x, const Vec &probs, const IVec &indices, const PermuteShape &s) {
  Permuted p{Vec(s.rows * s.hidden, NAN), IVec(s.experts, -9), IVec(s.tokens * s.topK, -9)};
  moePermuteForward(x.data(), probs.data(), indices.data(), p.rows.data(), p.counts.data(),
                    p.slotRows.data(), s);
  return p;
}

// 4 tokens, top-2 of 3 experts: expert-major rows, token order in a group.
TEST(MoEPermute, GroupsByExpertInTokenOrder) {
  PermuteShape s = dropless(4, 3, 2);
  IVec indices = {2, 0, /**/ 0, 1, /**/ 2, 1, /**/ 0, 2};
  Vec probs(8, 0.5f);
  Permuted p = permute(tokenRows(4), probs, indices, s);
  EXPECT_EQ(p.counts, (IVec{3, 2, 3}));
  // expert 0: tokens 0, 1, 3; expert 1: 1, 2; expert 2: 0, 2, 3.
  EXPECT_EQ(p.tokens(), (IVec{0, 1, 3, 1, 2, 0, 2, 3}));
  EXPECT_EQ(p.slotRows, (IVec{5, 0, 1, 3, 6, 4, 2, 7}));
}

// Capacity 2 for 3 experts, top-1 over 5 tokens routed 0,0,0,1,0 with probs
// 0.1, 0.9, 0.5, 0.7, 0.9. Expert 0 has slots of tokens 0, 1, 2, 4.
//   position: keeps tokens 0, 1 (the first two); drops 2 and 4.
//   probs: keeps 1 and 4 (0.9, 0.9; the tie does not matter, both fit);
//          drops 0 (0.1) and 2 (0.5).
struct DropCase {
  DropPolicy policy;
  bool pad;
  IVec counts, tokens, slotRows;
};

class MoEPermuteDrop : public ::testing::TestWithParam<DropCase> {};

TEST_P(MoEPermuteDrop, KeepsWhatMegatronKeeps) {
  const DropCase &c = GetParam();
  int64_t capacity = 2, experts = 3;
  PermuteShape s{5, kHidden, experts, 1, c.pad ? experts * capacity : 5, capacity, c.policy, c.pad};
  Permuted p = permute(tokenRows(5), {0.1f, 0.9f, 0.5f, 0.7f, 0.9f}, {0, 0, 0, 1, 0}, s);
  EXPECT_EQ(p.counts, c.counts);
  EXPECT_EQ(p.slotRows, c.slotRows);
  EXPECT_EQ(p.tokens(), c.tokens);
}

INSTANTIATE_TEST_SUITE_P(
    Policies, MoEPermuteDrop,
    ::testing::Values(
        // rows: [t0, t1 | t3 | zero, zero] (5 rows, 3 used)
        DropCase{DropPolicy::position, false, {2, 1, 0}, {0, 1, 3, -1, -1}, {0, 1, -1, 2, -1}},
        DropCase{DropPolicy::probs, false, {2, 1, 0}, {1, 4, 3, -1, -1}, {-1, 0, -1, 2, 1}},
        // padded: every group 2 rows: [t0, t1 | t3, zero | zero, zero]
        DropCase{DropPolicy::position, true, {2, 2, 2}, {0, 1, 3, -1, -1, -1}, {0, 1, -1, 2, -1}},
        DropCase{DropPolicy::probs, true, {2, 2, 2}, {1, 4, 3, -1, -1, -1}, {-1, 0, -1, 2, 1}}),
    [](const auto &info) {
      return std::string(info.param.policy == DropPolicy::probs ? "Probs" : "Position") +
             (info.param.pad ? "Padded" : "");
    });

// Equal probabilities under the probs policy: the earlier token stays.
TEST(MoEPermute, ProbsTiesKeepTheEarlierToken) {
  PermuteShape s{4, kHidden, 2, 1, 2, 1, DropPolicy::probs, true};
  Permuted p = permute(tokenRows(4), {0.3f, 0.6f, 0.6f, 0.2f}, {0, 0, 0, 1}, s);
  EXPECT_EQ(p.slotRows, (IVec{-1, 0, -1, 1}));
}

// ----------------------------------------------------------- fp64 references

DVec refGrouped(const DVec &x, const IVec &counts, const DVec &gate, const DVec &up,
                const DVec &down, const GroupedMlpShape &s) {
  int64_t H = s.hidden, F = s.ffn;
  DVec y(s.rows * H);
  int64_t r = 0;
  for (int64_t e = 0; e < s.experts; ++e)
    for (int64_t n = 0; n < counts[e]; ++n, ++r)
      for (int64_t f = 0; f < F; ++f) {
        double g = 0.0, u = 0.0;
        for (int64_t i = 0; i < H; ++i) {
          g += gate[(e * F + f) * H + i] * x[r * H + i];
          u += up[(e * F + f) * H + i] * x[r * H + i];
        }
        double act = g / (1.0 + std::exp(-g)) * u;
        for (int64_t i = 0; i < H; ++i)
          y[r * H + i] += down[(e * H + i) * F + f] * act;
      }
  return y;
}

/// fc1_output [2, rows, ffn]: gate[e] x[r] and up[e] x[r], zero past the
/// last group.
DVec refFc1(const DVec &x, const IVec &counts, const DVec &gate, const DVec &up,
            const GroupedMlpShape &s) {
  int64_t H = s.hidden, F = s.ffn;
  DVec fc1(2 * s.rows * F);
  int64_t r = 0;
  for (int64_t e = 0; e < s.experts; ++e)
    for (int64_t n = 0; n < counts[e]; ++n, ++r)
      for (int64_t f = 0; f < F; ++f)
        for (int64_t i = 0; i < H; ++i) {
          fc1[r * F + f] += gate[(e * F + f) * H + i] * x[r * H + i];
          fc1[(s.rows + r) * F + f] += up[(e * F + f) * H + i] * x[r * H + i];
        }
  return fc1;
}

DVec refUnpermute(const DVec &out, const DVec &probs, const IVec &slotRows,
                  const PermuteShape &s) {
  DVec y(s.tokens * s.hidden);
  for (int64_t i = 0; i < s.tokens * s.topK; ++i)
    if (slotRows[i] >= 0)
      for (int64_t h = 0; h < s.hidden; ++h)
        y[(i / s.topK) * s.hidden + h] += probs[i] * out[slotRows[i] * s.hidden + h];
  return y;
}

DVec refPermute(const DVec &x, const IVec &slotRows, const PermuteShape &s) {
  DVec rows(s.rows * s.hidden);
  for (int64_t i = 0; i < s.tokens * s.topK; ++i)
    if (slotRows[i] >= 0)
      for (int64_t h = 0; h < s.hidden; ++h)
        rows[slotRows[i] * s.hidden + h] = x[(i / s.topK) * s.hidden + h];
  return rows;
}

// -------------------------------------------------------------- composition

// permute -> grouped SwiGLU -> unpermute is the routed experts' output
// y[t] = sum_k w[t, k] down[e](silu(gate[e] x[t]) up[e] x[t]).
TEST(MoEPermute, CompositionIsTheRoutedExperts) {
  std::mt19937 rng(5);
  int64_t T = 9, E = 4, K = 2;
  PermuteShape s = dropless(T, E, K);
  GroupedMlpShape g{s.rows, kHidden, kFfn, E};
  Vec x = randomVector(rng, T * kHidden), probs = randomVector(rng, T * K, 0.1f, 1.0f);
  Vec gate = randomVector(rng, E * kFfn * kHidden), up = randomVector(rng, E * kFfn * kHidden),
      down = randomVector(rng, E * kHidden * kFfn);
  IVec indices;
  for (int64_t t = 0; t < T; ++t) // distinct experts; expert 3 gets no token
    indices.insert(indices.end(), {int32_t(t % 3), int32_t((t + 1) % 3)});
  Permuted p = permute(x, probs, indices, s);
  EXPECT_EQ(p.counts[3], 0);
  Vec out(s.rows * kHidden, NAN), fc1(2 * s.rows * kFfn, NAN), y(T * kHidden, NAN);
  groupedMlpForward(p.rows.data(), p.counts.data(), gate.data(), up.data(), down.data(),
                    out.data(), fc1.data(), g);
  moeUnpermuteForward(out.data(), probs.data(), p.slotRows.data(), y.data(), s);

  DVec want(T * kHidden);
  for (int64_t i = 0; i < T * K; ++i) {
    int64_t t = i / K, e = indices[i];
    for (int64_t f = 0; f < kFfn; ++f) {
      double gv = 0.0, uv = 0.0;
      for (int64_t h = 0; h < kHidden; ++h) {
        gv += double(gate[(e * kFfn + f) * kHidden + h]) * x[t * kHidden + h];
        uv += double(up[(e * kFfn + f) * kHidden + h]) * x[t * kHidden + h];
      }
      double act = gv / (1.0 + std::exp(-gv)) * uv;
      for (int64_t h = 0; h < kHidden; ++h)
        want[t * kHidden + h] += probs[i] * double(down[(e * kHidden + h) * kFfn + f]) * act;
    }
  }
  expectClose(y, want, tol::kFp32KernelRel, tol::kFp32KernelAbs, "y");
}

// ---------------------------------------------------------------- gradients

// Groups of 3, 0 and 2 rows in 7 rows (2 trailing rows in no group), run on
// buffers that already hold values: what each backward adds must be the
// finite-difference gradient.
TEST(MoEGroupedMlp, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(17);
  GroupedMlpShape s{7, kHidden, kFfn, 3};
  IVec counts = {3, 0, 2};
  Vec x = randomVector(rng, s.rows * kHidden), dy = randomVector(rng, s.rows * kHidden);
  Vec gate = randomVector(rng, 3 * kFfn * kHidden), up = randomVector(rng, 3 * kFfn * kHidden),
      down = randomVector(rng, 3 * kHidden * kFfn);
  Vec y(s.rows * kHidden, NAN), fc1(2 * s.rows * kFfn, NAN);
  groupedMlpForward(x.data(), counts.data(), gate.data(), up.data(), down.data(), y.data(),
                    fc1.data(), s);
  DVec xd = toDouble(x), gd = toDouble(gate), ud = toDouble(up), dd = toDouble(down);
  expectClose(y, refGrouped(xd, counts, gd, ud, dd, s), tol::kFp32KernelRel,
              tol::kFp32KernelAbs, "y");
  expectClose(fc1, refFc1(xd, counts, gd, ud, s), tol::kFp32KernelRel, tol::kFp32KernelAbs,
              "fc1_output");

  Vec dx0 = randomVector(rng, x.size()), dg0 = randomVector(rng, gate.size()),
      du0 = randomVector(rng, up.size()), dd0 = randomVector(rng, down.size());
  Vec dx = dx0, dg = dg0, du = du0, ddn = dd0;
  groupedMlpBackward(x.data(), counts.data(), gate.data(), up.data(), down.data(), fc1.data(),
                     dy.data(), dx.data(), dg.data(), du.data(), ddn.data(), s);
  const DVec dyd = toDouble(dy);
  auto loss = [&] { return sumProduct(dyd, refGrouped(xd, counts, gd, ud, dd, s)); };
  expectGradient(dx, dx0, finiteDifference(xd, loss), "dx");
  expectGradient(dg, dg0, finiteDifference(gd, loss), "dgate");
  expectGradient(du, du0, finiteDifference(ud, loss), "dup");
  expectGradient(ddn, dd0, finiteDifference(dd, loss), "ddown");
}

// The backward takes the pre-activations from its fc1 operand and computes
// no gate/up product: given pre-activations that no forward of these
// weights makes (random, NaN in the rows past the groups), its gradients
// are the SwiGLU backward's formulas on them (fp64 reference below), and
// they differ from those of the true pre-activations.
TEST(MoEGroupedMlp, BackwardReadsFc1Output) {
  std::mt19937 rng(31);
  GroupedMlpShape s{7, kHidden, kFfn, 3};
  const int64_t H = s.hidden, F = s.ffn;
  IVec counts = {3, 0, 2};
  const int64_t used = 5;
  Vec x = randomVector(rng, s.rows * H), dy = randomVector(rng, s.rows * H);
  Vec gate = randomVector(rng, 3 * F * H), up = randomVector(rng, 3 * F * H),
      down = randomVector(rng, 3 * H * F);
  Vec fc1 = randomVector(rng, 2 * s.rows * F);
  for (int64_t half = 0; half < 2; ++half)
    std::fill(fc1.begin() + (half * s.rows + used) * F, fc1.begin() + (half + 1) * s.rows * F,
              NAN);
  auto backward = [&](const Vec &pre) {
    Vec dx(x.size(), 0.0f), dg(gate.size(), 0.0f), du(up.size(), 0.0f), dd(down.size(), 0.0f);
    groupedMlpBackward(x.data(), counts.data(), gate.data(), up.data(), down.data(), pre.data(),
                       dy.data(), dx.data(), dg.data(), du.data(), dd.data(), s);
    return std::vector<Vec>{dx, dg, du, dd};
  };
  std::vector<Vec> got = backward(fc1);

  // fp64: a, u the given pre-activations of row r of expert e.
  DVec dx(x.size()), dg(gate.size()), du(up.size()), dd(down.size());
  int64_t r = 0;
  for (int64_t e = 0; e < s.experts; ++e)
    for (int64_t n = 0; n < counts[e]; ++n, ++r)
      for (int64_t f = 0; f < F; ++f) {
        double a = fc1[r * F + f], u = fc1[(s.rows + r) * F + f], sig = 1.0 / (1.0 + std::exp(-a));
        double dAct = 0.0;
        for (int64_t h = 0; h < H; ++h) {
          dAct += double(dy[r * H + h]) * down[(e * H + h) * F + f];
          dd[(e * H + h) * F + f] += double(dy[r * H + h]) * a * sig * u;
        }
        double dG = dAct * u * sig * (1.0 + a * (1.0 - sig)), dU = dAct * a * sig;
        for (int64_t h = 0; h < H; ++h) {
          dx[r * H + h] += dG * gate[(e * F + f) * H + h] + dU * up[(e * F + f) * H + h];
          dg[(e * F + f) * H + h] += dG * x[r * H + h];
          du[(e * F + f) * H + h] += dU * x[r * H + h];
        }
      }
  const char *names[] = {"dx", "dgate", "dup", "ddown"};
  const DVec *want[] = {&dx, &dg, &du, &dd};
  for (int i = 0; i < 4; ++i)
    expectClose(got[size_t(i)], *want[i], tol::kFp32KernelRel, tol::kFp32KernelAbs, names[i]);

  // The true pre-activations give other gradients: these came from fc1.
  Vec y(s.rows * H), trueFc1(2 * s.rows * F);
  groupedMlpForward(x.data(), counts.data(), gate.data(), up.data(), down.data(), y.data(),
                    trueFc1.data(), s);
  std::vector<Vec> fromForward = backward(trueFc1);
  for (int i = 0; i < 4; ++i)
    EXPECT_NE(fromForward[size_t(i)], got[size_t(i)]) << names[i];
}

// With dropped slots (capacity 2, position): dropped slots get no gradient.
TEST(MoEUnpermute, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(23);
  int64_t T = 6, E = 3, K = 2;
  PermuteShape s{T, kHidden, E, K, E * 2, 2, DropPolicy::position, true};
  IVec indices = {0, 1, 1, 0, 0, 2, 0, 1, 2, 1, 1, 2};
  Vec x = randomVector(rng, T * kHidden), probs = randomVector(rng, T * K, 0.1f, 1.0f);
  Permuted p = permute(x, probs, indices, s);
  ASSERT_EQ(std::count(p.slotRows.begin(), p.slotRows.end(), -1), 6);
  Vec out = randomVector(rng, s.rows * kHidden), dy = randomVector(rng, T * kHidden);
  Vec y(T * kHidden, NAN);
  moeUnpermuteForward(out.data(), probs.data(), p.slotRows.data(), y.data(), s);
  DVec outd = toDouble(out), pd = toDouble(probs);
  expectClose(y, refUnpermute(outd, pd, p.slotRows, s), tol::kFp32KernelRel,
              tol::kFp32KernelAbs, "y");

  Vec dout0 = randomVector(rng, out.size()), dp0 = randomVector(rng, probs.size());
  Vec dout = dout0, dprobs = dp0;
  moeUnpermuteBackward(out.data(), probs.data(), p.slotRows.data(), dy.data(), dout.data(),
                       dprobs.data(), s);
  const DVec dyd = toDouble(dy);
  auto loss = [&] { return sumProduct(dyd, refUnpermute(outd, pd, p.slotRows, s)); };
  expectGradient(dout, dout0, finiteDifference(outd, loss), "dinput");
  expectGradient(dprobs, dp0, finiteDifference(pd, loss), "dprobs");

  // The permutation's backward: each token sums the gradients of its rows.
  Vec drows = randomVector(rng, s.rows * kHidden), dx0 = randomVector(rng, x.size()), dx = dx0;
  moePermuteBackward(drows.data(), p.slotRows.data(), dx.data(), s);
  DVec xd = toDouble(x);
  const DVec drowsd = toDouble(drows);
  auto permLoss = [&] { return sumProduct(drowsd, refPermute(xd, p.slotRows, s)); };
  expectGradient(dx, dx0, finiteDifference(xd, permLoss), "dx");
  expectClose(p.rows, refPermute(xd, p.slotRows, s), 0.0, 0.0, "permuted");
}

// Chunks of 2 source ranks x 3 local experts, counts [[1, 0, 2], [2, 1, 0]]:
// rows (rank, expert) 00 | 02 02 | 10 10 | 11 become by expert 00 10 10 |
// 11 | 02 02, then 6 rows past them zero; the inverse restores the input.
TEST(MoESortChunks, GroupsEachExpertsRowsAndBack) {
  const int64_t parts = 2, groups = 3, rows = 8, hidden = 2;
  IVec counts = {1, 0, 2, 2, 1, 0};
  std::vector<float> tags = {0, 2, 2, 10, 10, 11};
  Vec in(rows * hidden, 0.0f);
  for (size_t r = 0; r < tags.size(); ++r)
    in[r * hidden] = in[r * hidden + 1] = tags[r];
  Vec sorted(rows * hidden, NAN), back(rows * hidden, NAN);
  ASSERT_TRUE(
      moeSortChunks(in.data(), counts.data(), nullptr, sorted.data(), parts, groups, rows, hidden, false)
          .isOk());
  std::vector<float> want = {0, 10, 10, 11, 2, 2, 0, 0};
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(sorted[r * hidden + 1], want[r]) << "row " << r;
  ASSERT_TRUE(
      moeSortChunks(sorted.data(), counts.data(), nullptr, back.data(), parts, groups, rows, hidden, true)
          .isOk());
  EXPECT_EQ(back, in);
}

// The allgather dispatcher's layout: 2 source blocks of 5 rows, this rank's
// 2 experts' chunks at offsets 1 and 2 of them (counts [[1, 2], [2, 0]]):
// rows 9 | 3 1 1 | 9 and 9 9 | 10 10 | 9 (tags: 3 of rank 0 for expert 0, 1
// for expert 1, 10 of rank 1 for expert 0) become by expert 3 10 10 | 1 1,
// then 5 zero rows; the inverse puts them back and zeroes the rows
// of the other experts (the 9s).
TEST(MoESortChunks, PicksTheLocalExpertsChunksOfEveryBlock) {
  const int64_t parts = 2, groups = 2, rows = 10, hidden = 2;
  IVec counts = {1, 2, 2, 0}, offsets = {1, 2};
  std::vector<float> tags = {9, 3, 1, 1, 9, 9, 9, 10, 10, 9};
  Vec in(rows * hidden);
  for (int64_t r = 0; r < rows; ++r)
    in[r * hidden] = in[r * hidden + 1] = tags[r];
  Vec sorted(rows * hidden, NAN), back(rows * hidden, NAN);
  ASSERT_TRUE(moeSortChunks(in.data(), counts.data(), offsets.data(), sorted.data(), parts, groups,
                            rows, hidden, false)
                  .isOk());
  std::vector<float> want = {3, 10, 10, 1, 1, 0, 0, 0, 0, 0};
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(sorted[r * hidden + 1], want[r]) << "row " << r;
  ASSERT_TRUE(moeSortChunks(sorted.data(), counts.data(), offsets.data(), back.data(), parts, groups,
                            rows, hidden, true)
                  .isOk());
  std::vector<float> restored = {0, 3, 1, 1, 0, 0, 0, 10, 10, 0};
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(back[r * hidden], restored[r]) << "row " << r;
}

// Counts or offsets that would read or write past the rows are refused
// before anything is written, naming the chunk.
TEST(MoESortChunks, RefusesChunksPastTheRows) {
  const int64_t parts = 2, groups = 2, rows = 10, hidden = 2;
  Vec in(rows * hidden, 1.0f), out(rows * hidden, NAN);
  struct Bad {
    IVec counts, offsets;
    const char *message;
  };
  for (const Bad &bad : {Bad{{3, 4, 2, 2}, {}, "chunk (source 1, expert 1) of 2 rows from row 9 "
                                                "passes row 10 (the rows)"},
                         Bad{{1, -1, 0, 0}, {}, "chunk (source 0, expert 1) of -1 rows from row "
                                                "1 has a negative count"},
                         Bad{{1, 2, 2, 0}, {3, 0}, "chunk (source 0, expert 1) of 2 rows from row "
                                                   "4 passes row 5 (the end of its block)"},
                         Bad{{1, 0, 0, 0}, {-1, 0}, "block 0's offset is -1, expected >= 0"}}) {
    Status s = moeSortChunks(in.data(), bad.counts.data(),
                             bad.offsets.empty() ? nullptr : bad.offsets.data(), out.data(), parts,
                             groups, rows, hidden, false);
    ASSERT_FALSE(s.isOk()) << bad.message;
    EXPECT_NE(s.message().find(bad.message), std::string::npos) << s.message();
    EXPECT_TRUE(std::isnan(out[0])) << "nothing is written: " << bad.message;
  }
}

// Results do not change with the thread count.
TEST(MoEGroupedMlp, SameForAnyThreadCount) {
  std::mt19937 rng(29);
  GroupedMlpShape s{300, kHidden, kFfn, 2};
  IVec counts = {170, 130};
  Vec x = randomVector(rng, s.rows * kHidden), dy = randomVector(rng, s.rows * kHidden);
  Vec gate = randomVector(rng, 2 * kFfn * kHidden), up = randomVector(rng, 2 * kFfn * kHidden),
      down = randomVector(rng, 2 * kHidden * kFfn);
  auto run = [&] {
    Vec y(s.rows * kHidden), fc1(2 * s.rows * kFfn), dx(x.size()), dg(gate.size()),
        du(up.size()), dd(down.size());
    groupedMlpForward(x.data(), counts.data(), gate.data(), up.data(), down.data(), y.data(),
                      fc1.data(), s);
    groupedMlpBackward(x.data(), counts.data(), gate.data(), up.data(), down.data(), fc1.data(),
                       dy.data(), dx.data(), dg.data(), du.data(), dd.data(), s);
    y.insert(y.end(), fc1.begin(), fc1.end());
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), dd.begin(), dd.end());
    return y;
  };
  Vec one = withThreads(1, run), many = withThreads(4, run);
  EXPECT_EQ(one, many);
}

} // namespace
} // namespace mt::cpu
