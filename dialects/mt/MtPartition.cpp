// The driver of tensor-parallel partitioning and the layout helpers that the
// op partition rules share (Megatron-Core's copy-to / reduce-from
// tensor-parallel regions, sequence-parallel gathers and scatters).
#include "dialects/mt/MtPartition.h"
#include "dialects/mt/MtMesh.h"

using namespace mlir;

namespace mt {

namespace {

int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }

/// The rule of an op without PartitionableOpInterface: replicated operands.
LogicalResult partitionReplicatedOnly(Partitioner &p, Operation *op) {
  for (Value v : op->getOperands())
    if (p.of(v).kind != Sharding::Replicated)
      return op->emitOpError() << "has no tensor-parallel rule";
  return success();
}

} // namespace

void copyLayer(Operation *from, Operation *to) {
  if (Attribute layer = from->getAttr(MtDialect::kLayerAttrName))
    to->setAttr(MtDialect::kLayerAttrName, layer);
}

Partitioner::Partitioner(ModuleOp module, int64_t tp, bool sequenceParallel)
    : module_(module), tp_(tp), sp_(sequenceParallel), b_(module.getContext()),
      axis_(b_.getStringAttr(kTensorParallelAxis)) {}

LogicalResult Partitioner::run(func::FuncOp fn) {
  SmallVector<Operation *> ops;
  for (Operation &op : fn.getBody().front().without_terminator())
    ops.push_back(&op);
  for (Operation *op : ops) {
    auto rule = dyn_cast<PartitionableOpInterface>(op);
    if (failed(rule ? rule.partition(*this) : partitionReplicatedOnly(*this, op)))
      return failure();
  }
  return success();
}

LogicalResult Partitioner::splitValue(Operation *op, Value v, int64_t dim) {
  auto t = cast<RankedTensorType>(v.getType());
  if (t.getDimSize(dim) % tp_ != 0)
    return op->emitOpError() << "cannot split dimension " << dim << " ("
                             << t.getDimSize(dim) << ") over tp = " << tp_;
  SmallVector<int64_t> shape(t.getShape());
  shape[dim] /= tp_;
  v.setType(RankedTensorType::get(shape, t.getElementType()));
  shardings_[v] = Sharding::split(dim);
  return success();
}

/// Pads the rows of a vocabulary parameter to a multiple of tp (Megatron
/// pads the vocabulary); the padding rows are never loaded or exported and
/// the cross-entropy ignores their logits.
void Partitioner::padVocabulary(ParamOp param) {
  RankedTensorType full = param.getTensorType();
  int64_t rows = full.getDimSize(0);
  if (rows % tp_ == 0 || param.getHfRows())
    return;
  SmallVector<int64_t> shape(full.getShape());
  shape[0] = (rows + tp_ - 1) / tp_ * tp_;
  param.setType(RankedTensorType::get(shape, full.getElementType()));
  param.setHfRows(rows);
  validVocab_ = rows;
}

LogicalResult Partitioner::shardWeight(Operation *user, Value value, std::optional<int64_t> dim,
                                       bool vocabulary) {
  auto weight = value.getDefiningOp<WeightOp>();
  if (!weight)
    return user->emitOpError() << "expects a parameter operand to shard";
  auto param = module_.lookupSymbol<ParamOp>(weight.getParamAttr());
  if (vocabulary && dim == 0)
    padVocabulary(param);
  if (auto [it, inserted] = paramShards_.try_emplace(param, dim); !inserted) {
    if (it->second != dim)
      return user->emitOpError()
             << "needs parameter " << weight.getParamAttr()
             << " split differently from an earlier use (tied weights must "
                "share one layout)";
    return success();
  }
  if (dim) {
    if (param.getTensorType().getDimSize(*dim) % tp_ != 0)
      return user->emitOpError() << "cannot split dimension " << *dim << " of parameter "
                                 << weight.getParamAttr() << " over tp = " << tp_;
    param.setShardingAttr(ShardingAttr::split(b_.getContext(), kMeshName,
                                              param.getTensorType().getRank(), *dim, axis_));
  }
  for (auto w : module_.getOps<func::FuncOp>())
    w.walk([&](WeightOp read) {
      if (read.getParamAttr() == weight.getParamAttr())
        read.getResult().setType(param.getLocalType());
    });
  return success();
}

