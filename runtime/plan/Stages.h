// Which pipeline stage holds a parameter.
#ifndef MT_RUNTIME_PLAN_STAGES_H
#define MT_RUNTIME_PLAN_STAGES_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>

namespace mt::plan {

/// Whether pipeline stage `stage` holds `param`: its own stage, or the
/// second stage of a tied parameter. Plans give each stage's parameters
/// offsets of their own, so on a rank of another stage the parameter's
/// buffers alias that stage's and must not be written.
inline bool stageHolds(const Parameter &param, int64_t stage) {
  return param.stage() == stage || param.tied_stage() == stage;
}

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_STAGES_H
