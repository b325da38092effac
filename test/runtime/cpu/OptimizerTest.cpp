// Tests of the optimizer CPU kernels (runtime/cpu/Optimizer.h): exact sums
// of squares, the finite check, AdamW against an fp64 two-step reference of
// torch.optim.AdamW; the learning-rate schedule and gradient clipping
// against Megatron-Core's definitions, and a whole optimizer step of the
// executor (norm, clip, schedule, AdamW) over several steps.
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/cpu/Optimizer.h"

#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"
#include "test/runtime/cpu/PlanBuilder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
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
    // Each of the two parameters it is the difference of was rounded to
    // fp32: u of max |param| each.
    const double rounding = 2 * tol::kFp32Unit * maxAbs(toDouble(param));
    expectClose(delta, refDelta, rel, abs + rounding, "update");
    ++h.step;
  }
  // The element without gradient has zero moments (only decay moved it).
  EXPECT_EQ(m[5], 0.0f);
  EXPECT_EQ(v[5], 0.0f);
}

//===----------------------------------------------------------------------===//
// Learning-rate schedule and clipping
//===----------------------------------------------------------------------===//

/// Megatron-Core's OptimizerParamScheduler.get_lr (optimizer_param_scheduler.py)
/// with init_lr = 0, evaluated at num_steps = `step` (the updates done: the
/// rate of the k-th step is get_lr at k - 1, since the constructor calls
/// step(0) and each update step(1) after it): linear warmup while
/// num_steps <= warmup (when warmup > 0); then max_lr for "constant"; min_lr
/// past decay_steps; else min + coeff * (max - min) with decay_ratio r =
/// (num_steps - warmup) / (decay - warmup), coeff = 1 - r (linear) or
/// (cos(pi r) + 1) / 2 (cosine).
double megatronLearningRate(int64_t step, double maxLr, double minLr, int64_t warmup,
                            int64_t decay, const std::string &style) {
  if (warmup > 0 && step <= warmup)
    return maxLr * double(step) / double(warmup);
  if (style == "constant")
    return maxLr;
  if (step > decay)
    return minLr;
  const double ratio = double(step - warmup) / double(decay - warmup);
  const double coeff = style == "linear" ? 1.0 - ratio : 0.5 * (std::cos(M_PI * ratio) + 1.0);
  return minLr + coeff * (maxLr - minLr);
}

/// Megatron-Core's clip_grad_norm_fp32: gradients are multiplied by
/// max_norm / (total_norm + 1e-6) when that is below 1; clipping is off
/// (never called) when max_norm is 0.
double megatronClipCoefficient(double maxNorm, double totalNorm) {
  if (maxNorm <= 0)
    return 1.0;
  const double coeff = maxNorm / (totalNorm + 1.0e-6);
  return coeff < 1.0 ? coeff : 1.0;
}

plan::Instruction lrSchedule(double maxLr, double minLr, int64_t warmup, int64_t decay,
                             const std::string &style) {
  test::PlanBuilder b;
  return b.instruction("optimizer_step", "lr_schedule", {}, {},
                       {{"max_lr", maxLr}, {"min_lr", minLr}, {"warmup_steps", warmup},
                        {"decay_steps", decay}, {"style", style}});
}

TEST(LearningRateSchedule, ReferenceHasTheCurvesShape) {
  // Points of the definitions, by hand: half-way through warmup, its end,
  // the middle of the decay (cos(pi/2) = 0), its end and beyond.
  const double maxLr = 3e-4, minLr = 3e-5;
  EXPECT_DOUBLE_EQ(megatronLearningRate(5, maxLr, minLr, 10, 110, "cosine"), maxLr / 2);
  EXPECT_DOUBLE_EQ(megatronLearningRate(10, maxLr, minLr, 10, 110, "linear"), maxLr);
  EXPECT_DOUBLE_EQ(megatronLearningRate(60, maxLr, minLr, 10, 110, "cosine"), (maxLr + minLr) / 2);
  EXPECT_DOUBLE_EQ(megatronLearningRate(60, maxLr, minLr, 10, 110, "linear"), (maxLr + minLr) / 2);
  EXPECT_DOUBLE_EQ(megatronLearningRate(35, maxLr, minLr, 10, 110, "linear"),
                   minLr + 0.75 * (maxLr - minLr));
  EXPECT_DOUBLE_EQ(megatronLearningRate(110, maxLr, minLr, 10, 110, "cosine"), minLr);
  EXPECT_DOUBLE_EQ(megatronLearningRate(500, maxLr, minLr, 10, 110, "linear"), minLr);
  EXPECT_DOUBLE_EQ(megatronLearningRate(500, maxLr, minLr, 10, 110, "constant"), maxLr);
}

