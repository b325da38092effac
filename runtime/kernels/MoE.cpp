// The router's and the permutation's attributes, from a plan instruction.
#include "runtime/kernels/MoE.h"

#include "runtime/plan/OpRegistry.h"

#include <algorithm>
#include <string>

namespace mt::kernels {

Expected<RouterShape> routerShapeOf(const plan::Attrs &a) {
  const std::string type = a.s("load_balancing_type");
  LoadBalancing balancing;
  if (type.empty() || type == "aux_loss")
    balancing = LoadBalancing::auxLoss;
  else if (type == "seq_aux_loss")
    balancing = LoadBalancing::seqAuxLoss;
  else if (type == "none")
    balancing = LoadBalancing::none;
  else
    return Status::error("load_balancing_type '" + type +
                         "' (moe_router_load_balancing_type): expected aux_loss, "
                         "seq_aux_loss or none");
  RouterShape s{a.i("tokens"),
                a.i("hidden"),
                a.i("experts"),
                a.i("top_k"),
                a.i("norm_topk_prob") != 0,
                float(a.f("aux_loss_coeff")),
                balancing,
                std::max<int64_t>(1, a.i("seq", a.i("tokens"))),
                float(a.f("z_loss_coeff", 0.0))};
  if (s.topK < 1 || s.topK > s.experts)
    return Status::error("top_k " + std::to_string(s.topK) + " (moe_router_topk): expected 1 to "
                         "experts (" + std::to_string(s.experts) + ")");
  if (balancing == LoadBalancing::seqAuxLoss && s.tokens % s.seq != 0)
    return Status::error("tokens " + std::to_string(s.tokens) + " not a multiple of seq " +
                         std::to_string(s.seq) + " (seq_aux_loss balances each sequence)");
  s.tokenShards = std::max<int64_t>(1, a.i("token_shards", 1));
  const int64_t countGroups = a.i("count_groups", 0);
  if (s.tokenShards > 1 && countGroups == 0)
    return Status::error("token_shards " + std::to_string(s.tokenShards) +
                         " without count_groups: the router of a share of the micro-batch "
                         "needs the whole micro-batch's token counts");
  if (countGroups != 0 && countGroups != s.groups())
    return Status::error("count_groups " + std::to_string(countGroups) + ": expected " +
                         std::to_string(s.groups()) + " (the load-balancing groups)");
  return s;
}

Expected<DropPolicy> dropPolicyOf(const plan::Attrs &a) {
  const std::string policy = a.s("drop_policy");
  if (policy.empty() || policy == "probs")
    return DropPolicy::probs;
  if (policy == "position")
    return DropPolicy::position;
  return Status::error("drop_policy '" + policy +
                       "' (moe_token_drop_policy): expected probs or position");
}

} // namespace mt::kernels
