// The state of tensor-parallel partitioning that op partition rules
// (PartitionableOpInterface, dialects/mt/MtPartitionRules.cpp) read and
// update: how each value is laid out over the tp axis, and the helpers of
// Megatron-Core's layouts that several ops share.
#ifndef MT_DIALECTS_MT_MTPARTITION_H
#define MT_DIALECTS_MT_MTPARTITION_H

#include "dialects/mt/MtDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include <optional>

namespace mt {

/// How a value is laid out over the tp axis: whole on every rank, or split
/// along one dimension.
struct Sharding {
  enum Kind { Replicated, Split } kind = Replicated;
  int64_t dim = -1;
  static Sharding split(int64_t d) { return {Split, d}; }
  bool operator==(const Sharding &o) const { return kind == o.kind && dim == o.dim; }
};

/// Inserted collectives belong to the layer of the op they serve.
void copyLayer(mlir::Operation *from, mlir::Operation *to);

/// Splits @forward over axis `tp` of @mesh (size `tp`): visits its ops in
/// order and applies each op's partition rule.
class Partitioner {
public:
  Partitioner(mlir::ModuleOp module, int64_t tp, bool sequenceParallel);

  /// Partitions every op of `fn`'s body; fails at the first op that cannot.
  mlir::LogicalResult run(mlir::func::FuncOp fn);

  int64_t tp() const { return tp_; }
  bool sequenceParallel() const { return sp_; }
  /// The mesh axis name ("tp"), for collectives and vocab-parallel ops.
  mlir::StringAttr axis() const { return axis_; }
  mlir::OpBuilder &builder() { return b_; }
  mlir::ModuleOp module() const { return module_; }
  /// The vocabulary before padding (0 when not padded).
  int64_t validVocab() const { return validVocab_; }

  Sharding of(mlir::Value v) const { return shardings_.lookup(v); }
  void setSharding(mlir::Value v, Sharding s) { shardings_[v] = s; }

  /// Splits `v`'s type along `dim` and records the sharding; `op` reports
  /// a dimension tp does not divide.
  mlir::LogicalResult splitValue(mlir::Operation *op, mlir::Value v, int64_t dim);
  /// Gives the parameter that `value` (an mt.weight) reads the split `dim`
  /// (or none); `vocabulary` pads rows to a multiple of tp. Tied uses must
  /// agree.
  mlir::LogicalResult shardWeight(mlir::Operation *user, mlir::Value value,
                                  std::optional<int64_t> dim, bool vocabulary = false);
  /// Sums `partial` (a result of `op`) over tp: an all-reduce, or with
  /// sequence parallelism a reduce-scatter along the sequence.
  mlir::LogicalResult reduceAfter(mlir::Operation *op, mlir::Value partial);
  /// What a column-parallel linear reads of `input`: one mt.tp_copy of it
  /// (replicated) or its all-gather (split along the sequence), per value.
  mlir::Value columnInput(mlir::Operation *user, mlir::Value input);
  /// A mixture-of-experts layer's tokens `v` ([batch, seq, ...]) whole on
  /// every rank, for the router: gathered along the sequence when split
  /// (mt.all_gather {slice_grad}: every rank routes all tokens, so each
  /// keeps its slice of their gradient), else `v`. One per value.
  mlir::Value wholeTokens(mlir::Operation *user, mlir::Value v);
  /// This rank's tokens of `v` ([batch, seq, ...]), the ones its experts'
  /// dispatch takes: `v` when split along the sequence, else its
  /// mt.all_slice along dimension 1 (recorded as split). One per value.
  mlir::Value localTokens(mlir::Operation *user, mlir::Value v);
  /// Makes `local` (a result of `op`, split along the sequence) whole on
  /// every rank without sequence parallelism (mt.all_gather {slice_grad}),
  /// as the residual stream it joins.
  mlir::LogicalResult leaveLocalTokens(mlir::Operation *op, mlir::Value local);
  /// The rule of element-wise ops and of norms over the last dimension
  /// (`overLastDim`): operands laid out alike, results laid out as they are.
  mlir::LogicalResult partitionLocal(mlir::Operation *op, mlir::ValueRange operands,
                                     bool overLastDim);

private:
  void padVocabulary(ParamOp param);

  mlir::ModuleOp module_;
  int64_t tp_;
  bool sp_;
  mlir::OpBuilder b_;
  mlir::StringAttr axis_;
  llvm::DenseMap<mlir::Value, Sharding> shardings_;
  llvm::DenseMap<mlir::Value, mlir::Value> copies_; // value -> its tp_copy / all_gather
  llvm::DenseMap<mlir::Value, mlir::Value> wholeTokens_, localTokens_;
  int64_t validVocab_ = 0;
  llvm::DenseMap<mlir::Operation *, std::optional<int64_t>> paramShards_;
};

} // namespace mt

#endif // MT_DIALECTS_MT_MTPARTITION_H
