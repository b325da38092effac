// Mixture-of-experts kernels on one GPU: the softmax top-k router with its
// load-balancing loss, the routed SwiGLU experts as permute -> grouped GEMMs
// -> un-permute, and the shared expert's sigmoid gate, forward and backward.
// Activations bf16, everything else fp32; each has a CPU reference in
// runtime/cpu/MoE.h with the same meaning, and every result is
// deterministic (fixed-order reductions, a stable permutation).
#ifndef MT_RUNTIME_CUDA_MOE_H
#define MT_RUNTIME_CUDA_MOE_H

#include "runtime/cuda/ExpertLanes.h"
#include "runtime/cuda/Gemm.h"
#include "runtime/cuda/GroupedGemm.h"
#include "runtime/cuda/GroupedGemmKernel.h"
#include "runtime/kernels/MoE.h"
#include "runtime/support/Status.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// The router's attributes, decoded from an instruction by
/// kernels::routerShapeOf (shared with the CPU backend).
using kernels::LoadBalancing;
using kernels::RouterShape;

/// Device scratch the router's forward and backward need.
size_t moeRouterWorkspaceBytes(const RouterShape &shape);

/// The cuBLAS handle the router's fp32 products run on (cublasSgemm,
/// default math: full fp32, no TF32), with a workspace of its own so that
/// they can be captured in CUDA graphs. Not thread-safe: one stream at a time.
class RouterBlas {
public:
  static Expected<std::unique_ptr<RouterBlas>> create();
  ~RouterBlas();
  RouterBlas(const RouterBlas &) = delete;
  RouterBlas &operator=(const RouterBlas &) = delete;
  cublasHandle_t handle() const { return handle_; }

private:
  RouterBlas() = default;
  static constexpr size_t kWorkspaceBytes = size_t(4) << 20;
  cublasHandle_t handle_ = nullptr;
  void *workspace_ = nullptr;
};

/// x [tokens, hidden] (bf16); w [experts, hidden] (the fp32 master: the
/// router runs in fp32, Megatron-Core's moe_router_dtype fp32). Writes
/// weights, indices [tokens, topK], *aux and *z (device), as
/// cpu::moeRouterForward: softmax, top-k (ties to the lower expert, NaN
/// last), renormalised when normTopkProb; aux = Megatron-Core's
/// switch_load_balancing_loss_func over the micro-batch (auxLoss) or each
/// sequence, averaged (seqAuxLoss), or nothing (none); z = z_loss_func
/// zLossCoeff · mean_t logsumexp(logits_t)².
Status moeRouterForward(const RouterBlas &blas, const bf16 *x, const float *w, float *weights,
                        int32_t *indices, float *aux, float *z, void *workspace,
                        const RouterShape &shape, cudaStream_t stream);

/// Given dweights [tokens, topK], *daux and *dz (device: the gradients of
/// the load-balancing loss and of the z-loss), writes dx (adds when
/// `addDx`) and adds dw [experts, hidden] (fp32), as cpu::moeRouterBackward
/// (the routing is recomputed; the expert counts are constants).
Status moeRouterBackward(const RouterBlas &blas, const bf16 *x, const float *w,
                         const float *dweights, const float *daux, const float *dz, bf16 *dx,
                         bool addDx, float *dw, void *workspace, const RouterShape &shape,
                         cudaStream_t stream);

struct PermuteShape {
  int64_t tokens, hidden, experts, topK;
};

size_t moePermuteWorkspaceBytes(const PermuteShape &shape);
/// x [tokens, hidden]; indices [tokens, topK]. Writes permuted [tokens * topK,
/// hidden] (rows grouped by expert, each group in slot order),
/// tokensPerExpert [experts] and slotRows [tokens, topK] (the row of each
/// slot), as cpu::moePermuteForward without capacity.
Status moePermuteForward(const bf16 *x, const int32_t *indices, bf16 *permuted,
                         int32_t *tokensPerExpert, int32_t *slotRows, void *workspace,
                         const PermuteShape &shape, cudaStream_t stream);
/// dx[t] (=|+=) sum_k dPermuted[slotRows[t, k]] (rows of -1 skipped).
Status moePermuteBackward(const bf16 *dPermuted, const int32_t *slotRows, bf16 *dx, bool addDx,
                          const PermuteShape &shape, cudaStream_t stream);
/// y[t] = sum_k probs[t, k] expertOut[slotRows[t, k]], k ascending.
Status moeUnpermuteForward(const bf16 *expertOut, const float *probs, const int32_t *slotRows,
                           bf16 *y, const PermuteShape &shape, cudaStream_t stream);
/// dExpertOut[row] (=|+=) probs[t, k] dy[t]; dProbs[t, k] += dot(expertOut[row], dy[t]).
Status moeUnpermuteBackward(const bf16 *expertOut, const float *probs, const int32_t *slotRows,
                            const bf16 *dy, bf16 *dExpertOut, bool addDExpertOut, float *dProbs,
                            const PermuteShape &shape, cudaStream_t stream);

struct GroupedMlpShape {
  int64_t rows, hidden, ffn, experts;
};

