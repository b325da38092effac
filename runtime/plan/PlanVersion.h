// The plan format version shared by the compiler that writes plans and the
// runtime that reads them.
#ifndef MT_RUNTIME_PLAN_PLANVERSION_H
#define MT_RUNTIME_PLAN_PLANVERSION_H

#include <cstdint>

namespace mt::plan {

/// Bump on any change to plan.proto's meaning.
inline constexpr uint32_t kPlanVersion = 11;
/// The serialized plan inside a plan directory, and its readable summary.
inline constexpr const char *kPlanFile = "plan.pb";
inline constexpr const char *kPlanSummaryFile = "plan.txt";

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_PLANVERSION_H
