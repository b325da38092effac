// mt-pipeline-split: the pipeline stages of the training step as IR. Every
// op of @forward_backward gets the virtual stage that runs it, a value used
// on another virtual stage passes through mt.stage_transfer (the plan's
// send/recv pair), and every parameter the stage that holds it.
#include "passes/Passes.h"
#include "dialects/mt/MtMesh.h"

#include "mlir/IR/Builders.h"

#include <map>
#include <set>

namespace mt {
#define GEN_PASS_DEF_PIPELINESPLIT
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

int64_t layerOf(Operation *op) {
  auto layer = op->getAttrOfType<IntegerAttr>(MtDialect::kLayerAttrName);
  return layer ? layer.getInt() : int64_t(-1);
}

bool isBackward(Operation *op) { return op->hasAttr(MtDialect::kBackwardAttrName); }

/// Whether `op` runs on a virtual stage: parameter reads (every stage that
/// holds the parameter reads its buffer) and the terminator do not.
bool isStaged(Operation *op) {
  return !isa<WeightOp>(op) && !op->hasTrait<OpTrait::IsTerminator>();
}

/// The sum of a parameter's gradient terms (a tied parameter, read on the
/// first and the last stage): each stage adds its own term into the
/// parameter's gradient buffer in place, and the two stages' sums are added
/// over pp_tied before the optimizer; no term crosses a stage.
bool isGradientSum(Operation *op) {
  return isa<AddOp>(op) && llvm::all_of(op->getUsers(), [](Operation *user) {
           return user->hasTrait<OpTrait::IsTerminator>();
         });
}

int64_t stageOf(Operation *op) {
  return op->getAttrOfType<IntegerAttr>(MtDialect::kVirtualStageAttrName).getInt();
}

/// Layers go to virtual stages by `chunkLayers` (virtual stage v = chunk x
/// pp + stage holds the next chunkLayers[v] layers); an op outside the
/// layers belongs to the first virtual stage (embedding, its gradient) or
/// the last (final norm, head, loss and their gradients), by its place in
/// the function: autodiff appends the backward in reverse order.
LogicalResult assignVirtualStages(func::FuncOp fn, ArrayRef<int64_t> chunkLayers) {
  SmallVector<int64_t> stageOfLayer;
  for (auto [v, n] : llvm::enumerate(chunkLayers))
    stageOfLayer.append(size_t(n), int64_t(v));
  const int64_t last = int64_t(chunkLayers.size()) - 1;
  SmallVector<Operation *> ops;
  for (Operation &op : fn.getBody().front().without_terminator())
    ops.push_back(&op);
  size_t firstForward = ops.size(), firstBackward = ops.size();
  for (auto [i, op] : llvm::enumerate(ops))
    if (layerOf(op) >= 0) {
      size_t &first = isBackward(op) ? firstBackward : firstForward;
      first = std::min(first, i);
    }
  Builder b(fn.getContext());
  for (auto [i, op] : llvm::enumerate(ops)) {
    if (!isStaged(op))
      continue;
    const int64_t layer = layerOf(op);
    if (layer >= int64_t(stageOfLayer.size()))
      return op->emitOpError() << "belongs to layer " << layer << " beyond the "
                               << stageOfLayer.size() << " layers of the pipeline layout";
    int64_t v;
    if (layer >= 0)
      v = stageOfLayer[layer];
    else if (!isBackward(op))
      v = i < firstForward ? 0 : last;
    else
      v = i < firstBackward ? last : 0;
    op->setAttr(MtDialect::kVirtualStageAttrName, b.getI64IntegerAttr(v));
  }
  return success();
}

/// Every use of a value on another virtual stage than its own goes through
/// one mt.stage_transfer per receiving stage: an activation of a forward to
/// the next virtual stage (whose forward keeps it for its backward too), a
/// gradient of a backward to the previous one. Any other crossing is an
/// error: a 1F1B pipeline has no channel for it. Gradient sums of tied
/// parameters take no transfer (isGradientSum).
LogicalResult insertTransfers(func::FuncOp fn) {
  SmallVector<Operation *> defs;
  for (Operation &op : fn.getBody().front().without_terminator())
    if (isStaged(&op))
      defs.push_back(&op);
  for (Operation *def : defs) {
    const int64_t from = stageOf(def);
    for (Value result : def->getResults()) {
      std::map<int64_t, SmallVector<OpOperand *>> crossing; // by receiving stage
      for (OpOperand &use : result.getUses()) {
        Operation *user = use.getOwner();
        if (!isStaged(user) || isGradientSum(user) || stageOf(user) == from)
          continue;
        const int64_t to = stageOf(user);
        const bool forwardEdge = !isBackward(def) && to == from + 1;
        const bool backwardEdge = isBackward(def) && isBackward(user) && to + 1 == from;
        if (!forwardEdge && !backwardEdge)
          return user->emitOpError() << "on virtual stage " << to
                                     << " uses a value of virtual stage " << from
                                     << ", which pipelining does not support";
        crossing[to].push_back(&use);
      }
      for (auto &[to, uses] : crossing) {
        OpBuilder b(def->getContext());
        b.setInsertionPointAfter(def);
        auto transfer = StageTransferOp::create(b, def->getLoc(), result,
                                                b.getI64IntegerAttr(from),
                                                b.getI64IntegerAttr(to));
        transfer->setAttr(MtDialect::kVirtualStageAttrName, b.getI64IntegerAttr(to));
        if (isBackward(def))
          transfer->setAttr(MtDialect::kBackwardAttrName, b.getUnitAttr());
        for (OpOperand *use : uses)
          use->set(transfer.getResult());
      }
    }
  }
  return success();
}

/// Each parameter is held by the stage whose ops read it; one read by the
/// first and the last stage (tied embeddings) by both: the first owns it
/// (mt.pipeline_stage), the last keeps a copy updated the same way
/// (mt.tied_stage) after their gradients are summed over pp_tied.
LogicalResult assignParameterStages(ModuleOp module, func::FuncOp fn, int64_t pp) {
  llvm::StringMap<std::set<int64_t>> readers;
  fn.walk([&](WeightOp read) {
    for (Operation *user : read->getUsers())
      if (isStaged(user))
        readers[read.getParam()].insert(stageOf(user) % pp);
  });
  Builder b(module.getContext());
  for (ParamOp param : module.getOps<ParamOp>()) {
    const std::set<int64_t> &stages = readers[param.getSymName()];
    if (stages.size() > 2 ||
        (stages.size() == 2 && (*stages.begin() != 0 || *stages.rbegin() != pp - 1)))
      return param.emitOpError() << "is read on pipeline stages " << *stages.begin() << " and "
                                 << *stages.rbegin()
                                 << "; only the first and last stage may share a parameter "
                                    "(tied embeddings)";
    param->setAttr(MtDialect::kPipelineStageAttrName,
                   b.getI64IntegerAttr(stages.empty() ? 0 : *stages.begin()));
    if (stages.size() == 2)
      param->setAttr(MtDialect::kTiedStageAttrName, b.getI64IntegerAttr(pp - 1));
  }
  return success();
}

struct PipelineSplitPass : public mt::impl::PipelineSplitBase<PipelineSplitPass> {
  using PipelineSplitBase::PipelineSplitBase;
  void runOnOperation() override;
};

void PipelineSplitPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto mesh = module.lookupSymbol<shard::GridOp>(kMeshName);
  std::optional<int64_t> pp = mesh ? axisSize(mesh, "pp") : std::nullopt;
  if (!pp) {
    module.emitError() << "mt-pipeline-split expects a mesh 'shard.grid @" << kMeshName
                       << "' with axis 'pp' in '" << MtDialect::kAxesAttrName << "'";
    return signalPassFailure();
  }
  if (*pp < 2)
    return; // one stage: nothing to split
  auto fn = module.lookupSymbol<func::FuncOp>("forward_backward");
  if (!fn) {
    module.emitError() << "mt-pipeline-split expects @forward_backward (run mt-autodiff first)";
    return signalPassFailure();
  }
  SmallVector<int64_t> layers(chunkLayers.begin(), chunkLayers.end());
  if (layers.empty() || int64_t(layers.size()) % *pp != 0) {
    module.emitError() << "mt-pipeline-split: chunk-layers gives " << layers.size()
                       << " virtual stages, expected a positive multiple of pp = " << *pp;
    return signalPassFailure();
  }
  if (failed(assignVirtualStages(fn, layers)) || failed(insertTransfers(fn)) ||
      failed(assignParameterStages(module, fn, *pp)))
    return signalPassFailure();
}

} // namespace
