// RMSNorm on bf16 activations with fp32 statistics, optionally fused with
// the residual add before it (Megatron/TE's fused add + norm). CPU
// reference: runtime/cpu/Norm.h (rmsnormForward, rmsnormBackward).
#ifndef MT_RUNTIME_CUDA_NORM_H
#define MT_RUNTIME_CUDA_NORM_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// x, y [rows, dim]; w [dim] (bf16 compute copy of the weight).
/// Without residual: y = x / sqrt(mean(x^2) + eps) * w.
/// With residual (then residualOut is required, [rows, dim]):
///   residualOut = bf16(x + residual);  y = rmsnorm(residualOut)
/// so the normalized value is the bf16 residual stream the backward sees.
Status rmsnormForward(const bf16 *x, const bf16 *residual, bf16 *residualOut,
                      const bf16 *w, bf16 *y, int64_t rows, int64_t dim,
                      float eps, cudaStream_t stream);

/// Bytes of the workspace rmsnormBackward needs (fp32 partial sums of dw
/// from a fixed number of row blocks, so the result is deterministic).
size_t rmsnormBackwardWorkspaceBytes(int64_t rows, int64_t dim);

/// x is the forward's normalized input (residualOut when fused).
/// dx = d/dx sum(dy * y) is WRITTEN in bf16, plus dresidual when given
/// (the gradient of the residual stream reaching x from later layers,
/// added in fp32 before the one rounding); dw (fp32 main gradient) +=.
Status rmsnormBackward(const bf16 *x, const bf16 *w, const bf16 *dy,
                       const bf16 *dresidual, bf16 *dx, float *dw,
                       void *workspace, int64_t rows, int64_t dim, float eps,
                       cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_NORM_H
