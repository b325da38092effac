// The training-step pipeline of `mtc compile`, from a model module to a plan.
#ifndef MT_COMPILER_DRIVER_PIPELINE_H
#define MT_COMPILER_DRIVER_PIPELINE_H

#include "compiler/driver/Commands.h"
#include "compiler/driver/Explain.h"
#include "compiler/plan/PlanEmitter.h"

#include "mlir/IR/BuiltinOps.h"

namespace mt {

/// Freezes parameters, partitions (tp, sp), differentiates, adds the
/// optimizer (dp), rewrites for activation recompute, splits the pipeline
/// stages (pp, vpp) and lowers to a plan. With `recompute` and
/// parallel.recompute enabled, also plans the step without the recompute
/// rewrite and fills in what it changes. With options.dumpDir (an existing,
/// writable directory), writes there NN-<phase>.mlir after each phase,
/// numbered from 00-imported, and the plan's text as the last, NN-plan.txt.
/// Diagnostics go to the module's context.
mlir::FailureOr<plan::Plan> buildTrainingPlan(mlir::ModuleOp module,
                                              const ParallelConfig &parallel,
                                              const CompileOptions &options,
                                              RecomputeEffect *recompute = nullptr);

} // namespace mt

#endif // MT_COMPILER_DRIVER_PIPELINE_H
