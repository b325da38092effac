// mt-expose-collectives: ops whose work spans ranks become local ops plus
// explicit mt.all_reduce, so that no kernel communicates inside itself.
#include "passes/Passes.h"
#include "dialects/mt/MtMesh.h"

#include "mlir/IR/Builders.h"

namespace mt {
#define GEN_PASS_DEF_EXPOSECOLLECTIVES
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

/// `op` created in place of `original`, with its layer and backward marks.
template <typename Op> Op inheriting(Op op, Operation *original) {
  op->setDiscardableAttrs(original->getDiscardableAttrDictionary());
  return op;
}

/// The reduced rows of one vocab-parallel cross-entropy that its gradient
/// reads again.
struct ReducedRows {
  Value rowMax, sumExpLogits;
};

/// Megatron-Core's VocabParallelCrossEntropy.forward in local steps:
/// logits_max -> all_reduce(max) -> predicted_logits -> all_reduce(sum) of
/// both rows -> cross_entropy_loss.
ReducedRows splitForward(CrossEntropyOp ce) {
  OpBuilder b(ce);
  Location loc = ce.getLoc();
  StringAttr axis = ce.getVocabParallelAxisAttr();
  IntegerAttr valid = ce.getValidVocabAttr();
  auto logits = cast<RankedTensorType>(ce.getLogits().getType());
  auto rows = RankedTensorType::get({logits.getDimSize(0), logits.getDimSize(1)},
                                    b.getF32Type());
  auto reduce = [&](Value v, StringRef kind) -> Value {
    return inheriting(AllReduceOp::create(b, loc, v, axis, b.getStringAttr(kind)), ce);
  };
  Value localMax = inheriting(
      VocabParallelLogitsMaxOp::create(b, loc, rows, ce.getLogits(), axis, valid), ce);
  Value rowMax = reduce(localMax, "max");
  auto local = inheriting(VocabParallelPredictedLogitsOp::create(
                              b, loc, rows, rows, ce.getLogits(), rowMax, ce.getLabels(),
                              axis, valid),
                          ce);
  Value predicted = reduce(local.getPredictedLogits(), "sum");
  Value sumExp = reduce(local.getSumExpLogits(), "sum");
  Value loss = inheriting(
      CrossEntropyLossOp::create(b, loc, ce.getType(), rowMax, predicted, sumExp,
                                 ce.getMask()), ce);
  ce.replaceAllUsesWith(loss);
  return {rowMax, sumExp};
}

/// Rewrites every vocab-parallel mt.cross_entropy of `fn` and the
/// mt.cross_entropy_grad of its logits (autodiff's), whose backward then
/// reads the forward's reduced rows and needs no collective.
LogicalResult splitCrossEntropies(func::FuncOp fn) {
  SmallVector<CrossEntropyOp> forwards;
  fn.walk([&](CrossEntropyOp ce) {
    if (ce.getVocabParallelAxis())
      forwards.push_back(ce);
  });
  DenseMap<Value, ReducedRows> reducedOf; // logits -> rows
  for (CrossEntropyOp ce : forwards)
    reducedOf[ce.getLogits()] = splitForward(ce);
  SmallVector<CrossEntropyGradOp> grads;
  fn.walk([&](CrossEntropyGradOp g) {
    if (g.getVocabParallelAxis())
      grads.push_back(g);
  });
  for (CrossEntropyGradOp g : grads) {
    auto it = reducedOf.find(g.getLogits());
    if (it == reducedOf.end())
      return g.emitOpError() << "is vocab-parallel over '" << *g.getVocabParallelAxis()
                             << "' but no vocab-parallel mt.cross_entropy of its logits "
                                "precedes it in the function";
    OpBuilder b(g);
    auto local = inheriting(VocabParallelCrossEntropyGradOp::create(
                                b, g.getLoc(), g.getType(), g.getLogits(), g.getLabels(),
                                g.getMask(), it->second.rowMax, it->second.sumExpLogits,
                                g.getDloss(), g.getVocabParallelAxisAttr(),
                                g.getValidVocabAttr()),
                            g);
    g.replaceAllUsesWith(local.getDlogits());
    g.erase();
  }
  for (CrossEntropyOp ce : forwards)
    ce.erase();
  return success();
}

struct ExposeCollectivesPass : public mt::impl::ExposeCollectivesBase<ExposeCollectivesPass> {
  using ExposeCollectivesBase::ExposeCollectivesBase;
  void runOnOperation() override;

  /// The axis sizes, from the module's `shard.grid @mesh` and, for the
  /// experts' axes, `@expert_mesh` (null without one).
  shard::GridOp mesh, expertMesh;

  /// The size of `axis` in @mesh, else in @expert_mesh.
  std::optional<int64_t> sizeOf(StringRef axis) {
    std::optional<int64_t> size = axisSize(mesh, axis);
    return size || !expertMesh ? size : axisSize(expertMesh, axis);
  }

