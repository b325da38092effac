// Tests of the MoE router kernel against a plain fp64 reference and its
// central finite differences, at shapes and edge cases the transformers
// fixtures do not reach (top-k 1 and E, ties, non-finite router inputs,
// seq_aux_loss, z-loss, accumulation, thread counts). That the reference's
// semantics are transformers' (softmax top-k, norm_topk_prob, the per-layer
// load_balancing_loss_func) is tested against transformers itself by the
// Qwen3-MoE and Mixtral fixtures of test/hf (HfFidelityTest). The experts:
// MoEPermuteTest.cpp.
#include "runtime/cpu/MoE.h"

#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace mt::cpu {
namespace {

using namespace check;
namespace tol = mt::tolerance;
using Vec = std::vector<float>;
using DVec = std::vector<double>;
using IVec = std::vector<int32_t>;

constexpr int64_t kTokens = 7, kHidden = 5, kExperts = 4;
// Perturbing one input of magnitude <= 1 by the step moves a logit gap by at
// most 2 steps; a 20-step margin keeps the top-k choice fixed.
constexpr double kMinLogitGap = 20 * tol::kFiniteDifferenceStep;

// ---------------------------------------------------------------- reference

struct RefRoute {
  DVec weights;
  IVec indices;
  double aux = 0.0, z = 0.0; // the load-balancing loss and the z-loss
};

/// fp64 router: softmax, top-k (stable sort keeps the lower index first on
/// ties), renormalise, and the aux loss as Megatron-Core writes it: per
/// group of tokens (the micro-batch, or each sequence with seq_aux_loss)
/// coeff · E / topK · Σ_e f_e P_e with f_e the fraction of the group's
/// tokens routed to e and P_e the mean probability of e, averaged over the
/// groups, and the z-loss zcoeff · mean_t logsumexp_t². (The test/hf MoE fixtures
/// check the kernel against transformers' own loss, topK times this for one
/// coefficient.)
RefRoute refRouter(const DVec &x, const DVec &w, const RouterShape &s) {
  int64_t T = s.tokens, E = s.experts, K = s.topK;
  DVec probs(T * E);
  RefRoute r{DVec(T * K), IVec(T * K), 0.0, 0.0};
  for (int64_t t = 0; t < T; ++t) {
    DVec logit(E);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t i = 0; i < s.hidden; ++i)
        logit[e] += x[t * s.hidden + i] * w[e * s.hidden + i];
    double mx = *std::max_element(logit.begin(), logit.end()), sum = 0.0;
    for (int64_t e = 0; e < E; ++e)
      sum += std::exp(logit[e] - mx);
    for (int64_t e = 0; e < E; ++e)
      probs[t * E + e] = std::exp(logit[e] - mx) / sum;
    double lse = mx + std::log(sum);
    r.z += s.zLossCoeff * lse * lse / T;
    std::vector<int32_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return probs[t * E + a] > probs[t * E + b];
    });
    double chosen = 0.0;
    for (int64_t k = 0; k < K; ++k)
      chosen += probs[t * E + order[k]];
    for (int64_t k = 0; k < K; ++k) {
      r.indices[t * K + k] = order[k];
      r.weights[t * K + k] =
          probs[t * E + order[k]] / (s.normTopkProb ? chosen : 1.0);
    }
  }
  if (s.loadBalancing == LoadBalancing::none)
    return r;
  int64_t G = s.loadBalancing == LoadBalancing::seqAuxLoss ? T / s.seq : 1, Tg = T / G;
  for (int64_t g = 0; g < G; ++g) {
    DVec fraction(E), meanProb(E);
    for (int64_t t = g * Tg; t < (g + 1) * Tg; ++t) {
      for (int64_t k = 0; k < K; ++k)
        fraction[r.indices[t * K + k]] += 1.0 / (double(Tg) * K);
      for (int64_t e = 0; e < E; ++e)
        meanProb[e] += probs[t * E + e] / Tg;
    }
    for (int64_t e = 0; e < E; ++e)
      r.aux += double(s.auxLossCoeff) * E * fraction[e] * meanProb[e] / G;
  }
  return r;
}

