// Tests of the MoE router and expert kernels against a plain fp64 reference
// and its central finite differences, at shapes and edge cases the
// transformers fixtures do not reach (top-k 1 and E, ties, non-finite
// router inputs, accumulation, thread counts). That the reference's
// semantics are transformers' (softmax top-k, norm_topk_prob, the per-layer
// load_balancing_loss_func, the SwiGLU experts) is tested against
// transformers itself by the Qwen3-MoE and Mixtral fixtures of test/hf
// (HfFidelityTest, made by test/hf/make_fixtures.py).
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

constexpr int64_t kTokens = 7, kHidden = 5, kFfn = 3, kExperts = 4;
// Perturbing one input of magnitude <= 1 by the step moves a logit gap by at
// most 2 steps; a 20-step margin keeps the top-k choice fixed.
constexpr double kMinLogitGap = 20 * tol::kFiniteDifferenceStep;

// ---------------------------------------------------------------- reference

struct RefRoute {
  DVec weights;
  IVec indices;
  double aux = 0.0;
};

/// fp64 router: softmax, top-k (stable sort keeps the lower index first on
/// ties), renormalise, and the aux loss coeff * E * sum_e f_e P_e of one
/// layer (transformers' load_balancing_loss_func on that layer's logits; the
/// test/hf MoE fixtures check the kernel against transformers' own call).
RefRoute refRouter(const DVec &x, const DVec &w, const RouterShape &s) {
  int64_t T = s.tokens, E = s.experts, K = s.topK;
  DVec probs(T * E);
  RefRoute r{DVec(T * K), IVec(T * K), 0.0};
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
  DVec tokensPerExpert(K * E), probPerExpert(E);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t k = 0; k < K; ++k)
      tokensPerExpert[k * E + r.indices[t * K + k]] += 1.0 / T;
    for (int64_t e = 0; e < E; ++e)
      probPerExpert[e] += probs[t * E + e] / T;
  }
  for (int64_t k = 0; k < K; ++k)
    for (int64_t e = 0; e < E; ++e)
      r.aux += tokensPerExpert[k * E + e] * probPerExpert[e];
  r.aux *= E * static_cast<double>(s.auxLossCoeff);
  return r;
}

/// fp64 y[t] = sum_k weights[t, k] * down[e] (silu(gate[e] x) * up[e] x).
DVec refExperts(const DVec &x, const DVec &weights, const IVec &indices,
                const DVec &gate, const DVec &up, const DVec &down,
                const ExpertShape &s) {
  int64_t H = s.hidden, F = s.ffn;
  DVec y(s.tokens * H);
  for (int64_t t = 0; t < s.tokens; ++t)
    for (int64_t k = 0; k < s.topK; ++k) {
      int64_t e = indices[t * s.topK + k];
      for (int64_t f = 0; f < F; ++f) {
        double g = 0.0, u = 0.0;
        for (int64_t i = 0; i < H; ++i) {
          g += gate[(e * F + f) * H + i] * x[t * H + i];
          u += up[(e * F + f) * H + i] * x[t * H + i];
        }
        double act = g / (1.0 + std::exp(-g)) * u;
        for (int64_t i = 0; i < H; ++i)
          y[t * H + i] +=
              weights[t * s.topK + k] * down[(e * H + i) * F + f] * act;
      }
    }
  return y;
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

/// Distinct random experts per token, as a top-k choice makes them.
IVec randomIndices(std::mt19937 &rng, int64_t tokens, int64_t experts,
                   int64_t topK) {
  IVec indices;
  std::vector<int32_t> perm(experts);
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    indices.insert(indices.end(), perm.begin(), perm.begin() + topK);
  }
  return indices;
}

struct ExpertInputs {
  Vec x, weights, gate, up, down;
  IVec indices;
};

ExpertInputs expertInputs(std::mt19937 &rng, const ExpertShape &s) {
  ExpertInputs in;
  in.x = randomVector(rng, s.tokens * s.hidden);
  in.weights = randomVector(rng, s.tokens * s.topK, 0.1f, 1.0f);
  in.gate = randomVector(rng, s.experts * s.ffn * s.hidden);
  in.up = randomVector(rng, s.experts * s.ffn * s.hidden);
  in.down = randomVector(rng, s.experts * s.hidden * s.ffn);
  in.indices = randomIndices(rng, s.tokens, s.experts, s.topK);
  return in;
}

