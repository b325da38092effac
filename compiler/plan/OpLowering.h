// How each mt op becomes a plan instruction: the kernel name, and the
// integer/float attributes (dimensions, hyper-parameters) the kernel needs.
#ifndef MT_COMPILER_PLAN_OPLOWERING_H
#define MT_COMPILER_PLAN_OPLOWERING_H

#include "runtime/plan/plan.pb.h"

#include "mlir/IR/Operation.h"

namespace mt {

/// Fills `instr.op` and `instr.attributes` for `op`. Operands and results are
/// bound by the caller, in op order (attention adds its log-sum-exp).
mlir::LogicalResult lowerOpAttributes(mlir::Operation *op,
                                      plan::Instruction &instr);

} // namespace mt

#endif // MT_COMPILER_PLAN_OPLOWERING_H