// ------------------------------------------------------------------- inputs

/// Smallest gap between consecutive sorted logits of any token.
double minLogitGap(const Vec &x, const Vec &w, int64_t tokens, int64_t hidden,
                   int64_t experts) {
  double gap = std::numeric_limits<double>::infinity();
  for (int64_t t = 0; t < tokens; ++t) {
    DVec logit(experts);
    for (int64_t e = 0; e < experts; ++e)
      for (int64_t i = 0; i < hidden; ++i)
        logit[e] += double(x[t * hidden + i]) * w[e * hidden + i];
    std::sort(logit.begin(), logit.end());
    for (int64_t e = 1; e < experts; ++e)
      gap = std::min(gap, logit[e] - logit[e - 1]);
  }
  return gap;
}

struct RouterInputs {
  Vec x, w;
};

/// Random router inputs in [-1, 1] redrawn until every token's logits are
/// kMinLogitGap apart, so that no top-k choice (any k) flips under a step.
RouterInputs routerInputs(std::mt19937 &rng, int64_t tokens, int64_t hidden,
                          int64_t experts) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    RouterInputs in{randomVector(rng, tokens * hidden),
                    randomVector(rng, experts * hidden)};
    if (minLogitGap(in.x, in.w, tokens, hidden, experts) > kMinLogitGap)
      return in;
  }
  ADD_FAILURE() << "no router inputs with logit gaps > " << kMinLogitGap;
  return {};
}

// ------------------------------------------------------------- router tests

/// Top-k, norm_topk_prob, and the auxiliary losses: the micro-batch's
/// balancing loss, the per-sequence one (2 sequences of 4 tokens) with a
/// z-loss, or only a z-loss.
class MoERouterTest
    : public ::testing::TestWithParam<std::tuple<int64_t, bool, LoadBalancing>> {
protected:
  RouterShape shape() const {
    LoadBalancing balancing = std::get<2>(GetParam());
    return {8,
            kHidden,
            kExperts,
            std::get<0>(GetParam()),
            std::get<1>(GetParam()),
            0.7f,
            balancing,
            4,
            balancing == LoadBalancing::auxLoss ? 0.0f : 0.3f};
  }
};

TEST_P(MoERouterTest, ForwardMatchesReference) {
  RouterShape s = shape();
  std::mt19937 rng(11);
  RouterInputs in = routerInputs(rng, s.tokens, s.hidden, s.experts);
  // NaN and -1 prefill: the forward must overwrite every output.
  Vec weights(s.tokens * s.topK, std::nanf(""));
  IVec indices(s.tokens * s.topK, -1);
  RouterLosses losses = moeRouterForward(in.x.data(), in.w.data(), nullptr, weights.data(),
                                         indices.data(), s);
  RefRoute ref = refRouter(toDouble(in.x), toDouble(in.w), s);
  EXPECT_EQ(indices, ref.indices);
  expectClose(weights, ref.weights, tol::kFp32KernelRel, tol::kFp32KernelAbs,
              "weights");
  expectClose({losses.balance}, {ref.aux}, tol::kFp32KernelRel, tol::kFp32KernelAbs,
              "load-balancing loss");
  expectClose({losses.z}, {ref.z}, tol::kFp32KernelRel, tol::kFp32KernelAbs, "z-loss");
  if (s.zLossCoeff == 0.0f) {
    EXPECT_EQ(losses.z, 0.0f);
  }
  for (int64_t t = 0; t < s.tokens; ++t) {
    for (int64_t k = 1; k < s.topK; ++k)
      EXPECT_GT(weights[t * s.topK + k - 1], weights[t * s.topK + k]);
    if (s.normTopkProb) {
      double sum = 0.0;
      for (int64_t k = 0; k < s.topK; ++k)
        sum += weights[t * s.topK + k];
      EXPECT_NEAR(sum, 1.0, tol::kFp32KernelRel);
    }
  }
}

