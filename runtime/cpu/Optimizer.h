// CPU reference kernels of the optimizer: global gradient norm and AdamW.
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_OPTIMIZER_H
#define MT_RUNTIME_CPU_OPTIMIZER_H

#include "runtime/kernels/Optimizer.h"

#include <cstdint>

namespace mt::cpu {

using kernels::AdamWParams;

/// sum of g[i]^2 in fp64 (deterministic: fixed-size blocks, summed in order).
double sumOfSquares(const float *g, int64_t n);
/// True when no element is NaN or +-Inf.
bool allFinite(const float *x, int64_t n);

/// PyTorch's torch.optim.AdamW (decoupled weight decay), in fp32:
///   g = grad * gradScale
///   p -= lr * weightDecay * p
///   m = m + (1 - beta1) * (g - m) (torch's lerp_);  v = beta2 * v + (1 - beta2) * g^2
///   p -= lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)
void adamwStep(float *param, const float *grad, float *m, float *v, int64_t n,
               const AdamWParams &p);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_OPTIMIZER_H
