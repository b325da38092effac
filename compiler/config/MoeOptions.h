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
#include <sstream>
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
  /// the Hugging Face config's router_aux_loss_coef times top_k, the same
  /// loss as transformers' for one MoE layer (Megatron-Core sums each
  /// layer's; transformers pools all layers' router logits).
  std::optional<double> auxLossCoeff;
  /// Router z-loss coefficient (0: none).
  double zLossCoeff = 0.0;

  bool operator==(const MoeOptions &) const = default;

  /// The error of one option's value alone, by Megatron-Core's key: ""
  /// when valid, else "must be ..., got ..." (the valid values and the
  /// value), for a reader to prefix with where it was given and the key.
  std::string valueError(const std::string &key) const {
    std::ostringstream got; // -1, not to_string's -1.000000
    if (key == "moe_expert_capacity_factor" && capacityFactor && !(*capacityFactor > 0.0))
      got << "must be > 0 (or null for dropless), got " << *capacityFactor;
    else if (key == "moe_token_drop_policy" && dropPolicy != "probs" && dropPolicy != "position")
      got << "must be probs or position, got '" << dropPolicy << "'";
    else if (key == "moe_router_load_balancing_type" && loadBalancingType != "aux_loss" &&
             loadBalancingType != "seq_aux_loss" && loadBalancingType != "none")
      got << "must be aux_loss, seq_aux_loss or none, got '" << loadBalancingType << "'";
    else if (key == "moe_aux_loss_coeff" && auxLossCoeff && !(*auxLossCoeff >= 0.0))
      got << "must be >= 0, got " << *auxLossCoeff;
    else if (key == "moe_z_loss_coeff" && !(zLossCoeff >= 0.0))
      got << "must be >= 0, got " << zLossCoeff;
    return got.str();
  }

  /// Checks values and combinations; the message names the option
  /// (Megatron-Core's key) and the valid values.
  Status validate() const {
    for (const char *key : {"moe_expert_capacity_factor", "moe_token_drop_policy",
                            "moe_router_load_balancing_type", "moe_aux_loss_coeff",
                            "moe_z_loss_coeff"})
      if (std::string error = valueError(key); !error.empty())
        return Status::error(std::string(key) + ": " + error);
    if (padToCapacity && !capacityFactor)
      return Status::error("moe_pad_expert_input_to_capacity needs moe_expert_capacity_factor "
                           "(a dropless layer has no capacity to pad to)");
    return Status::ok();
  }
};

} // namespace mt

#endif // MT_COMPILER_CONFIG_MOEOPTIONS_H