// L = sum(dweightsSeed * weights) + daux * aux + dz * z through the fp64
// reference; the top-k choice of every perturbed evaluation must equal the
// base one.
void checkRouterGradients(const RouterShape &s, float daux, float dz,
                          bool withWeightSeed) {
  std::mt19937 rng(23);
  RouterInputs in = routerInputs(rng, s.tokens, s.hidden, s.experts);
  Vec seed = randomVector(rng, s.tokens * s.topK);
  if (!withWeightSeed)
    std::fill(seed.begin(), seed.end(), 0.0f);
  Vec dx(in.x.size(), 0.0f), dw(in.w.size(), 0.0f);
  moeRouterBackward(in.x.data(), in.w.data(), nullptr, seed.data(), daux, dz, dx.data(),
                    dw.data(), s);

  DVec x = toDouble(in.x), w = toDouble(in.w);
  IVec base = refRouter(x, w, s).indices;
  bool flipped = false;
  auto loss = [&] {
    RefRoute r = refRouter(x, w, s);
    flipped = flipped || r.indices != base;
    double l = daux * r.aux + dz * r.z;
    for (size_t i = 0; i < seed.size(); ++i)
      l += seed[i] * r.weights[i];
    return l;
  };
  DVec gx = finiteDifference(x, loss), gw = finiteDifference(w, loss);
  ASSERT_FALSE(flipped) << "a finite-difference step changed the top-k";
  expectClose(dx, gx, tol::kGradientRel, tol::kGradientAbs, "dx");
  expectClose(dw, gw, tol::kGradientRel, tol::kGradientAbs, "dw");
}

// Distinct seeds for the two losses: each scales its own term.
TEST_P(MoERouterTest, BackwardMatchesFiniteDifferences) {
  checkRouterGradients(shape(), 1.3f, 0.6f, true);
}

// The load-balancing and z paths alone, so that neither gradient is hidden
// under the larger gradient of the weights (or under the other's).
TEST_P(MoERouterTest, AuxBackwardMatchesFiniteDifferences) {
  checkRouterGradients(shape(), 1.0f, 0.0f, false);
}

TEST_P(MoERouterTest, ZLossBackwardMatchesFiniteDifferences) {
  checkRouterGradients(shape(), 0.0f, 1.0f, false);
}

TEST_P(MoERouterTest, BackwardAccumulates) {
  RouterShape s = shape();
  std::mt19937 rng(5);
  RouterInputs in = routerInputs(rng, s.tokens, s.hidden, s.experts);
  Vec seed = randomVector(rng, s.tokens * s.topK);
  Vec dx0 = randomVector(rng, in.x.size());
  Vec dw0 = randomVector(rng, in.w.size());
  Vec dx(in.x.size(), 0.0f), dw(in.w.size(), 0.0f), dxAcc = dx0, dwAcc = dw0;
  moeRouterBackward(in.x.data(), in.w.data(), nullptr, seed.data(), 0.9f, 0.4f, dx.data(),
                    dw.data(), s);
  moeRouterBackward(in.x.data(), in.w.data(), nullptr, seed.data(), 0.9f, 0.4f, dxAcc.data(),
                    dwAcc.data(), s);
  expectAccumulated(dxAcc, dx0, dx, tol::kFp32KernelRel, tol::kFp32KernelAbs,
                    "dx");
  expectAccumulated(dwAcc, dw0, dw, tol::kFp32KernelRel, tol::kFp32KernelAbs,
                    "dw");
}

