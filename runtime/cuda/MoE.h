// Mixture-of-experts kernels on one GPU: the softmax top-k router with its
// load-balancing loss, the routed SwiGLU experts as permute -> grouped GEMMs
// -> un-permute, and the shared expert's sigmoid gate, forward and backward.
// Activations bf16, everything else fp32; each has a CPU reference in
// runtime/cpu/MoE.h with the same meaning, and every result is
// deterministic (fixed-order reductions, a stable permutation).
#ifndef MT_RUNTIME_CUDA_MOE_H
#define MT_RUNTIME_CUDA_MOE_H

#include "runtime/kernels/MoE.h"
#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// The router's attributes, decoded from an instruction by
/// kernels::routerShapeOf (shared with the CPU backend).
using kernels::LoadBalancing;
using kernels::RouterShape;

/// Device scratch the router's forward and backward need.
size_t moeRouterWorkspaceBytes(const RouterShape &shape);

/// x [tokens, hidden] (bf16); w [experts, hidden] (the fp32 master: the
/// router runs in fp32, Megatron-Core's moe_router_dtype fp32). Writes
/// weights, indices [tokens, topK] and *aux (device), as
/// cpu::moeRouterForward: softmax, top-k (ties to the lower expert, NaN
/// last), renormalised when normTopkProb; aux = Megatron-Core's
/// switch_load_balancing_loss_func over the micro-batch (auxLoss) or each
/// sequence, averaged (seqAuxLoss), or nothing (none), plus z_loss_func
/// zLossCoeff · mean_t logsumexp(logits_t)².
Status moeRouterForward(const bf16 *x, const float *w, float *weights, int32_t *indices,
                        float *aux, void *workspace, const RouterShape &shape,
                        cudaStream_t stream);

/// Given dweights [tokens, topK] and *daux (device), writes dx (adds when
/// `addDx`) and adds dw [experts, hidden] (fp32), as cpu::moeRouterBackward
/// (the routing is recomputed; the expert counts are constants).
Status moeRouterBackward(const bf16 *x, const float *w, const float *dweights,
                         const float *daux, bf16 *dx, bool addDx, float *dw, void *workspace,
                         const RouterShape &shape, cudaStream_t stream);

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

size_t groupedMlpWorkspaceBytes(const GroupedMlpShape &shape, bool backward);
/// x, y [rows, hidden] bf16; tokensPerExpert [experts] on the device (read
/// there: no host sync). Expert e's rows y[r] = down[e] (silu(gate[e] x[r])
/// * up[e] x[r]); rows past the groups are zero (cpu::groupedMlpForward).
Status groupedMlpForward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                         const bf16 *up, const bf16 *down, bf16 *y, void *workspace,
                         const GroupedMlpShape &shape, cudaStream_t stream);
/// Writes dx (adds when `addDx`) and adds dgate, dup, ddown (fp32).
Status groupedMlpBackward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                          const bf16 *up, const bf16 *down, const bf16 *dy, bf16 *dx, bool addDx,
                          float *dgate, float *dup, float *ddown, void *workspace,
                          const GroupedMlpShape &shape, cudaStream_t stream);

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
