// mt-partition-tp: tensor parallelism by sharding propagation through
// @forward, with Megatron-Core's layouts as the op rules.
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mt {
#define GEN_PASS_DEF_PARTITIONTENSORPARALLEL
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

/// How a value is laid out over the tp axis: whole on every rank, split
/// along one dimension, or a partial sum still to be reduced.
struct Sharding {
  enum Kind { Replicated, Split } kind = Replicated;
  int64_t dim = -1;
  static Sharding split(int64_t d) { return {Split, d}; }
  bool operator==(const Sharding &o) const { return kind == o.kind && dim == o.dim; }
};

int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }

/// Inserted collectives belong to the layer of the op they serve.
void copyLayer(Operation *from, Operation *to) {
  if (Attribute layer = from->getAttr(MtDialect::kLayerAttrName))
    to->setAttr(MtDialect::kLayerAttrName, layer);
}

class Partitioner {
public:
  Partitioner(ModuleOp module, int64_t tp, bool sequenceParallel)
      : module_(module), tp_(tp), sp_(sequenceParallel), b_(module.getContext()) {}

  LogicalResult run(func::FuncOp fn) {
    SmallVector<Operation *> ops;
    for (Operation &op : fn.getBody().front().without_terminator())
      ops.push_back(&op);
    for (Operation *op : ops)
      if (failed(visit(op)))
        return failure();
    return success();
  }

private:
  Sharding of(Value v) { return shardings_.lookup(v); }