// ------------------------------------------------------------- router tests

class MoERouterTest
    : public ::testing::TestWithParam<std::tuple<int64_t, bool>> {
protected:
  RouterShape shape() const {
    return {kTokens,
            kHidden,
            kExperts,
            std::get<0>(GetParam()),
            std::get<1>(GetParam()),
            0.7f};
  }
};

TEST_P(MoERouterTest, ForwardMatchesReference) {
  RouterShape s = shape();
  std::mt19937 rng(11);
  RouterInputs in = routerInputs(rng, s.tokens, s.hidden, s.experts);
  // NaN and -1 prefill: the forward must overwrite every output.
  Vec weights(s.tokens * s.topK, std::nanf(""));
  IVec indices(s.tokens * s.topK, -1);
  float aux = moeRouterForward(in.x.data(), in.w.data(), weights.data(),
                               indices.data(), s);
  RefRoute ref = refRouter(toDouble(in.x), toDouble(in.w), s);
  EXPECT_EQ(indices, ref.indices);
  expectClose(weights, ref.weights, tol::kFp32KernelRel, tol::kFp32KernelAbs,
              "weights");
  expectClose({aux}, {ref.aux}, tol::kFp32KernelRel, tol::kFp32KernelAbs,
              "aux");
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

// L = sum(dweightsSeed * weights) + daux * aux through the fp64 reference;
// the top-k choice of every perturbed evaluation must equal the base one.
void checkRouterGradients(const RouterShape &s, float daux,
                          bool withWeightSeed) {
  std::mt19937 rng(23);
  RouterInputs in = routerInputs(rng, s.tokens, s.hidden, s.experts);
  Vec seed = randomVector(rng, s.tokens * s.topK);
  if (!withWeightSeed)
    std::fill(seed.begin(), seed.end(), 0.0f);
  Vec dx(in.x.size(), 0.0f), dw(in.w.size(), 0.0f);
  moeRouterBackward(in.x.data(), in.w.data(), seed.data(), daux, dx.data(),
                    dw.data(), s);

  DVec x = toDouble(in.x), w = toDouble(in.w);
  IVec base = refRouter(x, w, s).indices;
  bool flipped = false;
  auto loss = [&] {
    RefRoute r = refRouter(x, w, s);
    flipped = flipped || r.indices != base;
    double l = daux * r.aux;
    for (size_t i = 0; i < seed.size(); ++i)
      l += seed[i] * r.weights[i];
    return l;
  };
  DVec gx = finiteDifference(x, loss), gw = finiteDifference(w, loss);
  ASSERT_FALSE(flipped) << "a finite-difference step changed the top-k";
  expectClose(dx, gx, tol::kGradientRel, tol::kGradientAbs, "dx");
  expectClose(dw, gw, tol::kGradientRel, tol::kGradientAbs, "dw");
}

TEST_P(MoERouterTest, BackwardMatchesFiniteDifferences) {
  checkRouterGradients(shape(), 1.3f, true);
}

// The aux path alone, so that its gradient is not hidden under the larger
// gradient of the weights.
TEST_P(MoERouterTest, AuxBackwardMatchesFiniteDifferences) {
  checkRouterGradients(shape(), 1.0f, false);
}

TEST_P(MoERouterTest, BackwardAccumulates) {
  RouterShape s = shape();
  std::mt19937 rng(5);
  RouterInputs in = routerInputs(rng, s.tokens, s.hidden, s.experts);
  Vec seed = randomVector(rng, s.tokens * s.topK);
  Vec dx0 = randomVector(rng, in.x.size());
  Vec dw0 = randomVector(rng, in.w.size());
  Vec dx(in.x.size(), 0.0f), dw(in.w.size(), 0.0f), dxAcc = dx0, dwAcc = dw0;
  moeRouterBackward(in.x.data(), in.w.data(), seed.data(), 0.9f, dx.data(),
                    dw.data(), s);
  moeRouterBackward(in.x.data(), in.w.data(), seed.data(), 0.9f, dxAcc.data(),
                    dwAcc.data(), s);
  expectAccumulated(dxAcc, dx0, dx, tol::kFp32KernelRel, tol::kFp32KernelAbs,
                    "dx");
  expectAccumulated(dwAcc, dw0, dw, tol::kFp32KernelRel, tol::kFp32KernelAbs,
                    "dw");
}

// Zero router weights: every probability is 1/E, every tie goes to the lower
// index, and HF's loss of balanced routing is coeff * topK.
TEST_P(MoERouterTest, UniformRoutingPicksLowestIndicesAndAuxIsCoeffTopK) {
  RouterShape s = shape();
  std::mt19937 rng(3);
  Vec x = randomVector(rng, s.tokens * s.hidden), w(s.experts * s.hidden, 0.0f);
  Vec weights(s.tokens * s.topK);
  IVec indices(s.tokens * s.topK);
  float aux =
      moeRouterForward(x.data(), w.data(), weights.data(), indices.data(), s);
  float want = s.normTopkProb ? 1.0f / s.topK : 1.0f / s.experts;
  for (int64_t t = 0; t < s.tokens; ++t)
    for (int64_t k = 0; k < s.topK; ++k) {
      EXPECT_EQ(indices[t * s.topK + k], k) << "token " << t;
      EXPECT_NEAR(weights[t * s.topK + k], want, tol::kFp32KernelAbs);
    }
  EXPECT_NEAR(aux, s.auxLossCoeff * s.topK,
              tol::kFp32KernelRel * s.auxLossCoeff * s.topK);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MoERouterTest,
    ::testing::Combine(::testing::Values<int64_t>(1, 2, kExperts),
                       ::testing::Bool()),
    [](const auto &info) {
      return "topK" + std::to_string(std::get<0>(info.param)) +
             (std::get<1>(info.param) ? "Norm" : "NoNorm");
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
  moeRouterForward(x.data(), w.data(), weights.data(), indices.data(), s);
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
  moeRouterForward(x.data(), w.data(), weights.data(), indices.data(), s);
  for (int64_t t = 0; t < s.tokens; ++t) {
    int32_t a = indices[t * 2], b = indices[t * 2 + 1];
    EXPECT_TRUE(a >= 0 && a < s.experts && b >= 0 && b < s.experts && a != b)
        << "token " << t << ": " << a << ", " << b;
  }
}

// ------------------------------------------------------------- expert tests

class MoEExpertTest : public ::testing::TestWithParam<int64_t> {
protected:
  ExpertShape shape() const {
    return {kTokens, kHidden, kFfn, kExperts, GetParam()};
  }
};

TEST_P(MoEExpertTest, ForwardMatchesReference) {
  ExpertShape s = shape();
  std::mt19937 rng(31);
  ExpertInputs in = expertInputs(rng, s);
  Vec y(s.tokens * s.hidden, std::nanf(""));
  expertFfnForward(in.x.data(), in.weights.data(), in.indices.data(),
                   in.gate.data(), in.up.data(), in.down.data(), y.data(), s);
  DVec ref =
      refExperts(toDouble(in.x), toDouble(in.weights), in.indices,
                 toDouble(in.gate), toDouble(in.up), toDouble(in.down), s);
  expectClose(y, ref, tol::kFp32KernelRel, tol::kFp32KernelAbs, "y");
}

struct ExpertGrads {
  Vec dx, dweights, dgate, dup, ddown;
};

/// The gradients by name, in the order of their inputs in ExpertInputs.
const std::pair<const char *, Vec ExpertGrads::*> kExpertGrads[] = {
    {"dx", &ExpertGrads::dx},
    {"dweights", &ExpertGrads::dweights},
    {"dgate", &ExpertGrads::dgate},
    {"dup", &ExpertGrads::dup},
    {"ddown", &ExpertGrads::ddown}};

ExpertGrads runExpertBackward(const ExpertInputs &in, const Vec &dy,
                              const ExpertShape &s, ExpertGrads g) {
  expertFfnBackward(in.x.data(), in.weights.data(), in.indices.data(),
                    in.gate.data(), in.up.data(), in.down.data(), dy.data(),
                    g.dx.data(), g.dweights.data(), g.dgate.data(),
                    g.dup.data(), g.ddown.data(), s);
  return g;
}

ExpertGrads zeroGrads(const ExpertInputs &in) {
  return {Vec(in.x.size()), Vec(in.weights.size()), Vec(in.gate.size()),
          Vec(in.up.size()), Vec(in.down.size())};
}

TEST_P(MoEExpertTest, BackwardMatchesFiniteDifferences) {
  ExpertShape s = shape();
  std::mt19937 rng(41);
  ExpertInputs in = expertInputs(rng, s);
  Vec dy = randomVector(rng, s.tokens * s.hidden);
  ExpertGrads g = runExpertBackward(in, dy, s, zeroGrads(in));

  DVec x = toDouble(in.x), weights = toDouble(in.weights),
       gate = toDouble(in.gate), up = toDouble(in.up), down = toDouble(in.down);
  const DVec dyd = toDouble(dy);
  auto loss = [&] {
    return sumProduct(dyd,
                      refExperts(x, weights, in.indices, gate, up, down, s));
  };
  DVec *inputs[] = {&x, &weights, &gate, &up, &down};
  for (size_t i = 0; i < std::size(kExpertGrads); ++i) {
    const auto [name, grad] = kExpertGrads[i];
    expectClose(g.*grad, finiteDifference(*inputs[i], loss), tol::kGradientRel,
                tol::kGradientAbs, name);
  }
}

TEST_P(MoEExpertTest, BackwardAccumulates) {
  ExpertShape s = shape();
  std::mt19937 rng(43);
  ExpertInputs in = expertInputs(rng, s);
  Vec dy = randomVector(rng, s.tokens * s.hidden);
  ExpertGrads fresh = runExpertBackward(in, dy, s, zeroGrads(in));
  ExpertGrads start{
      randomVector(rng, in.x.size()), randomVector(rng, in.weights.size()),
      randomVector(rng, in.gate.size()), randomVector(rng, in.up.size()),
      randomVector(rng, in.down.size())};
  ExpertGrads acc = runExpertBackward(in, dy, s, start);
  for (const auto &[name, grad] : kExpertGrads)
    expectAccumulated(acc.*grad, start.*grad, fresh.*grad, tol::kFp32KernelRel,
                      tol::kFp32KernelAbs, name);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoEExpertTest,
                         ::testing::Values<int64_t>(1, 2, kExperts),
                         [](const auto &info) {
                           return "topK" + std::to_string(info.param);
                         });

// ------------------------------------------------------------ determinism

/// Every output of the four kernels, bit for bit.
struct AllOutputs {
  Vec weights, routerDx, routerDw, y;
  IVec indices;
  float aux = 0.0f;
  ExpertGrads expert;
  auto all() const {
    return std::tie(weights, routerDx, routerDw, y, indices, aux, expert.dx,
                    expert.dweights, expert.dgate, expert.dup, expert.ddown);
  }
};

AllOutputs runAll(int threads, bool norm) {
  const ThreadCount limit(threads);
  RouterShape rs{37, 16, 6, 2, norm, 0.01f};
  ExpertShape es{rs.tokens, rs.hidden, 12, rs.experts, rs.topK};
  std::mt19937 rng(97);
  Vec x = randomVector(rng, rs.tokens * rs.hidden);
  Vec w = randomVector(rng, rs.experts * rs.hidden);
  Vec seed = randomVector(rng, rs.tokens * rs.topK);
  AllOutputs o{Vec(rs.tokens * rs.topK),
               Vec(x.size()),
               Vec(w.size()),
               Vec(x.size()),
               IVec(rs.tokens * rs.topK),
               0.0f,
               {}};
  o.aux = moeRouterForward(x.data(), w.data(), o.weights.data(),
                           o.indices.data(), rs);
  moeRouterBackward(x.data(), w.data(), seed.data(), 1.0f, o.routerDx.data(),
                    o.routerDw.data(), rs);
  ExpertInputs in = expertInputs(rng, es);
  in.x = x;
  in.weights = o.weights;
  in.indices = o.indices;
  Vec dy = randomVector(rng, x.size());
  expertFfnForward(in.x.data(), in.weights.data(), in.indices.data(),
                   in.gate.data(), in.up.data(), in.down.data(), o.y.data(),
                   es);
  o.expert = runExpertBackward(in, dy, es, zeroGrads(in));
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
