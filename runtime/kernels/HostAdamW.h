// AdamW on the host, as torch.optim.AdamW computes it in fp32, and the
// gradients' sum of squares: the CPU backend's optimizer and the CUDA
// backend's under optimizer_offload (fp32 master weights and AdamW state in
// pinned host memory) and grad_offload (main gradients there).
#ifndef MT_RUNTIME_KERNELS_HOSTADAMW_H
#define MT_RUNTIME_KERNELS_HOSTADAMW_H

#include "runtime/kernels/Optimizer.h"

#include <cstdint>
#include <span>
#include <string>

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

/// sum of g[i]^2 in fp64 (deterministic: fixed-size blocks, summed in order).
double sumOfSquares(const float *g, int64_t n);

/// One gradient the norm reads: its elements on the host.
struct HostGradient {
  const float *data;
  int64_t n;
};

/// The plan's sum_squares: the sum over `grads` of sumOfSquares, in order,
/// where gradient i counts 1/replicas when replicated[i] is '1' (held whole
/// by `replicas` ranks whose sums an all_reduce adds: once in the total).
double weightedSumOfSquares(std::span<const HostGradient> grads, const std::string &replicated,
                            int64_t replicas);

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_HOSTADAMW_H
