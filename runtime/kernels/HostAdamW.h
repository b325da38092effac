// AdamW on the host, as torch.optim.AdamW computes it in fp32: the CPU
// backend's optimizer and the CUDA backend's under optimizer_offload (fp32
// master weights and AdamW state in pinned host memory).
#ifndef MT_RUNTIME_KERNELS_HOSTADAMW_H
#define MT_RUNTIME_KERNELS_HOSTADAMW_H

#include "runtime/kernels/Optimizer.h"

#include <cstdint>

namespace mt::kernels {

/// PyTorch's torch.optim.AdamW (decoupled weight decay), in fp32, over n
/// elements, on all OpenMP threads (from 2^14 elements; each element's
/// result does not depend on the thread count):
///   g = grad * gradScale
///   p -= lr * weightDecay * p
///   m = m + (1 - beta1) * (g - m) (torch's lerp_);  v = beta2 * v + (1 - beta2) * g^2
///   p -= lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)
void adamwStep(float *param, const float *grad, float *m, float *v, int64_t n,
               const AdamWParams &p);

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_HOSTADAMW_H