LogicalResult Partitioner::reduceAfter(Operation *op, Value partial) {
  b_.setInsertionPointAfter(op);
  Operation *reduce;
  if (sp_) {
    auto t = cast<RankedTensorType>(partial.getType());
    if (t.getRank() < 2 || t.getDimSize(1) % tp_ != 0)
      return op->emitOpError() << "cannot split the sequence (" << t
                               << ", dimension 1) over tp = " << tp_;
    SmallVector<int64_t> shape(t.getShape());
    shape[1] /= tp_;
    reduce = ReduceScatterOp::create(b_, op->getLoc(),
                                     RankedTensorType::get(shape, t.getElementType()),
                                     partial, axis_, b_.getI64IntegerAttr(1));
    shardings_[reduce->getResult(0)] = Sharding::split(1);
  } else {
    reduce = AllReduceOp::create(b_, op->getLoc(), partial, axis_, UnitAttr());
  }
  copyLayer(op, reduce);
  partial.replaceAllUsesExcept(reduce->getResult(0), reduce);
  return success();
}

Value Partitioner::columnInput(Operation *user, Value input) {
  Value &cached = copies_[input];
  if (cached)
    return cached;
  b_.setInsertionPointAfterValue(input);
  Sharding s = of(input);
  if (s.kind == Sharding::Split) {
    auto t = cast<RankedTensorType>(input.getType());
    SmallVector<int64_t> shape(t.getShape());
    shape[1] *= tp_;
    cached = AllGatherOp::create(b_, user->getLoc(),
                                 RankedTensorType::get(shape, t.getElementType()), input,
                                 axis_, b_.getI64IntegerAttr(1));
  } else {
    cached = TPCopyOp::create(b_, user->getLoc(), input, axis_);
  }
  copyLayer(user, cached.getDefiningOp());
  return cached;
}

namespace {

/// `t` with dimension `dim` multiplied by `factor` (divided when negative).
RankedTensorType resized(Value v, int64_t dim, int64_t factor) {
  auto t = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape(t.getShape());
  shape[dim] = factor > 0 ? shape[dim] * factor : shape[dim] / -factor;
  return RankedTensorType::get(shape, t.getElementType());
}

} // namespace

Value Partitioner::wholeTokens(Operation *user, Value v) {
  if (of(v).kind == Sharding::Replicated)
    return v;
  Value &cached = wholeTokens_[v];
  if (!cached) {
    b_.setInsertionPointAfterValue(v);
    cached = AllGatherOp::create(b_, user->getLoc(), resized(v, 1, tp_), v, axis_,
                                 b_.getI64IntegerAttr(1), b_.getUnitAttr());
    copyLayer(user, cached.getDefiningOp());
  }
  return cached;
}

Value Partitioner::localTokens(Operation *user, Value v) {
  if (of(v).kind == Sharding::Split)
    return v;
  Value &cached = localTokens_[v];
  if (!cached) {
    b_.setInsertionPointAfterValue(v);
    cached = AllSliceOp::create(b_, user->getLoc(), resized(v, 1, -tp_), v, axis_,
                                b_.getI64IntegerAttr(1));
    copyLayer(user, cached.getDefiningOp());
    shardings_[cached] = Sharding::split(1);
  }
  return cached;
}

LogicalResult Partitioner::leaveLocalTokens(Operation *op, Value local) {
  if (sp_)
    return success();
  b_.setInsertionPointAfter(op);
  auto gather = AllGatherOp::create(b_, op->getLoc(), resized(local, 1, tp_), local, axis_,
                                    b_.getI64IntegerAttr(1), b_.getUnitAttr());
  copyLayer(op, gather);
  local.replaceAllUsesExcept(gather.getResult(), gather);
  return success();
}

LogicalResult Partitioner::partitionLocal(Operation *op, ValueRange operands, bool overLastDim) {
  Sharding s = of(operands.front());
  for (Value v : operands.drop_front())
    if (!(of(v) == s))
      return op->emitOpError() << "has operands laid out differently over tp";
  if (overLastDim && s.kind == Sharding::Split && s.dim == rankOf(operands.front()) - 1)
    return op->emitOpError() << "normalizes over a dimension split over tp "
                                "(sequence/feature-split norms are not supported)";
  for (Value r : op->getResults())
    if (s.kind == Sharding::Split)
      if (failed(splitValue(op, r, s.dim)))
        return failure();
  return success();
}

} // namespace mt
