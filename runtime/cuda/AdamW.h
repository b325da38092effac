// The optimizer step on the GPU: AdamW on fp32 master weights, fp32 main
// gradients and fp32 moments, the gradients' sum of squares (for the global
// norm) and the all-finite check, each over one tensor or over a list of
// tensors in few launches (multi-tensor apply). CPU reference:
// runtime/cpu/Optimizer.h.
#ifndef MT_RUNTIME_CUDA_ADAMW_H
#define MT_RUNTIME_CUDA_ADAMW_H

#include "runtime/kernels/Optimizer.h"
#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace mt::cuda {

/// One parameter tensor's optimizer buffers, n elements each; `shadow`,
/// when given, receives the updated parameter rounded to bf16 (the copy
/// the forward reads), saving a second pass over the weights. With
/// `remainder` (plan::masterRemainders) there is no fp32 `param`: the
/// master is kernels::joinMaster of `shadow` and `remainder`, and both
/// receive kernels::splitMaster of the update.
struct AdamWTensor {
  float *param;
  const float *grad;
  float *m, *v;
  int64_t n;
  __nv_bfloat16 *shadow = nullptr;
  /// This tensor's weight decay; negative: the step's (AdamWParams).
  /// Tensors of different decay (norms and biases take none) share a launch.
  double weightDecay = -1;
  uint16_t *remainder = nullptr;
};

/// One read-only fp32 tensor.
struct FloatSpan {
  const float *data;
  int64_t n;
};

/// torch.optim.AdamW as cpu::adamwStep computes it, with the same fp32
/// operations in the same order (no contraction into FMAs except torch's
/// own lerp), so the results are bit-identical to the CPU kernel's. The
/// gradient scale is p.gradScale, or *deviceGradScale when that is given
/// (a clipping factor computed on the device, read without a host sync).
Status adamwStep(std::span<const AdamWTensor> tensors,
                 const kernels::AdamWParams &p, const float *deviceGradScale,
                 cudaStream_t stream);
inline Status adamwStep(float *param, const float *grad, float *m, float *v,
                        int64_t n, const kernels::AdamWParams &p,
                        const float *deviceGradScale, cudaStream_t stream) {
  const AdamWTensor t{param, grad, m, v, n};
  return adamwStep(std::span(&t, 1), p, deviceGradScale, stream);
}

/// The host's fp32 weights `host` (n of them) into the GPU's bf16 copies
/// `copy` and low bits `remainder` (kernels::splitMaster, on the host, a
/// chunk at a time: no device memory beyond theirs), on `stream`; returns
/// once copied.
Status splitMastersToDevice(const float *host, __nv_bfloat16 *copy, uint16_t *remainder,
                            int64_t n, cudaStream_t stream);
/// The GPU's `copy` and `remainder` (n each) joined into fp32 `host`
/// (kernels::joinMaster, on the host); returns once done.
Status joinMastersFromDevice(const __nv_bfloat16 *copy, const uint16_t *remainder, float *host,
                             int64_t n, cudaStream_t stream);

/// Bytes of the workspace sumOfSquares needs for these tensors (one fp32
/// partial per fixed-size chunk).
size_t sumOfSquaresWorkspaceBytes(std::span<const FloatSpan> tensors);
/// *out (device double) = sum of x^2 over all tensors: fp32 partials over
/// fixed 64K-element chunks, summed in fp64 in chunk order; deterministic
/// and independent of the device.
Status sumOfSquares(std::span<const FloatSpan> tensors, double *out,
                    void *workspace, cudaStream_t stream);

/// *out (device fp32) = the fp64 sum of x^2 over `whole` plus `share` times
/// that over `shared`, rounded once (the plan's sum_squares: gradients
/// replicated over an axis count 1/size each). `sums`: 2 device doubles.
/// `workspace`: sumOfSquaresWorkspaceBytes of the larger list.
Status weightedSumOfSquares(std::span<const FloatSpan> whole,
                            std::span<const FloatSpan> shared, double share, double *sums,
                            float *out, void *workspace, cudaStream_t stream);

/// *finite (device int32) = 1 when no element of any tensor is NaN or +-Inf,
/// else 0.
Status allFinite(std::span<const FloatSpan> tensors, int32_t *finite,
                 cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_ADAMW_H
