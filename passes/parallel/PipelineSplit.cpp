// mt-pipeline-split: the pipeline stages of the training step as IR. Every
// op of @forward_backward gets the virtual stage that runs it, a value used
// on another virtual stage passes through mt.stage_transfer (the plan's
// send/recv pair), every parameter and its optimizer ops the stage that
// holds it, a tied parameter's gradient its sum over the first and last
// stage, and each stage its share of the gradient norm.
#include "passes/Passes.h"
#include "dialects/mt/MtMesh.h"
#include "runtime/plan/MeshAxes.h"

#include "mlir/IR/Builders.h"

#include "llvm/ADT/StringSet.h"

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
/// over pp_tied before the optimizer (sumTiedGradients); no term crosses a
/// stage.
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
/// mt.stage_transfers, one per stage boundary crossed: an activation of a
/// forward to each later virtual stage in turn (whose forward keeps it for
/// its backward too; a sum of MoE layers' aux losses passes a stage of dense
/// layers so), a gradient of a backward to each earlier one. Any other
/// crossing is an error: a 1F1B pipeline has no channel for it. Gradient
/// sums of tied parameters take no transfer (isGradientSum).
LogicalResult insertTransfers(func::FuncOp fn) {
  SmallVector<Operation *> defs;
  for (Operation &op : fn.getBody().front().without_terminator())
    if (isStaged(&op))
      defs.push_back(&op);
  for (Operation *def : defs) {
    const int64_t from = stageOf(def);
    const bool backward = isBackward(def);
    for (Value result : def->getResults()) {
      std::map<int64_t, SmallVector<OpOperand *>> crossing; // by receiving stage
      for (OpOperand &use : result.getUses()) {
        Operation *user = use.getOwner();
        if (!isStaged(user) || isGradientSum(user) || stageOf(user) == from)
          continue;
        const int64_t to = stageOf(user);
        const bool forwardEdge = !backward && to > from;
        const bool backwardEdge = backward && isBackward(user) && to < from;
        if (!forwardEdge && !backwardEdge)
          return user->emitOpError() << "on virtual stage " << to
                                     << " uses a value of virtual stage " << from
                                     << ", which pipelining does not support";
        crossing[to].push_back(&use);
      }
      // The value as each stage receives it, passed on stage by stage.
      std::map<int64_t, Value> at{{from, result}};
      Operation *after = def;
      auto receive = [&](int64_t to) -> Value {
        const int64_t step = backward ? -1 : 1;
        int64_t k = from;
        while (at.count(k + step) && k != to)
          k += step;
        for (; k != to; k += step) {
          OpBuilder b(def->getContext());
          b.setInsertionPointAfter(after);
          auto transfer = StageTransferOp::create(b, def->getLoc(), at[k],
                                                  b.getI64IntegerAttr(k),
                                                  b.getI64IntegerAttr(k + step));
          transfer->setAttr(MtDialect::kVirtualStageAttrName, b.getI64IntegerAttr(k + step));
          if (backward)
            transfer->setAttr(MtDialect::kBackwardAttrName, b.getUnitAttr());
          at[k + step] = transfer.getResult();
          after = transfer;
        }
        return at[to];
      };
      // Nearest stages first, so that farther ones extend their chain.
      auto place = [&](int64_t to, SmallVector<OpOperand *> &uses) {
        Value received = receive(to);
        for (OpOperand *use : uses)
          use->set(received);
      };
      if (backward)
        for (auto it = crossing.rbegin(); it != crossing.rend(); ++it)
          place(it->first, it->second);
      else
        for (auto &[to, uses] : crossing)
          place(to, uses);
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

/// Whether @optimizer_step's argument `arg` is the gradient of a tied
/// parameter (mt.tied_stage), or of a distributed optimizer's bucket of
/// them; a bucket mixing tied and untied parameters is an error (the sum
/// over pp_tied would add the last stage's unrelated values).
FailureOr<bool> isTiedGradient(func::FuncOp opt, BlockArgument arg,
                               const llvm::StringSet<> &tied) {
  const unsigned i = arg.getArgNumber();
  auto role = opt.getArgAttrOfType<StringAttr>(i, "mt.role");
  auto param = opt.getArgAttrOfType<FlatSymbolRefAttr>(i, "mt.param");
  if (!role || role.getValue() != "grad" || !param)
    return false;
  auto bucket = opt.getArgAttrOfType<IntegerAttr>(i, "mt.bucket");
  auto buckets = opt->getAttrOfType<ArrayAttr>(MtDialect::kBucketsAttrName);
  if (!bucket)
    return tied.contains(param.getValue());
  auto entry = buckets && bucket.getInt() < int64_t(buckets.size())
                   ? dyn_cast<DictionaryAttr>(buckets[bucket.getInt()])
                   : DictionaryAttr();
  auto members = entry ? entry.getAs<ArrayAttr>("params") : ArrayAttr();
  if (!members)
    return opt.emitOpError() << "argument " << i << " names bucket " << bucket.getInt()
                             << ", which its '" << MtDialect::kBucketsAttrName
                             << "' does not describe";
  int64_t count = 0;
  for (Attribute m : members)
    count += tied.contains(cast<FlatSymbolRefAttr>(m).getValue());
  if (count != 0 && count != int64_t(members.size()))
    return opt.emitOpError() << "bucket " << bucket.getInt()
                             << " mixes tied and untied parameters; a tied parameter's "
                                "gradient is summed over "
                             << plan::kTiedEmbeddingGroup << " alone";
  return count != 0;
}

/// Megatron-Core's embedding-group all-reduce: the first and the last stage
/// each hold one term of a tied parameter's gradient (their own reads),
/// and both need the sum before the optimizer reads it. Inserts
/// mt.all_reduce {axis = "pp_tied"} at the start of @optimizer_step on each
/// such gradient argument (a module without @optimizer_step has none).
LogicalResult sumTiedGradients(ModuleOp module) {
  auto opt = module.lookupSymbol<func::FuncOp>("optimizer_step");
  if (!opt)
    return success();
  llvm::StringSet<> tied;
  for (ParamOp param : module.getOps<ParamOp>())
    if (param->hasAttr(MtDialect::kTiedStageAttrName))
      tied.insert(param.getSymName());
  OpBuilder b(opt.getContext());
  b.setInsertionPointToStart(&opt.getBody().front());
  for (BlockArgument arg : opt.getArguments()) {
    FailureOr<bool> isTied = isTiedGradient(opt, arg, tied);
    if (failed(isTied))
      return failure();
    if (!*isTied)
      continue;
    auto sum = AllReduceOp::create(b, arg.getLoc(), arg,
                                   b.getStringAttr(plan::kTiedEmbeddingGroup),
                                   b.getStringAttr("sum"));
    arg.replaceAllUsesExcept(sum.getResult(), sum);
  }
  return success();
}

/// The parameter (a bucket's first) whose state `v` of @optimizer_step is:
/// an argument with `mt.param`, its gradient's sums (pp_tied, dp, edp) and
/// scalings (by a constant, or by the step's tokens), or a distributed optimizer's slice and update of it; null for anything else
/// (the norm, the clipping, the schedule).
ParamOp parameterOf(ModuleOp module, func::FuncOp opt, Value v) {
  while (Operation *def = v.getDefiningOp()) {
    if (!isa<AllReduceOp, ReduceScatterOp, AllSliceOp, AdamWOp, ScaleOp, ScaleByOp>(def))
      return ParamOp();
    v = def->getOperand(0);
  }
  auto param = opt.getArgAttrOfType<FlatSymbolRefAttr>(cast<BlockArgument>(v).getArgNumber(),
                                                       "mt.param");
  return param ? module.lookupSymbol<ParamOp>(param) : ParamOp();
}

/// Where @optimizer_step runs on a pipeline: each per-parameter op (the
/// gradient's reductions, the distributed optimizer's slice, AdamW, the
/// all-gather of updated shards) gets its parameter's mt.pipeline_stage and
/// mt.tied_stage, and runs on those stages only; the other ops (norm,
/// clipping, schedule) run on every stage. Each mt.sum_squares gets
/// `stages`, the owner of each operand's parameter, so that each stage sums
/// its own gradients once (the all-reduce over pp after it adds the
/// stages' sums).
LogicalResult assignOptimizerStages(ModuleOp module) {
  auto opt = module.lookupSymbol<func::FuncOp>("optimizer_step");
  if (!opt)
    return success();
  auto ownerOf = [](ParamOp param) {
    return param->getAttrOfType<IntegerAttr>(MtDialect::kPipelineStageAttrName).getInt();
  };
  for (Operation &op : opt.getBody().front().without_terminator()) {
    if (auto norm = dyn_cast<SumSquaresOp>(op)) {
      SmallVector<int64_t> stages;
      for (auto [i, grad] : llvm::enumerate(norm.getGrads())) {
        ParamOp param = parameterOf(module, opt, grad);
        if (!param)
          return norm.emitOpError()
                 << "operand " << i
                 << " is not a parameter's gradient (an argument of @optimizer_step with "
                    "'mt.param', or its mt.all_reduce or mt.reduce_scatter), so no pipeline "
                    "stage owns it";
        stages.push_back(ownerOf(param));
      }
      norm.setStages(stages);
      continue;
    }
    if (!isa<AllReduceOp, ReduceScatterOp, AllSliceOp, AdamWOp, AllGatherOp, ScaleOp, ScaleByOp>(
            op))
      continue;
    if (ParamOp param = parameterOf(module, opt, op.getOperand(0)))
      for (StringRef name : {MtDialect::kPipelineStageAttrName, MtDialect::kTiedStageAttrName})
        if (Attribute stage = param->getAttr(name))
          op.setAttr(name, stage);
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
      failed(assignParameterStages(module, fn, *pp)) || failed(sumTiedGradients(module)) ||
      failed(assignOptimizerStages(module)))
    return signalPassFailure();
}

} // namespace