// The first steps of a warm-up of 2 and the last of a decay to step 6, as
// Megatron-Core's scheduler gives them: 0, half, the peak; the last step is
// not yet at min_lr (it has rate (cos(pi 3/4) + 1) / 2 of the peak).
TEST(LearningRateSchedule, StepKHasTheRateAfterKMinusOneUpdates) {
  const plan::Instruction in = lrSchedule(1e-3, 0.0, 2, 6, "cosine");
  auto at = [&](int64_t step) { return kernels::scheduledLearningRate(plan::Attrs(in), step); };
  EXPECT_EQ(at(1), 0.0);
  EXPECT_DOUBLE_EQ(at(2), 0.5e-3);
  EXPECT_DOUBLE_EQ(at(3), 1e-3);
  EXPECT_NEAR(at(6), 1e-3 * 0.5 * (std::cos(M_PI * 0.75) + 1.0), 1e-18);
  EXPECT_GT(at(6), 0.0);
  EXPECT_EQ(at(8), 0.0);
}

TEST(LearningRateSchedule, MatchesMegatronsDefinitions) {
  struct Case {
    double maxLr, minLr;
    int64_t warmup, decay;
  };
  for (const Case c : {Case{3e-4, 3e-5, 10, 110}, Case{1e-3, 0.0, 0, 50}, Case{2e-4, 2e-4, 3, 9},
                       Case{1e-2, 1e-3, 7, 8}})
    for (const char *style : {"cosine", "linear", "constant"}) {
      const plan::Instruction in = lrSchedule(c.maxLr, c.minLr, c.warmup, c.decay, style);
      for (int64_t step = 1; step <= c.decay + 20; ++step) {
        const double want =
            megatronLearningRate(step - 1, c.maxLr, c.minLr, c.warmup, c.decay, style);
        EXPECT_NEAR(kernels::scheduledLearningRate(plan::Attrs(in), step), want, 1e-14 * c.maxLr)
            << style << " warmup " << c.warmup << " decay " << c.decay << " step " << step;
      }
    }
}

/// transformers' schedules (get_scheduler in src/transformers/optimization.py:
/// LambdaLR multipliers at t = step - 1, since its first optimizer step uses
/// t = 0). Values by hand for max_lr 1e-3, num_warmup_steps 2,
/// num_training_steps 6: warm-up t / 2; linear (6 - t) / 4; cosine
/// 0.5 (1 + cos(pi (t - 2) / 4)); cosine_with_min_lr with min_lr_rate 0.1:
/// 0.1 + 0.9 x cosine. cos(pi/4) = 0.70710678118654752.
TEST(LearningRateSchedule, MatchesTransformersSchedules) {
  const double maxLr = 1e-3;
  const std::map<std::string, std::vector<double>> want = {
      // steps 1..7 (t = 0..6)
      {"hf_constant", {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0}},
      {"hf_constant_with_warmup", {0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0}},
      {"hf_linear", {0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0}},
      {"hf_cosine", {0.0, 0.5, 1.0, 0.85355339059327376, 0.5, 0.14644660940672624, 0.0}},
      {"hf_cosine_with_min_lr",
       {0.0, 0.5, 1.0, 0.86819805153394639, 0.55, 0.23180194846605362, 0.1}},
  };
  // Steps past num_training_steps (t = 7, 9, 11: cosine's formula would give
  // 0.15, 0.85, 1.0 again) keep the final rate.
  const std::map<std::string, double> final = {
      {"hf_constant", 1.0}, {"hf_constant_with_warmup", 1.0}, {"hf_linear", 0.0},
      {"hf_cosine", 0.0}, {"hf_cosine_with_min_lr", 0.1}};
  for (const auto &[style, factors] : want) {
    const double minLr = style == "hf_cosine_with_min_lr" ? 0.1 * maxLr : 0.0;
    const plan::Instruction in = lrSchedule(maxLr, minLr, 2, 6, style);
    for (size_t i = 0; i < factors.size(); ++i)
      EXPECT_NEAR(kernels::scheduledLearningRate(plan::Attrs(in), int64_t(i) + 1),
                  factors[i] * maxLr, 1e-15)
          << style << " step " << i + 1;
    for (int64_t step : {8, 10, 12})
      EXPECT_NEAR(kernels::scheduledLearningRate(plan::Attrs(in), step),
                  final.at(style) * maxLr, 1e-15)
          << style << " step " << step << ", past the schedule's end";
  }
  // No warm-up: linear starts at the peak (t = 0 is the first step).
  const plan::Instruction linear = lrSchedule(maxLr, 0.0, 0, 4, "hf_linear");
  EXPECT_DOUBLE_EQ(kernels::scheduledLearningRate(plan::Attrs(linear), 1), maxLr);
  EXPECT_DOUBLE_EQ(kernels::scheduledLearningRate(plan::Attrs(linear), 4), 0.25 * maxLr);
  // A warm-up longer than the run (10 of 4 steps) keeps its slope, t / 10,
  // as transformers' lambda gives it: 0, 0.1, 0.2, 0.3 of the peak.
  for (const char *style : {"hf_constant_with_warmup", "hf_linear", "hf_cosine"}) {
    const plan::Instruction longWarmup = lrSchedule(maxLr, 0.0, 10, 4, style);
    for (int64_t step = 1; step <= 4; ++step)
      EXPECT_NEAR(kernels::scheduledLearningRate(plan::Attrs(longWarmup), step),
                  0.1 * double(step - 1) * maxLr, 1e-15)
          << style << " step " << step;
  }
}

