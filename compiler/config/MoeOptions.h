// MoeOptions: how a mixture-of-experts layer routes and drops tokens, with
// Megatron-Core's names (TransformerConfig: moe_expert_capacity_factor,
// moe_token_drop_policy, moe_pad_expert_input_to_capacity,
// moe_router_load_balancing_type, moe_aux_loss_coeff, moe_z_loss_coeff).
// Plain data: read from flags or YAML, applied when the model is built.
#ifndef MT_COMPILER_CONFIG_MOEOPTIONS_H
#define MT_COMPILER_CONFIG_MOEOPTIONS_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <string>

namespace mt {

struct MoeOptions {
  /// None: dropless (Megatron-Core's default). Else each expert takes at most
  /// ceil(tokens · top_k / experts · factor) of a micro-batch's routed slots
  /// (moe_utils.get_capacity).
  std::optional<double> capacityFactor;
  /// Which slots an expert over capacity keeps: "probs" or "position".
  std::string dropPolicy = "probs";
  /// Every expert's input padded to its capacity.
  bool padToCapacity = false;
  /// "aux_loss" (per micro-batch), "seq_aux_loss" (per sequence) or "none".
  std::string loadBalancingType = "aux_loss";
  /// Megatron-Core's coefficient of switch_load_balancing_loss_func. None:
  /// the Hugging Face config's router_aux_loss_coef times top_k, which is
  /// the same loss (see HfConfig.h, MoeSpec::auxLossCoeff).
  std::optional<double> auxLossCoeff;
  /// Router z-loss coefficient (0: none).
  double zLossCoeff = 0.0;

  bool operator==(const MoeOptions &) const = default;

  /// Checks values and combinations; the message names the option
  /// (Megatron-Core's key) and the valid values.
  Status validate() const {
    if (capacityFactor && !(*capacityFactor > 0.0))
      return Status::error("moe_expert_capacity_factor: must be > 0 (or null for dropless), got " +
                           std::to_string(*capacityFactor));
    if (dropPolicy != "probs" && dropPolicy != "position")
      return Status::error("moe_token_drop_policy: must be probs or position, got '" + dropPolicy +
                           "'");
    if (padToCapacity && !capacityFactor)
      return Status::error("moe_pad_expert_input_to_capacity needs moe_expert_capacity_factor "
                           "(a dropless layer has no capacity to pad to)");
    if (loadBalancingType != "aux_loss" && loadBalancingType != "seq_aux_loss" &&
        loadBalancingType != "none")
      return Status::error("moe_router_load_balancing_type: must be aux_loss, seq_aux_loss or "
                           "none, got '" + loadBalancingType + "'");
    if (auxLossCoeff && !(*auxLossCoeff >= 0.0))
      return Status::error("moe_aux_loss_coeff: must be >= 0, got " + std::to_string(*auxLossCoeff));
    if (!(zLossCoeff >= 0.0))
      return Status::error("moe_z_loss_coeff: must be >= 0, got " + std::to_string(zLossCoeff));
    return Status::ok();
  }
};

} // namespace mt

#endif // MT_COMPILER_CONFIG_MOEOPTIONS_H
