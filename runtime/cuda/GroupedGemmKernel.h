// GroupedGemmKernel: our tensor-core grouped GEMM for the MoE experts
// (ExpertGemm::Kernel). bf16 operands, fp32 accumulation (mma.sync
// m16n8k16, ldmatrix, a 4-stage cp.async pipeline), 128 x 128 tiles; one
// persistent launch per product over all experts, each CTA mapping its tile
// index to (expert, row tile, column tile) through the prefix sums of the
// experts' row tiles, which are computed ON THE DEVICE from tokensPerExpert:
// no host copy, no stream sync, so the products can be captured in a CUDA
// graph.
//
// Row-major HF layouts as GemmRunner (runtime/cuda/Gemm.h): expert e's rows
// x_e [rows_e, in] are rows [rowStart[e], rowStart[e + 1]) of the permuted
// buffer, its weight w_e [out, in] at w + e * out * in.
#ifndef MT_RUNTIME_CUDA_GROUPEDGEMMKERNEL_H
#define MT_RUNTIME_CUDA_GROUPEDGEMMKERNEL_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// Where the experts' rows and row tiles begin, on the device: rowStart
/// [experts + 1] and tileStart [experts + 1] (prefix sums of rows_e and of
/// ceil(rows_e / 128)), in a scratch of groupedLayoutBytes(experts).
struct GroupedLayout {
  int32_t *rowStart = nullptr, *tileStart = nullptr;
  int64_t experts = 0, rows = 0;
};

size_t groupedLayoutBytes(int64_t experts);

/// The layout of `rows` permuted rows grouped by tokensPerExpert [experts]
/// (device), in `scratch`. The counts are never seen by the host, so they
/// cannot be checked there: a negative count reads as 0 and the groups are
/// cut at `rows`, so a bad count never reads or writes past the buffers.
Expected<GroupedLayout> groupedLayout(const int32_t *tokensPerExpert, int64_t experts,
                                      int64_t rows, void *scratch, cudaStream_t stream);

/// y_e [rows_e, out] = x_e [rows_e, in] w_eᵀ, w [experts, out, in]; rows
/// past the groups are not written.
Status groupedKernelForward(const bf16 *x, const bf16 *w, bf16 *y, int64_t in, int64_t out,
                            const GroupedLayout &layout, cudaStream_t stream);

/// dx_e [rows_e, in] (=|+= when `accumulate`) dy_e [rows_e, out] w_e (one
/// rounding to bf16 of the fp32 sum, the old value included).
Status groupedKernelBackwardInput(const bf16 *dy, const bf16 *w, bf16 *dx, int64_t in,
                                  int64_t out, bool accumulate, const GroupedLayout &layout,
                                  cudaStream_t stream);

/// dw_e [out, in] += dy_eᵀ x_e (fp32, the main gradient); each element is
/// summed by one CTA in row order: the same bits every run, no atomics.
/// Experts without rows are left as they are.
Status groupedKernelBackwardWeight(const bf16 *x, const bf16 *dy, float *dw, int64_t in,
                                   int64_t out, const GroupedLayout &layout, cudaStream_t stream);

/// The SwiGLU experts' first products, gate and up [experts, ffn, hidden],
/// in one launch (each tile holds matching gate and up columns): with
/// `act`, act = bf16(silu(g) u), g = bf16(x gateᵀ), u = bf16(x upᵀ) (the
/// cuBLASLt path's roundings, with the SwiGLU fused); with gatePre (and
/// upPre) g and u are written to them [rows, ffn] (the forward writes all
/// three: act for the down product, g and u as its fc1_output).
Status groupedKernelGateUp(const bf16 *x, const bf16 *gate, const bf16 *up, bf16 *act,
                           bf16 *gatePre, bf16 *upPre, int64_t hidden, int64_t ffn,
                           const GroupedLayout &layout, cudaStream_t stream);

/// dact = bf16(dy down_e) (down [experts, hidden, ffn]) with the SwiGLU's
/// gradient fused: from g = gatePre and u = upPre (the forward's
/// fc1_output), act = bf16(silu(g) u), dGate = bf16(dact u silu'(g)), dUp =
/// bf16(dact silu(g)). dGate and dUp may be gatePre and upPre (in place).
Status groupedKernelSwigluBackward(const bf16 *dy, const bf16 *down, const bf16 *gatePre,
                                   const bf16 *upPre, bf16 *dGate, bf16 *dUp, bf16 *act,
                                   int64_t hidden, int64_t ffn, const GroupedLayout &layout,
                                   cudaStream_t stream);

/// dx (=|+=) dG gate_e + dU up_e as one product of reduction length 2 ffn
/// ([dG | dU] [gate; up]), so dx is rounded to bf16 once.
Status groupedKernelGateUpBackwardInput(const bf16 *dGate, const bf16 *dUp, const bf16 *gate,
                                        const bf16 *up, bf16 *dx, bool accumulate,
                                        int64_t hidden, int64_t ffn,
                                        const GroupedLayout &layout, cudaStream_t stream);

/// Rows [rowStart[experts], rows) of `out` [rows, width] (no expert's) set
/// to zero; the count is read on the device.
Status groupedZeroTail(bf16 *out, int64_t width, const GroupedLayout &layout,
                       cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_GROUPEDGEMMKERNEL_H