TEST(GradientClipping, MatchesMegatronsClipGradNorm) {
  for (double maxNorm : {0.0, 0.5, 1.0, 4.0})
    for (double norm : {0.0, 1e-7, 0.25, 0.5, 1.0, 1.0000005, 3.0, 1e6}) {
      const float got = kernels::clipCoefficient(maxNorm, norm);
      EXPECT_FLOAT_EQ(got, float(megatronClipCoefficient(maxNorm, norm)))
          << "max_norm " << maxNorm << " norm " << norm;
      EXPECT_LE(got, 1.0f);
    }
  // A norm equal to max_norm is still scaled, by 1 / (1 + 1e-6).
  EXPECT_LT(kernels::clipCoefficient(1.0, 1.0), 1.0f);
}

//===----------------------------------------------------------------------===//
// A whole optimizer step
//===----------------------------------------------------------------------===//

/// The optimizer program mtc emits, on two parameters: the global norm of
/// the gradients (sum of squares, square root), the finite check, the clipping coefficient, the scheduled
/// learning rate and one AdamW per parameter (weight decay on the first).
struct OptimizerPlan {
  static constexpr double kMaxNorm = 1.0, kMaxLr = 1e-2, kMinLr = 1e-3;
  static constexpr int64_t kWarmup = 2, kDecay = 6;
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.95, kEps = 1e-8;
  plan::Plan plan;
  std::vector<uint32_t> params, grads;
  uint32_t step, squares, norm, coefficient, lr;

  explicit OptimizerPlan(const std::vector<int64_t> &sizes) {
    test::PlanBuilder b;
    std::vector<uint32_t> moments;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::string name = std::to_string(i);
      params.push_back(b.buffer("w" + name, plan::PARAMETERS, {sizes[i]}));
      grads.push_back(b.buffer("grad:w" + name, plan::GRADIENTS, {sizes[i]}));
      moments.push_back(b.buffer("exp_avg:w" + name, plan::OPTIMIZER, {sizes[i]}));
      moments.push_back(b.buffer("exp_avg_sq:w" + name, plan::OPTIMIZER, {sizes[i]}));
    }
    step = b.buffer("step", plan::INPUTS, {1}, plan::I64);
    norm = b.buffer("grad_norm", plan::OUTPUTS, {1});
    squares = b.buffer("sum_squares", plan::ACTIVATIONS, {1});
    coefficient = b.buffer("clip", plan::ACTIVATIONS, {1});
    lr = b.buffer("lr", plan::OUTPUTS, {1});
    b.instruction("optimizer_step", "sum_squares", grads, {squares}, {{"replicas", int64_t(1)}});
    b.instruction("optimizer_step", "sqrt", {squares}, {norm});
    b.instruction("optimizer_step", "check_finite", {norm}, {});
    b.instruction("optimizer_step", "clip_coefficient", {norm}, {coefficient},
                  {{"max_norm", kMaxNorm}});
    b.instruction("optimizer_step", "lr_schedule", {step}, {lr},
                  {{"max_lr", kMaxLr}, {"min_lr", kMinLr}, {"warmup_steps", kWarmup},
                   {"decay_steps", kDecay}, {"style", std::string("cosine")}});
    for (size_t i = 0; i < sizes.size(); ++i)
      b.instruction("optimizer_step", "adamw",
                    {params[i], grads[i], moments[2 * i], moments[2 * i + 1], lr, step,
                     coefficient},
                    {params[i], moments[2 * i], moments[2 * i + 1]},
                    {{"n", sizes[i]}, {"beta1", kBeta1}, {"beta2", kBeta2}, {"eps", kEps},
                     {"weight_decay", i == 0 ? 0.1 : 0.0}});
    plan = b.build();
  }
};