  /// Splits `v`'s type along `dim` and records the sharding.
  LogicalResult splitValue(Operation *op, Value v, int64_t dim) {
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
  void padVocabulary(ParamOp param) {
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

  /// Gives the parameter read by `weight` the sharding `dim` (or none).
  LogicalResult shardWeight(Operation *user, Value value, std::optional<int64_t> dim,
                            bool vocabulary = false) {
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
      param.setShardDim(*dim);
      param.setShards(tp_);
    }
    for (auto w : module_.getOps<func::FuncOp>())
      w.walk([&](WeightOp read) {
        if (read.getParamAttr() == weight.getParamAttr())
          read.getResult().setType(param.getLocalType());
      });
    return success();
  }

  /// Sums `partial` (the output of `op`) over tp: an all-reduce, or with
  /// sequence parallelism a reduce-scatter that leaves it split along the
  /// sequence.
  LogicalResult reduceAfter(Operation *op, Value partial) {
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
                                       partial, b_.getStringAttr("tp"), b_.getI64IntegerAttr(1));
      shardings_[reduce->getResult(0)] = Sharding::split(1);
    } else {
      reduce = AllReduceOp::create(b_, op->getLoc(), partial, b_.getStringAttr("tp"),
                                   UnitAttr());
    }
    copyLayer(op, reduce);
    partial.replaceAllUsesExcept(reduce->getResult(0), reduce);
    return success();
  }

  /// The value a column-parallel linear reads: `input` (replicated) through
  /// one mt.tp_copy, or (split along the sequence) its all-gather. One per
  /// value, so that the gradients of all its users are reduced once.
  Value columnInput(Operation *user, Value input) {
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
                                   b_.getStringAttr("tp"), b_.getI64IntegerAttr(1));
    } else {
      cached = TPCopyOp::create(b_, user->getLoc(), input, b_.getStringAttr("tp"));
    }
    copyLayer(user, cached.getDefiningOp());
    return cached;
  }

  LogicalResult visitLinear(LinearOp op) {
    Sharding in = of(op.getInput());
    bool sequenceSplit = sp_ && in.kind == Sharding::Split && in.dim == 1 &&
                         rankOf(op.getInput()) == 3;
    if (in.kind == Sharding::Replicated || sequenceSplit) { // column-parallel
      op.getInputMutable().assign(columnInput(op, op.getInput()));
      // The output projection onto the vocabulary may pad it.
      bool logits = llvm::any_of(op.getResult().getUsers(),
                                 [](Operation *u) { return isa<CrossEntropyOp>(u); });
      if (failed(shardWeight(op, op.getWeight(), 0, logits)) ||
          (op.getBias() && failed(shardWeight(op, op.getBias(), 0))))
        return failure();
      // The local output has as many features as the local weight has rows.
      auto t = cast<RankedTensorType>(op.getResult().getType());
      SmallVector<int64_t> shape(t.getShape());
      shape.back() = cast<RankedTensorType>(op.getWeight().getType()).getDimSize(0);
      op.getResult().setType(RankedTensorType::get(shape, t.getElementType()));
      shardings_[op.getResult()] = Sharding::split(rankOf(op.getResult()) - 1);
      return success();
    }
    if (in.dim != rankOf(op.getInput()) - 1)
      return op.emitOpError() << "has an input split on dimension " << in.dim
                              << ", not on its features";
    if (failed(shardWeight(op, op.getWeight(), 1))) // row-parallel
      return failure();
    Value bias = op.getBias();
    if (bias)
      op.getBiasMutable().clear();
    if (failed(reduceAfter(op, op.getResult())))
      return failure();
    if (!bias)
      return success();
    // The bias is added once, after the sum over ranks; split along the
    // sequence, each rank's share of its gradient is partial.
    if (failed(shardWeight(op, bias, std::nullopt)))
      return failure();
    Operation *reduce = *op.getResult().getUsers().begin();
    Value summed = reduce->getResult(0);
    b_.setInsertionPointAfter(reduce);
    if (sp_) {
      auto copy = TPCopyOp::create(b_, op.getLoc(), bias, b_.getStringAttr("tp"));
      copyLayer(op, copy);
      bias = copy;
    }
    auto add = BiasAddOp::create(b_, op.getLoc(), summed.getType(), summed, bias);
    copyLayer(op, add);
    summed.replaceAllUsesExcept(add.getResult(), add);
    shardings_[add.getResult()] = of(summed);
    return success();
  }

  LogicalResult visitReshape(ReshapeOp op) {
    Sharding in = of(op.getInput());
    if (in.kind == Sharding::Replicated)
      return success();
    auto from = cast<RankedTensorType>(op.getInput().getType());
    auto to = cast<RankedTensorType>(op.getResult().getType());
    // [.., a*b] split on the last dim <-> [.., a, b] split on a (heads).
    if (in.dim == from.getRank() - 1 && to.getRank() == from.getRank() + 1)
      return splitValue(op, op.getResult(), to.getRank() - 2);
    if (in.dim == from.getRank() - 2 && to.getRank() == from.getRank() - 1)
      return splitValue(op, op.getResult(), to.getRank() - 1);
    return op.emitOpError() << "reshapes a value split on dimension " << in.dim
                            << " in a way tensor parallelism does not support";
  }

  /// Element-wise ops and norms over an unsplit last dimension keep the
  /// sharding of their operands, which must agree.
  LogicalResult visitLocal(Operation *op, ValueRange operands, bool overLastDim) {
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

  LogicalResult visit(Operation *op) {
    return llvm::TypeSwitch<Operation *, LogicalResult>(op)
        .Case([&](WeightOp) { return success(); })
        .Case([&](EmbeddingOp e) {
          if (failed(shardWeight(e, e.getTable(), 0, /*vocabulary=*/true)))
            return failure();
          e.setVocabParallelAxis("tp");
          return reduceAfter(e, e.getResult());
        })
        .Case([&](LinearOp l) { return visitLinear(l); })
        .Case([&](ReshapeOp r) { return visitReshape(r); })
        .Case([&](RMSNormOp n) {
          if (failed(shardWeight(n, n.getWeight(), std::nullopt)))
            return failure();
          // A norm over local heads (Qwen3's q/k norm) sees only this rank's
          // heads: its weight's gradient is a partial sum over tp.
          if (of(n.getInput()).kind == Sharding::Split) {
            b_.setInsertionPoint(n);
            auto copy = TPCopyOp::create(b_, n.getLoc(), n.getWeight(), b_.getStringAttr("tp"));
            copyLayer(n, copy);
            n.getWeightMutable().assign(copy);
          }
          return visitLocal(n, n.getInput(), true);
        })
        .Case([&](LayerNormOp n) {
          if (failed(shardWeight(n, n.getWeight(), std::nullopt)) ||
              failed(shardWeight(n, n.getBias(), std::nullopt)))
            return failure();
          return visitLocal(n, n.getInput(), true);
        })
        .Case<RotaryOp, GELUOp>([&](auto u) { return visitLocal(u, u->getOperands(), false); })
        .Case<AddOp, SwiGLUOp>([&](auto u) { return visitLocal(u, u->getOperands(), false); })
        .Case([&](BiasAddOp a) { // inserted after row-parallel linears: already laid out
          return success();
        })
        .Case([&](AttentionOp a) {
          if (failed(visitLocal(a, a->getOperands(), false)))
            return failure();
          if (of(a.getQuery()).kind == Sharding::Split) {
            a.setNumHeads(a.getNumHeads() / tp_);
            a.setNumKvHeads(a.getNumKvHeads() / tp_);
          }
          return success();
        })
        .Case([&](CrossEntropyOp c) {
          Sharding s = of(c.getLogits());
          if (s.kind == Sharding::Split) {
            c.setVocabParallelAxis("tp");
            if (validVocab_)
              c.setValidVocab(validVocab_);
          }
          return success();
        })
        .Case<MoERouterOp, ExpertFFNOp>([&](Operation *o) {
          return o->emitOpError() << "is a mixture-of-experts op: tensor "
                                     "parallelism of experts is not supported yet";
        })
        .Default([&](Operation *o) -> LogicalResult {
          for (Value v : o->getOperands())
            if (of(v).kind != Sharding::Replicated)
              return o->emitOpError() << "has no tensor-parallel rule";
          return success();
        });
  }

  ModuleOp module_;
  int64_t tp_;
  bool sp_;
  OpBuilder b_;
  DenseMap<Value, Sharding> shardings_;
  DenseMap<Value, Value> copies_; // value -> its tp_copy / all_gather
  int64_t validVocab_ = 0;        // the vocabulary before padding, when padded
  DenseMap<Operation *, std::optional<int64_t>> paramShards_;
};

struct PartitionTensorParallelPass
    : public mt::impl::PartitionTensorParallelBase<PartitionTensorParallelPass> {
  using PartitionTensorParallelBase::PartitionTensorParallelBase;
  void runOnOperation() override {
    if (tp < 1) {
      getOperation().emitError() << "mt-partition-tp expects tp >= 1, got " << tp;
      return signalPassFailure();
    }
    if (tp == 1)
      return;
    auto fn = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!fn) {
      getOperation().emitError() << "mt-partition-tp expects 'func.func @forward'";
      return signalPassFailure();
    }
    if (failed(Partitioner(getOperation(), tp, sequenceParallel).run(fn)))
      return signalPassFailure();
  }
};

} // namespace
