// Emission of a plan (runtime/plan/plan.proto) from a module that holds
// @forward_backward and @optimizer_step: buffers in static arenas with
// offsets from liveness, and one instruction list per function.
#ifndef MT_COMPILER_PLAN_PLANEMITTER_H
#define MT_COMPILER_PLAN_PLANEMITTER_H

#include "compiler/config/ParallelConfig.h"
#include "runtime/plan/plan.pb.h"

#include "mlir/IR/BuiltinOps.h"

namespace mt {

struct TrainingOptions {
  int64_t trainSteps = 100;
};

mlir::FailureOr<plan::Plan> emitPlan(mlir::ModuleOp module,
                                     const ParallelConfig &parallel,
                                     const TrainingOptions &training);

} // namespace mt

#endif // MT_COMPILER_PLAN_PLANEMITTER_H