TEST(OptimizerStep, ClipsAndSchedulesAdamWAsMegatronOverSeveralSteps) {
  const std::vector<int64_t> sizes = {33, 7};
  OptimizerPlan op(sizes);
  auto allocated = exec::HostMemory::create(op.plan);
  ASSERT_TRUE(allocated.isOk()) << allocated.message();
  exec::HostMemory &memory = **allocated;
  auto executor = cpu::CpuExecutor::create(op.plan, memory);
  ASSERT_TRUE(executor.isOk()) << executor.message();

  std::mt19937 rng(33);
  // Gradient norms far above and below max_norm from step to step: Adam's
  // moments then mix clipped and unclipped gradients, so a missing or wrong
  // clip changes the update by about lr (checked below), not by rounding.
  const std::vector<double> targetNorms = {30.0, 0.3, 8.0, 0.05, 2.0, 0.5};
  std::vector<AdamWRef> clipped, unclipped;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto p = randomVector(rng, size_t(sizes[i]), -1, 1);
    std::copy(p.begin(), p.end(), memory.f32(op.params[i]));
    const std::vector<double> zeros(p.size(), 0.0);
    clipped.push_back({{p.begin(), p.end()}, zeros, zeros});
    unclipped.push_back(clipped.back());
  }
  double worst = 0, clipEffect = 0, scale = 0;
  for (int64_t step = 1; step <= int64_t(targetNorms.size()); ++step) {
    std::vector<std::vector<float>> grads;
    double sq = 0;
    for (int64_t n : sizes)
      grads.push_back(randomVector(rng, size_t(n), -1, 1));
    for (const auto &g : grads)
      for (float x : g)
        sq += double(x) * x;
    const float factor = float(targetNorms[step - 1] / std::sqrt(sq));
    sq = 0;
    for (size_t i = 0; i < grads.size(); ++i) {
      for (float &x : grads[i]) {
        x *= factor;
        sq += double(x) * x;
      }
      std::copy(grads[i].begin(), grads[i].end(), memory.f32(op.grads[i]));
    }
    *memory.i64(op.step) = step;
    auto result = executor->run("optimizer_step");
    ASSERT_TRUE(result.isOk()) << result.message();
    ASSERT_FALSE(result->skipped);

    const double norm = std::sqrt(sq);
    const double coeff = megatronClipCoefficient(OptimizerPlan::kMaxNorm, norm);
    const double lr = megatronLearningRate(step - 1, OptimizerPlan::kMaxLr, OptimizerPlan::kMinLr,
                                           OptimizerPlan::kWarmup, OptimizerPlan::kDecay,
                                           "cosine");
    EXPECT_NEAR(*memory.f32(op.norm), norm, tol::kFp32KernelRel * norm) << "step " << step;
    EXPECT_FLOAT_EQ(*memory.f32(op.lr), float(lr)) << "step " << step;
    for (size_t i = 0; i < sizes.size(); ++i) {
      cpu::AdamWParams h{lr, OptimizerPlan::kBeta1, OptimizerPlan::kBeta2, OptimizerPlan::kEps,
                         i == 0 ? 0.1 : 0.0, step, float(coeff)};
      clipped[i].step(grads[i], h);
      h.gradScale = 1.0f;
      unclipped[i].step(grads[i], h);
      const float *p = memory.f32(op.params[i]);
      for (size_t k = 0; k < grads[i].size(); ++k) {
        worst = std::max(worst, std::fabs(p[k] - clipped[i].p[k]));
        clipEffect = std::max(clipEffect, std::fabs(unclipped[i].p[k] - clipped[i].p[k]));
        scale = std::max(scale, std::fabs(clipped[i].p[k]));
      }
    }
  }
  const double bound = tol::kFp32KernelRel * scale + tol::kFp32KernelAbs;
  EXPECT_LE(worst, bound);
  // Without clipping the weights would end this far away: the check above
  // cannot pass with clipping missing.
  EXPECT_GT(clipEffect, 100 * bound);
}

} // namespace
