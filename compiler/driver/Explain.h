// `mtc compile --explain`: the parallel layout of a model, in words.
#ifndef MT_COMPILER_DRIVER_EXPLAIN_H
#define MT_COMPILER_DRIVER_EXPLAIN_H

#include "compiler/config/ParallelConfig.h"
#include "runtime/plan/plan.pb.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

namespace mt {

void explainLayout(mlir::ModuleOp module, const ModelDims &dims,
                   const ParallelConfig &parallel, llvm::raw_ostream &os);

/// What the compiled plan holds for each rank: memory per arena and the
/// collectives of one step (count and bytes per mesh axis).
void explainPlan(const plan::Plan &plan, llvm::raw_ostream &os);

} // namespace mt

#endif // MT_COMPILER_DRIVER_EXPLAIN_H
