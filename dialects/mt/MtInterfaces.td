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

def Mt_PartitionableOpInterface : OpInterface<"PartitionableOpInterface"> {
  let cppNamespace = "::mt";
  let description = [{
    An op that knows how it splits over the tp mesh axis: its partition rule,
    Megatron-Core's layout for it (column- and row-parallel linears,
    vocab-parallel embedding and cross-entropy, heads split for attention,
    norms and element-wise ops local, sequence-parallel regions with `sp`).
    mt-partition-tp visits @forward's ops in order; `partition` reads the
    shardings of the op's operands from the `Partitioner`, rewrites the op to
    its local shapes, shards the parameters it reads, inserts the collectives
    its layout needs, and records the shardings of its results. An op
    without this interface accepts only replicated operands.
  }];
  let methods = [
    InterfaceMethod<[{
        Partitions this op; emits an error naming the operand or parameter
        that cannot be split and fails.
      }],
      "::mlir::LogicalResult", "partition",
      (ins "::mt::Partitioner &":$partitioner)>
  ];
}

#endif // MT_INTERFACES_TD
