// CPU reference kernels of the mixture-of-experts router and experts.
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_MOE_H
#define MT_RUNTIME_CPU_MOE_H

#include <cstdint>

namespace mt::cpu {

struct RouterShape {
  int64_t tokens, hidden, experts, topK;
  bool normTopkProb;
  float auxLossCoeff;
};

/// x [tokens, hidden], w [experts, hidden]. probs = softmax(x w^T) per token
/// (fp32, max-subtracted). Top-k by probability, ties to the lower expert
/// index, in descending order: indices [tokens, topK] (int32) and weights
/// [tokens, topK] = the chosen probabilities, divided by their sum when
/// normTopkProb. Returns the auxiliary load-balancing loss, HF's
/// load_balancing_loss_func (one layer, no mask) times auxLossCoeff:
///   auxLossCoeff * experts * sum_e f_e * P_e,
/// f_e = (number of (token, slot) pairs routed to e) / tokens, the fraction
/// of tokens routed to e (sum_e f_e = topK: balanced routing gives
/// auxLossCoeff * topK), P_e = mean over tokens of probs[t, e].
float moeRouterForward(const float *x, const float *w, float *weights,
                       int32_t *indices, const RouterShape &shape);
/// Given dweights [tokens, topK] and the scalar daux, adds the gradients to
/// dx [tokens, hidden] and dw [experts, hidden] (f_e is treated as constant;
/// the choice of experts is not differentiable). Recomputes the forward.
void moeRouterBackward(const float *x, const float *w, const float *dweights,
                       float daux, float *dx, float *dw,
                       const RouterShape &shape);

/// The shared expert's gate (Qwen2-MoE): gate [rows] (one logit per
/// token), x, y [rows, dim]; y[r] = sigmoid(gate[r]) * x[r].
void sigmoidGateForward(const float *gate, const float *x, float *y, int64_t rows,
                        int64_t dim);
/// Adds dgate[r] += s (1 - s) dot(dy[r], x[r]) and dx[r] += s dy[r],
/// s = sigmoid(gate[r]).
void sigmoidGateBackward(const float *gate, const float *x, const float *dy, float *dgate,
                         float *dx, int64_t rows, int64_t dim);

struct ExpertShape {
  int64_t tokens, hidden, ffn, experts, topK;
};

/// x [tokens, hidden]; weights, indices [tokens, topK]; gate, up
/// [experts, ffn, hidden]; down [experts, hidden, ffn].
/// y[t] = sum_k weights[t, k] * down[e] (silu(gate[e] x[t]) * up[e] x[t]),
/// e = indices[t, k].
void expertFfnForward(const float *x, const float *weights,
                      const int32_t *indices, const float *gate,
                      const float *up, const float *down, float *y,
                      const ExpertShape &shape);
/// Adds the gradients of sum(dy * y) to dx, dweights, dgate, dup, ddown.
void expertFfnBackward(const float *x, const float *weights,
                       const int32_t *indices, const float *gate,
                       const float *up, const float *down, const float *dy,
                       float *dx, float *dweights, float *dgate, float *dup,
                       float *ddown, const ExpertShape &shape);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_MOE_H
