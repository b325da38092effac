// The learning-rate schedule and the clipping factor of the optimizer step.
#include "runtime/kernels/Optimizer.h"

#include "runtime/plan/OpRegistry.h"

#include <algorithm>
#include <cmath>

namespace mt::kernels {

namespace {

/// transformers' get_scheduler(name, num_warmup_steps = warmup,
/// num_training_steps = decay) (src/transformers/optimization.py): the
/// multiplier lr_lambda(t) of LambdaLR, whose t is 0 at the first optimizer
/// step, so step s (1-based) uses t = s - 1. min_lr is cosine_with_min_lr's
/// (min_lr_rate x max_lr); the others have min_lr = 0. Past
/// num_training_steps (a run trained on with mtrun --steps) the rate stays
/// at its final value, as Megatron-Core's schedules do: transformers' cosine
/// would climb back towards the peak, which its Trainer never reaches.
double transformersLearningRate(const std::string &name, double maxLr, double minLr,
                                int64_t warmup, int64_t decay, int64_t step) {
  int64_t t = std::min(step - 1, std::max(decay, warmup));
  if (name == "constant")
    return maxLr;
  if (t < warmup)
    return maxLr * double(t) / double(std::max<int64_t>(1, warmup));
  if (name == "constant_with_warmup")
    return maxLr;
  double span = double(std::max<int64_t>(1, decay - warmup));
  if (name == "linear")
    return maxLr * std::max(0.0, double(decay - t) / span);
  // cosine and cosine_with_min_lr (min_lr_rate = min_lr / max_lr), num_cycles 0.5.
  double f = std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * double(t - warmup) / span)));
  return minLr + (maxLr - minLr) * f;
}

} // namespace

double scheduledLearningRate(const plan::Attrs &a, int64_t step) {
  double maxLr = a.f("max_lr"), minLr = a.f("min_lr");
  int64_t warmup = a.i("warmup_steps"), decay = a.i("decay_steps");
  std::string style = a.s("style");
  if (style.rfind("hf_", 0) == 0)
    return transformersLearningRate(style.substr(3), maxLr, minLr, warmup, decay, step);
  // Megatron-Core's scheduler sets the rate of update s after s - 1 updates
  // (its constructor calls step(0)): num_steps = s - 1.
  const int64_t n = step - 1;
  if (warmup > 0 && n <= warmup)
    return maxLr * double(n) / double(warmup);
  if (style == "constant")
    return maxLr;
  if (n > decay)
    return minLr;
  // Here warmup < n <= decay, or warmup is 0 and decay >= 1: no division by 0.
  double p = double(n - warmup) / double(decay - warmup);
  double f = style == "linear" ? 1.0 - p : 0.5 * (1.0 + std::cos(M_PI * p));
  return minLr + (maxLr - minLr) * f;
}

float clipCoefficient(double maxNorm, double norm) {
  return float(maxNorm > 0 ? std::min(1.0, maxNorm / (norm + 1.0e-6)) : 1.0);
}

} // namespace mt::kernels
