// The mixture-of-experts parameters both backends decode from plan
// instructions, once: the router's shape and load balancing
// (moe_router, moe_router_grad) and the token-drop policy of a permutation
// with capacity (moe_permute). Unknown values are refused, never mapped to
// a default.
#ifndef MT_RUNTIME_KERNELS_MOE_H
#define MT_RUNTIME_KERNELS_MOE_H

#include "runtime/support/Status.h"

#include <cstdint>

namespace mt::plan {
class Attrs;
}

namespace mt::kernels {

/// Megatron-Core's moe_router_load_balancing_type: the balancing loss over
/// the micro-batch, over each sequence, or none.
enum class LoadBalancing { auxLoss, seqAuxLoss, none };

/// The router's attributes: x [tokens, hidden], w [experts, hidden], topK
/// experts per token.
struct RouterShape {
  int64_t tokens, hidden, experts, topK;
  bool normTopkProb;
  float auxLossCoeff;
  LoadBalancing loadBalancing = LoadBalancing::auxLoss;
  /// Tokens per sequence (seqAuxLoss groups the tokens by it; divides tokens).
  int64_t seq = 1;
  float zLossCoeff = 0.0f;
  /// The micro-batch holds tokenShards times these tokens (context
  /// parallelism: each rank's share of every sequence); above 1 the
  /// instruction reads the whole micro-batch's token counts, and the losses
  /// are this rank's terms of the whole's.
  int64_t tokenShards = 1;
  /// Load-balancing groups of the counts: the sequences with seqAuxLoss,
  /// else one.
  int64_t groups() const { return loadBalancing == LoadBalancing::seqAuxLoss ? tokens / seq : 1; }
};

/// The router of a moe_router, moe_router_grad or moe_router_counts
/// instruction (attributes tokens, hidden, experts, top_k, norm_topk_prob,
/// aux_loss_coeff, load_balancing_type, seq, z_loss_coeff, token_shards).
/// An absent load_balancing_type is aux_loss, an absent seq is tokens
/// (plans older than seq_aux_loss), an absent token_shards 1.
/// Errors: a load_balancing_type other than aux_loss, seq_aux_loss or none;
/// top_k outside [1, experts]; with seq_aux_loss, tokens not a multiple of
/// seq; token_shards above 1 without count_groups (the whole micro-batch's
/// counts), or count_groups other than the groups. Each message names the
/// attribute and the valid values.
Expected<RouterShape> routerShapeOf(const plan::Attrs &a);

/// Which routed (token, slot) pairs an expert over capacity keeps
/// (Megatron-Core's moe_token_drop_policy).
enum class DropPolicy { probs, position };

/// The drop_policy of a moe_permute instruction: probs (also when absent)
/// or position; an error naming the attribute and both values otherwise.
Expected<DropPolicy> dropPolicyOf(const plan::Attrs &a);

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_MOE_H
