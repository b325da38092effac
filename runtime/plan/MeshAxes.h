// The named axes of the device mesh, in Megatron-Core's rank order: the one
// declaration the compiler (IR mesh, config) and plan readers share.
#ifndef MT_RUNTIME_PLAN_MESHAXES_H
#define MT_RUNTIME_PLAN_MESHAXES_H

#include <array>
#include <string_view>

namespace mt::plan {

/// Axes of attention and dense layers, outermost first (tp varies fastest),
/// as Megatron-Core's default order "tp-cp-dp-pp" read from the right:
/// world = pp · dp · cp · tp.
inline constexpr std::array<std::string_view, 4> kDenseAxes = {"pp", "dp", "cp", "tp"};

/// Axes of expert layers over the same ranks (Megatron-Core's MoE parallel
/// folding, order "tp-ep-dp-pp" of its expert grid): etp varies fastest and
/// ep · etp · edp = tp · cp · dp, pp shared with the dense axes.
inline constexpr std::array<std::string_view, 4> kExpertAxes = {"pp", "edp", "ep", "etp"};

/// Megatron-Core's embedding group, derived from pp: for each coordinate of
/// the other axes, the first and the last pipeline stage, which sum the two
/// terms of a tied embedding's gradient (an mt.all_reduce's only non-axis
/// group).
inline constexpr std::string_view kTiedEmbeddingGroup = "pp_tied";

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_MESHAXES_H
