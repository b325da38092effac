// Tests of the optimizer CPU kernels (runtime/cpu/Optimizer.h): exact sums
// of squares, the finite check, and AdamW against an fp64 two-step
// reference of torch.optim.AdamW.
#include "runtime/cpu/Optimizer.h"

#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cpu::check;
namespace tol = mt::tolerance;

TEST(OptimizerTest, SumOfSquaresIsExactOnKnownVectors) {
  // Integers spanning several blocks: every partial sum is exact in fp64.
  const int64_t n = 10007;
  std::vector<float> g(n);
  int64_t want = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = i % 7 - 3;
    g[i] = static_cast<float>(k);
    want += k * k;
  }
  EXPECT_EQ(cpu::sumOfSquares(g.data(), n), static_cast<double>(want));

  // 4097^2 = 2^24 + 8193 needs 25 bits (an fp32 square rounds it), and the
  // 1000 ones that follow would not move an fp32 accumulator past 2^24.
  std::vector<float> h(1001, 1.0f);
  h[0] = 4097.0f;
  EXPECT_EQ(cpu::sumOfSquares(h.data(), h.size()), 16785409.0 + 1000.0);

  EXPECT_EQ(cpu::sumOfSquares(nullptr, 0), 0.0);
}

TEST(OptimizerTest, SumOfSquaresIndependentOfThreadCount) {
  std::mt19937 rng(31);
  auto g = randomVector(rng, 100003, -1, 1);
  auto run = [&](int threads) {
    return withThreads(threads,
                       [&] { return cpu::sumOfSquares(g.data(), g.size()); });
  };
  EXPECT_EQ(run(1), run(2));
}

TEST(OptimizerTest, AllFiniteDetectsNanAndInf) {
  // Large enough for the parallel path; edges that are finite stay finite.
  std::vector<float> x(50000, 1.0f);
  x[1] = std::numeric_limits<float>::max();
  x[2] = -std::numeric_limits<float>::max();
  x[3] = std::numeric_limits<float>::denorm_min();
  EXPECT_TRUE(cpu::allFinite(x.data(), x.size()));
  EXPECT_TRUE(cpu::allFinite(nullptr, 0));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    for (size_t at : {size_t{0}, size_t{31337}, x.size() - 1}) {
      auto y = x;
      y[at] = bad;
      EXPECT_FALSE(cpu::allFinite(y.data(), y.size())) << bad << " at " << at;
    }
  }
}

/// torch.optim.AdamW's step in fp64, on the same fp32 hyper-parameters.
struct AdamWRef {
  std::vector<double> p, m, v;

  void step(const std::vector<float> &grad, const cpu::AdamWParams &h) {
    const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
    const double bc1 = 1.0 - std::pow(b1, static_cast<double>(h.step));
    const double bc2 = 1.0 - std::pow(b2, static_cast<double>(h.step));
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = static_cast<double>(grad[i]) * h.gradScale;
      p[i] *= 1.0 - lr * h.weightDecay;
      m[i] = b1 * m[i] + (1.0 - b1) * g;
      v[i] = b2 * v[i] + (1.0 - b2) * g * g;
      const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + h.eps;
      p[i] -= lr / bc1 * m[i] / denom;
    }
  }
};

TEST(OptimizerTest, AdamWMatchesTwoStepReference) {
  const size_t n = 33;
  std::mt19937 rng(32);
  auto param = randomVector(rng, n, -1, 1);
  auto grad1 = randomVector(rng, n, -3, 3);
  auto grad2 = randomVector(rng, n, -3, 3);
  grad1[5] = grad2[5] = 0.0f; // v stays 0: the update is 0 / eps
  grad2[6] = -grad1[6];       // the moment changes sign
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  AdamWRef ref{{param.begin(), param.end()},
               std::vector<double>(n, 0.0),
               std::vector<double>(n, 0.0)};

  cpu::AdamWParams h{/*lr=*/0.05f, /*beta1=*/0.9f, /*beta2=*/0.95f,
                     /*eps=*/1e-8f, /*weightDecay=*/0.1f, /*step=*/1,
                     /*gradScale=*/0.5f};
  for (const auto *grad : {&grad1, &grad2}) {
    const std::vector<float> before = param;
    const std::vector<double> refBefore = ref.p;
    cpu::adamwStep(param.data(), grad->data(), m.data(), v.data(), n, h);
    ref.step(*grad, h);
    const double rel = tol::kFp32KernelRel, abs = tol::kFp32KernelAbs;
    expectClose(m, ref.m, rel, abs, "exp_avg");
    expectClose(v, ref.v, rel, abs, "exp_avg_sq");
    expectClose(param, ref.p, rel, abs, "param");
    // The update alone, so that a wrong bias correction cannot hide under
    // the parameter's magnitude.
    std::vector<float> delta(n);
    std::vector<double> refDelta(n);
    for (size_t i = 0; i < n; ++i) {
      delta[i] = param[i] - before[i];
      refDelta[i] = ref.p[i] - refBefore[i];
    }
    expectClose(delta, refDelta, rel, abs, "update");
    ++h.step;
  }
  // The element without gradient has zero moments (only decay moved it).
  EXPECT_EQ(m[5], 0.0f);
  EXPECT_EQ(v[5], 0.0f);
}

} // namespace