/// How the experts' GEMMs run (MT_MOE_GEMM). cublaslt: one cuBLASLt
/// product per expert that has rows (tensor cores, bf16 operands, fp32
/// accumulation, bf16 gate/up/act between the GEMMs). grouped: the same,
/// but the products with bf16 results (gate, up, down and the input
/// gradients) each in one cublasGemmGroupedBatchedEx launch over all
/// experts (hidden and ffn multiples of 8, as its alignment rule needs;
/// other shapes run per expert); the weight gradients stay per expert on
/// cuBLASLt, since the grouped GEMM has no bf16 x bf16 -> fp32 output to add
/// into the fp32 main gradients. Both copy tokensPerExpert to the host once
/// per call and wait for the stream, so a program with them is not captured
/// as a CUDA graph. kernel: our grouped GEMM (runtime/cuda/GroupedGemmKernel.h),
/// one launch per product over all experts with the counts read on the
/// device (capturable), the same bf16 intermediates as cublaslt with the
/// SwiGLU and its gradient fused into the GEMMs, and dx as one product
/// (one rounding). tiled: the 32 x 32 shared-memory kernel (fp32 math and
/// intermediates; the backward reads the gate and up products back from
/// fc1_output, rounded to bf16, as the other paths do) that reads the
/// counts on the device (capturable, about 6 TFLOP/s on an H200), kept to
/// time the others against. auto (the
/// default): grouped or cublaslt for each call, as groupedGemmFaster says.
enum class ExpertGemm { Auto, Cublaslt, Grouped, Kernel, Tiled };

/// Auto's choice for one call, measured on an H200 (MtCudaKernelBench
/// moe_): the grouped GEMM when the experts that have rows (`experts`)
/// average fewer than 512 of the `rows` (Qwen3-30B-A3B, 128 experts of
/// ~256 rows at 1 x 4096: 2.4x cuBLASLt per expert forward, 1.5x backward,
/// the per-expert launches dominating), cuBLASLt per expert otherwise
/// (Mixtral, 8 experts of ~1024 rows: 2.6x / 1.8x the grouped GEMM). Made
/// from the row counts, which the library path reads on the host anyway:
/// the plan's rows are only a bound (under expert parallelism ep times
/// what a rank receives on average).
inline bool groupedGemmFaster(int64_t rows, int64_t experts) { return rows < 512 * experts; }

/// "cublaslt", "grouped", "kernel" or "tiled"; an error names `option` and
/// the valid values.
Expected<ExpertGemm> parseExpertGemm(std::string_view text, std::string_view option);

/// Whether `gemm` reads the row counts on the host (a stream sync: not
/// capturable as a CUDA graph).
inline bool readsCountsOnHost(ExpertGemm gemm) {
  return gemm == ExpertGemm::Auto || gemm == ExpertGemm::Cublaslt ||
         gemm == ExpertGemm::Grouped;
}

/// The libraries the experts' GEMMs run on: `kernel`, our grouped GEMM
/// kernel; else no runner, the tiled kernel; a runner, cuBLASLt per expert;
/// a runner and `grouped`, the grouped path (with `bySize`, only for the
/// calls groupedGemmFaster picks it for: Auto).
struct ExpertGemmLibs {
  GemmRunner *runner = nullptr;
  GroupedGemm *grouped = nullptr;
  bool kernel = false;
  bool bySize = false;
  /// The weight gradients of calls groupedGemmFaster calls small run side
  /// by side on these lanes (null: one after another on the caller's stream).
  ExpertLanes *lanes = nullptr;
};

size_t groupedMlpWorkspaceBytes(const GroupedMlpShape &shape, bool backward, ExpertGemm gemm);
/// x, y [rows, hidden] bf16; tokensPerExpert [experts] on the device. Expert
/// e's rows y[r] = down[e] (silu(gate[e] x[r]) * up[e] x[r]); fc1 [2, rows,
/// ffn] bf16 gets the products gate[e] x[r] (fc1[0]) and up[e] x[r]
/// (fc1[1]) the SwiGLU read, for the backward; rows past the groups are
/// zero in y and fc1 (cpu::groupedMlpForward). On the library paths an error
/// names an expert whose count is negative or takes the sum past rows (the
/// kernel path never sees the counts on the host: there a negative count
/// reads as 0 and the groups are cut at rows). The
/// workspace holds groupedMlpWorkspaceBytes(shape, false, the path).
Status groupedMlpForward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                         const bf16 *up, const bf16 *down, bf16 *y, bf16 *fc1,
                         const ExpertGemmLibs &libs, void *workspace,
                         const GroupedMlpShape &shape, cudaStream_t stream);
/// Writes dx (adds when `addDx`) and adds dgate, dup, ddown (fp32, no
/// atomics: the same bits every run), from the forward's fc1 (its rows of
/// the groups; the gate and up products are not recomputed); `libs` and
/// the workspace as the forward's (backward = true). On the library paths dx adds the up
/// product to the gate product's bf16 (two roundings, as the dense MLP's);
/// on the kernel path both are one product (one rounding).
Status groupedMlpBackward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                          const bf16 *up, const bf16 *down, const bf16 *fc1, const bf16 *dy,
                          bf16 *dx, bool addDx,
                          float *dgate, float *dup, float *ddown, const ExpertGemmLibs &libs,
                          void *workspace, const GroupedMlpShape &shape, cudaStream_t stream);

/// y[r] = sigmoid(gate[r]) x[r]; gate [rows], x, y [rows, dim] (bf16).
Status sigmoidGateForward(const bf16 *gate, const bf16 *x, bf16 *y, int64_t rows,
                          int64_t dim, cudaStream_t stream);
/// dgate[r] = s (1 - s) dot(dy[r], x[r]), dx[r] = s dy[r], s = sigmoid(gate[r]);
/// each written, or added when its flag says so.
Status sigmoidGateBackward(const bf16 *gate, const bf16 *x, const bf16 *dy, bf16 *dgate,
                           bool addDgate, bf16 *dx, bool addDx, int64_t rows, int64_t dim,
                           cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_MOE_H
