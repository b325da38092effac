// CPU reference kernels of the mixture-of-experts router (the experts:
// MoEPermute.h).
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_MOE_H
#define MT_RUNTIME_CPU_MOE_H

#include "runtime/kernels/MoE.h"

#include <cstdint>

namespace mt::cpu {

/// The router's attributes, decoded from an instruction by
/// kernels::routerShapeOf (shared with the CUDA backend).
using kernels::LoadBalancing;
using kernels::RouterShape;

/// x [tokens, hidden], w [experts, hidden]. probs = softmax(x w^T) per token
/// (fp32, max-subtracted). Top-k by probability, ties to the lower expert
/// index, in descending order: indices [tokens, topK] (int32) and weights
/// [tokens, topK] = the chosen probabilities, divided by their sum when
/// normTopkProb. Returns the router's two losses, Megatron-Core's
/// (megatron/core/transformer/moe/moe_utils.py): the load-balancing loss
///   switch_load_balancing_loss_func over the micro-batch (auxLoss)
///     auxLossCoeff · E / (topK · T²) · Σ_e count_e · Σ_t probs[t, e],
///   count_e = (token, slot) pairs routed to e (balanced routing gives
///   auxLossCoeff); with seqAuxLoss the same over each sequence of `seq`
///   tokens, averaged over the sequences (its seq_aux_loss); none with
///   none; and the z-loss, z_loss_func: zLossCoeff · mean_t
///   logsumexp(logits_t)² (0 without a coefficient).
/// Hugging Face's load_balancing_loss_func is topK times the aux_loss term
/// for the same coefficient (mtc's importer multiplies router_aux_loss_coef
/// by top_k).
/// `tokenCounts` (null: counted here) [groups, experts]: the whole
/// micro-batch's counts when x is one of shape.tokenShards shares of it
/// (context parallelism); then T is the whole's and the losses are this
/// share's terms, which sum over the shares to the whole's losses.
struct RouterLosses {
  float balance, z;
};
RouterLosses moeRouterForward(const float *x, const float *w, const float *tokenCounts,
                              float *weights, int32_t *indices, const RouterShape &shape);
/// counts [groups, experts] (fp32): the (token, slot) pairs of each
/// load-balancing group that moeRouterForward routes to each expert.
void moeRouterCounts(const float *x, const float *w, float *counts, const RouterShape &shape);
/// Given dweights [tokens, topK] and the scalar gradients daux (of the
/// load-balancing loss) and dz (of the z-loss), adds the gradients to dx
/// [tokens, hidden] and dw [experts, hidden] (f_e is treated as constant;
/// the choice of experts is not differentiable). Recomputes the forward;
/// `tokenCounts` as moeRouterForward's.
void moeRouterBackward(const float *x, const float *w, const float *tokenCounts,
                       const float *dweights, float daux, float dz, float *dx, float *dw,
                       const RouterShape &shape);

/// The shared expert's gate (Qwen2-MoE): gate [rows] (one logit per
/// token), x, y [rows, dim]; y[r] = sigmoid(gate[r]) * x[r].
void sigmoidGateForward(const float *gate, const float *x, float *y, int64_t rows,
                        int64_t dim);
/// Adds dgate[r] += s (1 - s) dot(dy[r], x[r]) and dx[r] += s dy[r],
/// s = sigmoid(gate[r]).
void sigmoidGateBackward(const float *gate, const float *x, const float *dy, float *dgate,
                         float *dx, int64_t rows, int64_t dim);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_MOE_H
