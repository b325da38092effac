// Interfaces of the `mt` dialect.
#ifndef MT_INTERFACES_TD
#define MT_INTERFACES_TD

include "mlir/IR/OpBase.td"

def Mt_DifferentiableOpInterface : OpInterface<"DifferentiableOpInterface"> {
  let cppNamespace = "::mt";
  let description = [{
    An op that knows its reverse-mode derivative. The mt-autodiff pass calls
    `buildGradients` on ops in reverse order; the op emits the ops that
    compute the gradients of the operands it is asked for.
  }];
  let methods = [
    InterfaceMethod<[{
        Given the gradient of each result (a null Value where no gradient
        flows back into that result), builds the gradients of the operands
        whose `needed` flag is set and stores them in `operandGrads` (one
        entry per operand; null where not needed or not differentiable).
      }],
      "::mlir::LogicalResult", "buildGradients",
      (ins "::mlir::OpBuilder &":$builder,
           "::llvm::ArrayRef<::mlir::Value>":$resultGrads,
           "::llvm::ArrayRef<bool>":$needed,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>
  ];
}

#endif // MT_INTERFACES_TD