// Zero router weights: every probability is 1/E, every tie goes to the lower
// index. Every token then picks experts 0..topK-1: Megatron-Core's
// balancing loss is coeff (transformers' is coeff · topK), the z-loss
// zcoeff · log(E)² (every logit 0).
TEST_P(MoERouterTest, UniformRoutingPicksLowestIndicesAndAuxIsCoeff) {
  RouterShape s = shape();
  std::mt19937 rng(3);
  Vec x = randomVector(rng, s.tokens * s.hidden), w(s.experts * s.hidden, 0.0f);
  Vec weights(s.tokens * s.topK);
  IVec indices(s.tokens * s.topK);
  RouterLosses losses =
      moeRouterForward(x.data(), w.data(), nullptr, weights.data(), indices.data(), s);
  float want = s.normTopkProb ? 1.0f / s.topK : 1.0f / s.experts;
  for (int64_t t = 0; t < s.tokens; ++t)
    for (int64_t k = 0; k < s.topK; ++k) {
      EXPECT_EQ(indices[t * s.topK + k], k) << "token " << t;
      EXPECT_NEAR(weights[t * s.topK + k], want, tol::kFp32KernelAbs);
    }
  double logE = std::log(double(s.experts));
  double wantAux = s.loadBalancing == LoadBalancing::none ? 0.0 : s.auxLossCoeff;
  double wantZ = s.zLossCoeff * logE * logE;
  EXPECT_NEAR(losses.balance, wantAux, tol::kFp32KernelRel * wantAux);
  EXPECT_NEAR(losses.z, wantZ, tol::kFp32KernelRel * wantZ);
}

// Context parallelism: two shards, each the half of every sequence (s.seq
// tokens) at one place, route their tokens with the whole micro-batch's
// counts (the sum of moeRouterCounts over the shards) and tokenShards 2.
// Their routing is the whole's, their losses and weight gradients sum to
// the whole's, and their input gradients are the whole's rows.
TEST_P(MoERouterTest, TokenShardsSumToTheWhole) {
  const RouterShape s = shape();
  std::mt19937 rng(31);
  RouterInputs in = routerInputs(rng, s.tokens, s.hidden, s.experts);
  Vec seed = randomVector(rng, s.tokens * s.topK);
  Vec weights(s.tokens * s.topK), dx(in.x.size(), 0.0f), dw(in.w.size(), 0.0f);
  IVec indices(s.tokens * s.topK);
  RouterLosses whole =
      moeRouterForward(in.x.data(), in.w.data(), nullptr, weights.data(), indices.data(), s);
  moeRouterBackward(in.x.data(), in.w.data(), nullptr, seed.data(), 0.9f, 0.4f, dx.data(),
                    dw.data(), s);
  RouterShape half = s;
  half.tokens = s.tokens / 2, half.seq = s.seq / 2, half.tokenShards = 2;
  // Token t of shard r: token (t / half.seq) * s.seq + r * half.seq + t % half.seq.
  auto token = [&](int r, int64_t t) {
    return t / half.seq * s.seq + r * half.seq + t % half.seq;
  };
  auto rows = [&](const Vec &v, int r, int64_t width) {
    Vec out(half.tokens * width);
    for (int64_t t = 0; t < half.tokens; ++t)
      std::copy_n(v.begin() + token(r, t) * width, width, out.begin() + t * width);
    return out;
  };
  Vec counts(s.groups() * s.experts, 0.0f), mine(counts.size());
  for (int r = 0; r < 2; ++r) {
    moeRouterCounts(rows(in.x, r, s.hidden).data(), in.w.data(), mine.data(), half);
    for (size_t i = 0; i < counts.size(); ++i)
      counts[i] += mine[i];
  }
  Vec wholeCounts(counts.size());
  moeRouterCounts(in.x.data(), in.w.data(), wholeCounts.data(), s);
  EXPECT_EQ(counts, wholeCounts);
  double balance = 0.0, z = 0.0;
  Vec dwSum(in.w.size(), 0.0f);
  for (int r = 0; r < 2; ++r) {
    Vec x = rows(in.x, r, s.hidden), shardSeed = rows(seed, r, s.topK);
    Vec w(half.tokens * s.topK), shardDx(x.size(), 0.0f);
    IVec idx(half.tokens * s.topK);
    RouterLosses l =
        moeRouterForward(x.data(), in.w.data(), counts.data(), w.data(), idx.data(), half);
    balance += l.balance, z += l.z;
    for (int64_t t = 0; t < half.tokens; ++t)
      for (int64_t k = 0; k < s.topK; ++k) {
        EXPECT_EQ(idx[t * s.topK + k], indices[token(r, t) * s.topK + k]);
        EXPECT_EQ(w[t * s.topK + k], weights[token(r, t) * s.topK + k]);
      }
    moeRouterBackward(x.data(), in.w.data(), counts.data(), shardSeed.data(), 0.9f, 0.4f,
                      shardDx.data(), dwSum.data(), half);
    expectClose(shardDx, toDouble(rows(dx, r, s.hidden)), tol::kFp32KernelRel,
                tol::kFp32KernelAbs, "dx of shard " + std::to_string(r));
  }
  expectClose({float(balance)}, {double(whole.balance)}, tol::kFp32KernelRel,
              tol::kFp32KernelAbs, "load-balancing loss");
  expectClose({float(z)}, {double(whole.z)}, tol::kFp32KernelRel, tol::kFp32KernelAbs,
              "z-loss");
  expectClose(dwSum, toDouble(dw), tol::kFp32KernelRel, tol::kFp32KernelAbs, "dw");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MoERouterTest,
    ::testing::Combine(::testing::Values<int64_t>(1, 2, kExperts),
                       ::testing::Bool(),
                       ::testing::Values(LoadBalancing::auxLoss, LoadBalancing::seqAuxLoss,
                                         LoadBalancing::none)),
    [](const auto &info) {
      LoadBalancing b = std::get<2>(info.param);
      return "topK" + std::to_string(std::get<0>(info.param)) +
             (std::get<1>(info.param) ? "Norm" : "NoNorm") +
             (b == LoadBalancing::auxLoss ? "Aux" : b == LoadBalancing::seqAuxLoss ? "SeqAuxZ" : "OnlyZ");
    });

