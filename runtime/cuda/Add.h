// Addition kernels on bf16 activations and fp32 gradients: the residual add,
// gradient accumulation, the bias add with its gradient (bf16 storage,
// fp32 math), and the scaling of fp32 gradients. CPU references:
// runtime/cpu/Dense.h, and the scale kernel of runtime/cpu/CpuExecutor.cpp.
#ifndef MT_RUNTIME_CUDA_ADD_H
#define MT_RUNTIME_CUDA_ADD_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// y = a + b over n elements (one rounding); y may alias a or b.
/// As cpu::addForward.
Status add(const bf16 *a, const bf16 *b, bf16 *y, int64_t n,
           cudaStream_t stream);
/// The same on fp32 buffers (the loss and the MoE aux losses: scalars).
Status add(const float *a, const float *b, float *y, int64_t n, cudaStream_t stream);

/// y += x over n elements: bf16 with one rounding of the fp32 sum, or fp32
/// (the same bits as the CPU). As cpu::accumulate.
Status accumulate(const bf16 *x, bf16 *y, int64_t n, cudaStream_t stream);
Status accumulate(const float *x, float *y, int64_t n, cudaStream_t stream);

/// y = x * factor over n fp32 elements, one fp32 multiply each (the same
/// bits as the CPU); y may alias x. The plan's mt.scale: expert gradients
/// summed over edp, scaled by 1 / (dp·cp) (Megatron-Core's
/// expert_gradient_scaling_factor).
Status scale(const float *x, float *y, int64_t n, float factor, cudaStream_t stream);

/// y[r, d] = x[r, d] + bias[d]; x, y [rows, dim], bias [dim]; y may alias
/// x. As cpu::biasAddForward.
Status biasAdd(const bf16 *x, const bf16 *bias, bf16 *y, int64_t rows,
               int64_t dim, cudaStream_t stream);

/// dbias[o] += sum_t dy[t, o] into the fp32 main gradient; dy [tokens, out].
/// Deterministic without a workspace: each column is summed by one block in
/// a fixed order (rows split over the block's warps, then the warps' sums in
/// warp order), the same for any pointer alignment. As cpu::biasBackward.
Status biasGrad(const bf16 *dy, float *dbias, int64_t tokens, int64_t out,
                cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_ADD_H