  /// The sum of squares of `grads` (flags `replicated`: held whole by the
  /// ranks of `axis`, counted once) reduced over `axis` when set.
  FailureOr<Value> sumOverAxis(OpBuilder &b, GlobalNormOp norm, ValueRange grads,
                               DenseBoolArrayAttr replicated, StringAttr axis) {
    std::optional<int64_t> replicas = axis ? sizeOf(axis.getValue()) : std::optional<int64_t>(1);
    if (!replicas)
      return norm.emitOpError() << "is sharded over '" << axis.getValue()
                                << "', which is not an axis of @" << kMeshName << " ("
                                << axisList(mesh) << ")"
                                << (expertMesh ? " nor of @" + kExpertMeshName.str() + " (" +
                                                     axisList(expertMesh) + ")"
                                               : std::string());
    Location loc = norm.getLoc();
    Value sum = inheriting(SumSquaresOp::create(b, loc, norm.getType(), grads,
                                                axis ? replicated : DenseBoolArrayAttr(),
                                                b.getI64IntegerAttr(*replicas),
                                                /*stages=*/DenseI64ArrayAttr()),
                           norm);
    if (axis)
      sum = inheriting(AllReduceOp::create(b, loc, sum, axis, b.getStringAttr("sum")), norm);
    return sum;
  }

  /// sum_squares -> all_reduce(sum) over the split axis and the partial one
  /// (the dense and the expert operands apart, added, when both are split)
  /// and over pp -> sqrt.
  LogicalResult splitGlobalNorm(GlobalNormOp norm) {
    OpBuilder b(norm);
    Location loc = norm.getLoc();
    SmallVector<Value> dense, experts;
    SmallVector<bool> denseReplicated;
    std::optional<ArrayRef<bool>> expertFlags = norm.getExperts();
    std::optional<ArrayRef<bool>> replicatedFlags = norm.getReplicated();
    for (auto [i, g] : llvm::enumerate(norm.getGrads())) {
      if (expertFlags && (*expertFlags)[i]) {
        experts.push_back(g);
        continue;
      }
      dense.push_back(g);
      denseReplicated.push_back(replicatedFlags && (*replicatedFlags)[i]);
    }
    FailureOr<Value> sum =
        sumOverAxis(b, norm, dense,
                    replicatedFlags ? b.getDenseBoolArrayAttr(denseReplicated)
                                    : DenseBoolArrayAttr(),
                    norm.getShardedAxisAttr());
    if (failed(sum))
      return failure();
    // The distributed optimizer's dense gradient shards: each rank holds a
    // disjoint part over the axis (expert shards are disjoint over their
    // own axes, edp among them).
    if (std::optional<StringRef> partial = norm.getPartialAxis()) {
      if (!axisSize(mesh, *partial))
        return norm.emitOpError() << "is partial over '" << *partial
                                  << "', which is not an axis of @" << kMeshName << " ("
                                  << axisList(mesh) << ")";
      *sum = inheriting(AllReduceOp::create(b, loc, *sum, norm.getPartialAxisAttr(),
                                            b.getStringAttr("sum")),
                        norm);
    }
    if (!experts.empty()) {
      // Expert shards are disjoint over every axis they are split on.
      ArrayAttr axes = norm.getExpertAxesAttr();
      FailureOr<Value> expertSum = sumOverAxis(
          b, norm, experts, DenseBoolArrayAttr(),
          axes && !axes.empty() ? cast<StringAttr>(axes[0]) : StringAttr());
      if (failed(expertSum))
        return failure();
      for (Attribute axis : axes ? axes.getValue().drop_front() : ArrayRef<Attribute>()) {
        if (!sizeOf(cast<StringAttr>(axis).getValue()))
          return norm.emitOpError() << "is sharded over '" << cast<StringAttr>(axis).getValue()
                                    << "', which is not an axis of @" << kExpertMeshName;
        *expertSum = inheriting(AllReduceOp::create(b, loc, *expertSum, cast<StringAttr>(axis),
                                                    b.getStringAttr("sum")),
                                norm);
      }
      *sum = inheriting(AddOp::create(b, loc, *sum, *expertSum), norm);
    }
    // Pipeline stages hold disjoint parameters: their sums add up.
    if (*axisSize(mesh, "pp") > 1)
      *sum = inheriting(AllReduceOp::create(b, loc, *sum, b.getStringAttr("pp"),
                                            b.getStringAttr("sum")),
                        norm);
    norm.replaceAllUsesWith(inheriting(SqrtOp::create(b, loc, *sum), norm).getResult());
    norm.erase();
    return success();
  }
};

void ExposeCollectivesPass::runOnOperation() {
  ModuleOp module = getOperation();
  mesh = module.lookupSymbol<shard::GridOp>(kMeshName);
  expertMesh = module.lookupSymbol<shard::GridOp>(kExpertMeshName);
  if (!mesh || !axisSize(mesh, "pp")) {
    module.emitError() << "mt-expose-collectives expects a mesh 'shard.grid @" << kMeshName
                       << "' with axis 'pp' in '" << MtDialect::kAxesAttrName << "'";
    return signalPassFailure();
  }
  SmallVector<GlobalNormOp> norms;
  module.walk([&](GlobalNormOp n) { norms.push_back(n); });
  for (GlobalNormOp n : norms)
    if (failed(splitGlobalNorm(n)))
      return signalPassFailure();
  for (auto fn : module.getOps<func::FuncOp>())
    if (failed(splitCrossEntropies(fn)))
      return signalPassFailure();
}

} // namespace