// Rows 1 and 3 of w are equal and largest: equal probabilities, and the
// lower index comes first; the order is 1, 3, 0, 2.
TEST(MoERouterTies, BreakToLowerIndex) {
  RouterShape s{kTokens, kHidden, kExperts, kExperts, false, 0.1f};
  const float rowValue[kExperts] = {0.1f, 0.3f, -0.2f, 0.3f};
  Vec x(s.tokens * s.hidden, 0.5f), w(s.experts * s.hidden);
  for (int64_t e = 0; e < s.experts; ++e)
    std::fill(w.begin() + e * s.hidden, w.begin() + (e + 1) * s.hidden,
              rowValue[e]);
  Vec weights(s.tokens * s.topK);
  IVec indices(s.tokens * s.topK);
  moeRouterForward(x.data(), w.data(), nullptr, weights.data(), indices.data(), s);
  for (int64_t t = 0; t < s.tokens; ++t) {
    IVec row(indices.begin() + t * s.topK, indices.begin() + (t + 1) * s.topK);
    EXPECT_EQ(row, (IVec{1, 3, 0, 2})) << "token " << t;
    EXPECT_EQ(weights[t * s.topK], weights[t * s.topK + 1]);
  }
}

TEST(MoERouterNonFinite, PicksValidDistinctExperts) {
  // Weights blown up to inf/NaN (a diverged run) must still route every token
  // to distinct experts in range, so that the step can be reported and skipped.
  RouterShape s{kTokens, kHidden, kExperts, 2, true, 0.1f};
  Vec x(s.tokens * s.hidden, 1.0f), w(s.experts * s.hidden, INFINITY);
  w[1] = -INFINITY;
  x[0] = NAN;
  Vec weights(s.tokens * s.topK);
  IVec indices(s.tokens * s.topK, -7);
  moeRouterForward(x.data(), w.data(), nullptr, weights.data(), indices.data(), s);
  for (int64_t t = 0; t < s.tokens; ++t) {
    int32_t a = indices[t * 2], b = indices[t * 2 + 1];
    EXPECT_TRUE(a >= 0 && a < s.experts && b >= 0 && b < s.experts && a != b)
        << "token " << t << ": " << a << ", " << b;
  }
}

