// The learning-rate schedule and the clipping factor of the optimizer step.
#include "runtime/kernels/Optimizer.h"

#include "runtime/plan/OpRegistry.h"

#include <algorithm>
#include <cmath>

namespace mt::kernels {

double scheduledLearningRate(const plan::Attrs &a, int64_t step) {
  double maxLr = a.f("max_lr"), minLr = a.f("min_lr");
  int64_t warmup = a.i("warmup_steps"), decay = a.i("decay_steps");
  if (warmup > 0 && step <= warmup)
    return maxLr * double(step) / double(warmup);
  std::string style = a.s("style");
  if (style == "constant" || decay <= warmup)
    return maxLr;
  double p = std::clamp(double(step - warmup) / double(decay - warmup), 0.0, 1.0);
  double f = style == "linear" ? 1.0 - p : 0.5 * (1.0 + std::cos(M_PI * p));
  return minLr + (maxLr - minLr) * f;
}

float clipCoefficient(double maxNorm, double norm) {
  return float(maxNorm > 0 ? std::min(1.0, maxNorm / (norm + 1.0e-6)) : 1.0);
}

} // namespace mt::kernels
