// AdamW and the gradients' sum of squares on the host
// (runtime/kernels/HostAdamW.h).
#include "runtime/kernels/HostAdamW.h"

#include <cmath>
#include <vector>

namespace mt::kernels {
namespace {

/// Below this many elements the kernels run on one thread.
constexpr int64_t kParallelMin = 1 << 14;
/// Fixed block size of the sum of squares: blocks are summed in order, so
/// the result does not depend on the thread count.
constexpr int64_t kSumBlock = 4096;

/// torch.lerp on CPU: start + w * (end - start) for |w| < 0.5, else
/// end - (end - start) * (1 - w); its vectorized path fuses the multiply-add.
inline float lerp(float start, float end, float weight) {
  if (std::fabs(weight) < 0.5f)
    return std::fma(weight, end - start, start);
  return std::fma(weight - 1.0f, end - start, end);
}

} // namespace

void adamwStep(float *param, const float *grad, float *m, float *v, int64_t n,
               const AdamWParams &p) {
  // Scalars as PyTorch forms them: Python doubles, rounded to fp32 where
  // they meet an fp32 tensor.
  const double lr = p.lr;
  const double beta1 = p.beta1;
  const double beta2 = p.beta2;
  const double stepCount = static_cast<double>(p.step);
  const float decay = static_cast<float>(1.0 - lr * p.weightDecay);
  const float lerpWeight = static_cast<float>(1.0 - beta1);
  const float beta2f = p.beta2;
  const float oneMinusBeta2 = static_cast<float>(1.0 - beta2);
  const double biasCorrection1 = 1.0 - std::pow(beta1, stepCount);
  const double biasCorrection2 = 1.0 - std::pow(beta2, stepCount);
  const float negStepSize = static_cast<float>(-(lr / biasCorrection1));
  const float biasCorrection2Sqrt = static_cast<float>(std::sqrt(biasCorrection2));
  const float eps = p.eps;
  const float gradScale = p.gradScale;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * gradScale;
    // param.mul_(1 - lr * weight_decay)
    const float decayed = param[i] * decay;
    // exp_avg.lerp_(grad, 1 - beta1)
    const float mi = lerp(m[i], g, lerpWeight);
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const float vi = v[i] * beta2f + oneMinusBeta2 * g * g;
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    const float denom = std::sqrt(vi) / biasCorrection2Sqrt + eps;
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    param[i] = decayed + negStepSize * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

double sumOfSquares(const float *g, int64_t n) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(blocks);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kSumBlock;
    const int64_t end = begin + kSumBlock < n ? begin + kSumBlock : n;
    double acc = 0.0;
    for (int64_t i = begin; i < end; ++i)
      acc += static_cast<double>(g[i]) * g[i];
    partial[b] = acc;
  }
  double sum = 0.0;
  for (int64_t b = 0; b < blocks; ++b)
    sum += partial[b];
  return sum;
}

double weightedSumOfSquares(std::span<const HostGradient> grads, const std::string &replicated,
                            int64_t replicas) {
  double sum = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const double sq = sumOfSquares(grads[i].data, grads[i].n);
    sum += i < replicated.size() && replicated[i] == '1' ? sq / double(replicas) : sq;
  }
  return sum;
}

} // namespace mt::kernels
