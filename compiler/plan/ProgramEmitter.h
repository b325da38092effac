// Lowering of the ops of a function into plan instructions over the buffers
// of a BufferPlanner: buffer groups (aliases, in-place gradient sums),
// zero-fills of accumulated groups, and liveness.
#ifndef MT_COMPILER_PLAN_PROGRAMEMITTER_H
#define MT_COMPILER_PLAN_PROGRAMEMITTER_H

#include "compiler/plan/BufferPlanner.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/EquivalenceClasses.h"

namespace mt {

class WeightOp;

/// Whether `op` adds into its outputs (the backward kernels).
bool isAccumulatingOp(mlir::Operation *op);

/// Lowers one function to a program over the buffers of `planner`.
class ProgramEmitter {
public:
  ProgramEmitter(BufferPlanner &planner, plan::Program &program, mlir::func::FuncOp fn)
      : planner_(planner), program_(&program), fn_(fn) {}

  /// Later instructions go to `program` (pipeline plans emit one function
  /// into several programs, sharing buffers).
  void setProgram(plan::Program &program) { program_ = &program; }

  /// Values that share one buffer: reshapes of a value, and sums of
  /// gradients that are written by accumulating kernels and used once.
  void groupValues();
  void bind(mlir::Value v, uint32_t buffer) { bound_[leader(v)] = buffer; }
  /// Buffer of a value, created in `arena` on first sight.
  uint32_t bufferOf(mlir::Value v, plan::ArenaKind arena = plan::ACTIVATIONS);
  /// Emits the function's ops (or `ops`, a subset in order) into the
  /// current program.
  mlir::LogicalResult emitOps();
  mlir::LogicalResult emitOps(llvm::ArrayRef<mlir::Operation *> ops);
  /// Binds every parameter read of the function to the parameter's buffer
  /// (emitting an mt.weight does it too; pipelines emit no mt.weight).
  void bindWeights();
  void bindWeight(WeightOp weight);
  /// Binds each mt.concat_rows result to a view over its weights' buffers
  /// and each mt.split_rows input to a view over its results' (gradient
  /// buffers, bound before), which the planner places back to back. Fails
  /// when an operand is no parameter or a result no gradient buffer.
  mlir::LogicalResult bindPackedViews();
  /// Records the liveness of the current program's buffers; the next
  /// program's instructions come after it.
  void finishProgram();
  /// Appends an instruction to the current program.
  plan::Instruction &append() { return *program_->add_instructions(); }
  /// An mt.add whose terms already accumulate into one buffer: no instruction.
  bool isElided(mlir::Operation *op);
  /// Whether `op` is the last reader of `v` and of the values sharing its
  /// buffer (every other user comes before it in its block).
  bool isLastRead(mlir::Value v, mlir::Operation *op);
  bool isAccumulating(mlir::Value v) { return accumulating_.contains(leader(v)); }
  void accumulateAtEnd(mlir::Value v, uint32_t target) { pendingAccumulates_.push_back({v, target}); }

private:
  mlir::Value leader(mlir::Value v) { return groups_.getOrInsertLeaderValue(v); }
  mlir::LogicalResult emitOp(mlir::Operation *op);
  /// Gives an attention backward instruction a workspace of its own in the
  /// activation arena, as large as the CUDA backend's kernels need on the
  /// assumed device (plan::attentionWorkspaceOf); the planner reuses free
  /// bytes for it, so cuDNN's dQ accumulator costs nothing at the peak.
  void addAttentionWorkspace(plan::Instruction &instr);

  BufferPlanner &planner_;
  plan::Program *program_;
  mlir::func::FuncOp fn_;
  llvm::EquivalenceClasses<mlir::Value> groups_;
  llvm::DenseSet<mlir::Value> accumulating_; // leaders of groups written with +=
  llvm::DenseSet<mlir::Value> zeroed_;       // leaders already zero-filled
  llvm::DenseMap<mlir::Value, uint32_t> bound_;
  llvm::DenseMap<mlir::Value, uint32_t> lse_; // attention result -> its log-sum-exp
  std::vector<std::pair<mlir::Value, uint32_t>> pendingAccumulates_;
};

} // namespace mt

#endif // MT_COMPILER_PLAN_PROGRAMEMITTER_H