// ------------------------------------------------------------ determinism

struct AllOutputs {
  Vec weights, routerDx, routerDw;
  IVec indices;
  float aux = 0.0f, z = 0.0f;
  auto all() const { return std::tie(weights, routerDx, routerDw, indices, aux, z); }
};

AllOutputs runAll(int threads, bool norm) {
  const ThreadCount limit(threads);
  RouterShape rs{36, 16, 6, 2, norm, 0.01f, LoadBalancing::seqAuxLoss, 12, 0.1f};
  std::mt19937 rng(97);
  Vec x = randomVector(rng, rs.tokens * rs.hidden);
  Vec w = randomVector(rng, rs.experts * rs.hidden);
  Vec seed = randomVector(rng, rs.tokens * rs.topK);
  AllOutputs o{Vec(rs.tokens * rs.topK), Vec(x.size()), Vec(w.size()),
               IVec(rs.tokens * rs.topK), 0.0f, 0.0f};
  RouterLosses losses = moeRouterForward(x.data(), w.data(), nullptr, o.weights.data(),
                                         o.indices.data(), rs);
  o.aux = losses.balance, o.z = losses.z;
  moeRouterBackward(x.data(), w.data(), nullptr, seed.data(), 1.0f, 1.0f, o.routerDx.data(),
                    o.routerDw.data(), rs);
  return o;
}

// ---------------------------------------------------------------- shared-expert gate

/// fp64 y[r] = sigmoid(gate[r]) x[r].
DVec refSigmoidGate(const DVec &gate, const DVec &x, int64_t rows, int64_t dim) {
  DVec y(rows * dim);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < dim; ++h)
      y[r * dim + h] = x[r * dim + h] / (1.0 + std::exp(-gate[r]));
  return y;
}

TEST(SigmoidGate, ForwardAndBackwardMatchReferenceAndAccumulate) {
  const int64_t rows = 6, dim = 5;
  std::mt19937 rng(51);
  Vec gate = randomVector(rng, rows), x = randomVector(rng, rows * dim),
      dy = randomVector(rng, rows * dim);
  for (float &g : gate)
    g *= 4.0f; // well into both tails of the sigmoid
  Vec y(rows * dim);
  sigmoidGateForward(gate.data(), x.data(), y.data(), rows, dim);
  DVec gd = toDouble(gate), xd = toDouble(x);
  const DVec dyd = toDouble(dy);
  expectClose(y, refSigmoidGate(gd, xd, rows, dim), tol::kFp32KernelRel, tol::kFp32KernelAbs,
              "sigmoid_gate");
  Vec dgate0 = randomVector(rng, rows), dx0 = randomVector(rng, rows * dim);
  Vec dgate = dgate0, dx = dx0;
  sigmoidGateBackward(gate.data(), x.data(), dy.data(), dgate.data(), dx.data(), rows, dim);
  auto loss = [&] { return sumProduct(dyd, refSigmoidGate(gd, xd, rows, dim)); };
  expectGradient(dgate, dgate0, finiteDifference(gd, loss), "dgate");
  expectGradient(dx, dx0, finiteDifference(xd, loss), "dx");
}

TEST(MoEDeterminism, ResultsIndependentOfThreadCount) {
  for (bool norm : {false, true}) {
    AllOutputs one = runAll(1, norm);
    EXPECT_TRUE(one.all() == runAll(2, norm).all()) << "norm " << norm;
    EXPECT_TRUE(one.all() == runAll(3, norm).all()) << "norm " << norm;
  }
}

} // namespace
} // namespace mt::cpu
