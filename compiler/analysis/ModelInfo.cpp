// Reading model dimensions and counting parameters and FLOPs from `mt` ops.
#include "compiler/analysis/ModelInfo.h"

#include "dialects/mt/MtDialect.h"
#include "runtime/support/CheckedMath.h"

#include <set>

using namespace mlir;

namespace mt {
namespace {

RankedTensorType tensorOf(Value v) { return cast<RankedTensorType>(v.getType()); }

/// Records a dimension the first time it is seen; later ops must agree.
LogicalResult agree(Operation *op, StringRef name, int64_t &slot, int64_t value) {
  if (slot == 0 || slot == value) {
    slot = value;
    return success();
  }
  return op->emitOpError() << "has " << name << " = " << value
                           << ", but an earlier op of the model has " << slot
                           << " (one model has one " << name << ")";
}

} // namespace

LogicalResult checkTensorSizes(ModuleOp module) {
  auto check = [](Operation *op, Type type) -> LogicalResult {
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || !tensor.hasStaticShape())
      return success();
    auto elements = checkedProduct(tensor.getShape());
    if (elements && *elements <= kMaxTensorElements)
      return success();
    return op->emitOpError() << "has a " << type << " of more than " << kMaxTensorElements
                             << " (2^60) elements, the most one tensor may have (its "
                                "bytes and offsets must fit in int64)";
  };
  WalkResult walk = module.walk([&](Operation *op) -> WalkResult {
    if (auto param = dyn_cast<ParamOp>(op))
      if (failed(check(op, param.getTensorType())))
        return WalkResult::interrupt();
    for (Type t : op->getResultTypes())
      if (failed(check(op, t)))
        return WalkResult::interrupt();
    for (Region &region : op->getRegions())
      for (BlockArgument arg : region.getArguments())
        if (failed(check(op, arg.getType())))
          return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

FailureOr<func::FuncOp> forwardFunction(ModuleOp module) {
  auto fn = module.lookupSymbol<func::FuncOp>("forward");
  if (!fn || fn.isExternal())
    return module.emitError()
           << "expects a model function 'func.func @forward(input_ids, labels, "
              "loss_mask[, position_ids]) -> loss'";
  auto type = fn.getFunctionType();
  if ((type.getNumInputs() != 3 && type.getNumInputs() != 4) || type.getNumResults() != 1)
    return fn.emitOpError() << "expects 3 or 4 arguments (input_ids, labels, "
                               "loss_mask[, position_ids]) and 1 result (loss), got "
                            << type.getNumInputs() << " and "
                            << type.getNumResults();
  auto ids = dyn_cast<RankedTensorType>(type.getInput(0));
  if (!ids || ids.getRank() != 2 || !ids.hasStaticShape())
    return fn.emitOpError() << "expects input_ids of static shape [batch, seq], got "
                            << type.getInput(0);
  if (type.getNumInputs() == 4) {
    auto role = fn.getArgAttrOfType<StringAttr>(3, "mt.input");
    auto pos = dyn_cast<RankedTensorType>(type.getInput(3));
    if (!role || role.getValue() != "position_ids" || !pos ||
        pos.getShape() != ids.getShape() || !pos.getElementType().isInteger(32))
      return fn.emitOpError() << "expects a fourth argument {mt.input = \"position_ids\"} "
                                 "of type i32 and the shape of input_ids, got "
                              << type.getInput(3);
  }
  return fn;
}

FailureOr<ModelDims> readModelDims(ModuleOp module) {
  auto fn = forwardFunction(module);
  if (failed(fn) || failed(checkTensorSizes(module)))
    return failure();
  ModelDims dims;
  auto ids = cast<RankedTensorType>(fn->getFunctionType().getInput(0));
  dims.microBatch = ids.getDimSize(0);
  dims.seq = ids.getDimSize(1);
  std::set<int64_t> layers;
  WalkResult walk = fn->walk([&](Operation *op) -> WalkResult {
    if (auto layer = op->getAttrOfType<IntegerAttr>(MtDialect::kLayerAttrName))
      layers.insert(layer.getInt());
    if (auto attn = dyn_cast<AttentionOp>(op)) {
      if (failed(agree(op, "num_heads", dims.numHeads, attn.getNumHeads())) ||
          failed(agree(op, "num_kv_heads", dims.numKvHeads, attn.getNumKvHeads())))
        return WalkResult::interrupt();
    } else if (auto router = dyn_cast<MoERouterOp>(op)) {
      if (failed(agree(op, "experts", dims.numExperts,
                       tensorOf(router.getWeight()).getDimSize(0))))
        return WalkResult::interrupt();
      ++dims.moeLayers;
      dims.topK = router.getTopK();
      dims.hidden = tensorOf(router.getInput()).getDimSize(2);
    } else if (auto grouped = dyn_cast<MoEGroupedMLPOp>(op)) {
      dims.expertFfn = tensorOf(grouped.getGate()).getDimSize(1); // [E, F, H]
    } else if (isa<SigmoidGateOp>(op)) {
      dims.sharedExpert = true;
    } else if (auto permute = dyn_cast<MoEPermuteOp>(op)) {
      dims.expertCapacity |= permute.getCapacity().has_value();
    } else if (auto ce = dyn_cast<CrossEntropyOp>(op)) {
      dims.vocabSize = tensorOf(ce.getLogits()).getDimSize(2);
    }
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  if (dims.numHeads == 0)
    return fn->emitOpError() << "has no 'mt.attention' op: not a transformer";
  dims.numLayers = layers.empty() ? 0 : *layers.rbegin() + 1;
  if (int64_t(layers.size()) != dims.numLayers || dims.numLayers == 0)
    return fn->emitOpError()
           << "expects ops tagged 'mt.layer' 0.." << dims.numLayers - 1
           << " without gaps, got " << layers.size() << " distinct layers";
  return dims;
}

double forwardFlops(Operation *op) {
  if (auto linear = dyn_cast<LinearOp>(op))
    return 2.0 * tensorOf(linear.getResult()).getNumElements() *
           tensorOf(linear.getWeight()).getDimSize(1);
  if (auto router = dyn_cast<MoERouterOp>(op)) {
    auto w = tensorOf(router.getWeight());
    return 2.0 * w.getNumElements() *
           (tensorOf(router.getInput()).getNumElements() / w.getDimSize(1));
  }
  if (auto grouped = dyn_cast<MoEGroupedMLPOp>(op)) {
    // Three GEMMs per row the experts compute (B·S·top_k when dropless).
    auto gate = tensorOf(grouped.getGate());
    int64_t perExpert = gate.getDimSize(1) * gate.getDimSize(2);
    return 2.0 * 3 * perExpert * tensorOf(grouped.getInput()).getDimSize(0);
  }
  if (auto attn = dyn_cast<AttentionOp>(op)) {
    // QK^T and PV over the causal half of the S x S scores.
    auto q = tensorOf(attn.getQuery());
    return 2.0 * 2 * q.getNumElements() * q.getDimSize(1) / 2;
  }
  return 0;
}

FailureOr<ModelStats> computeModelStats(ModuleOp module) {
  auto fn = forwardFunction(module);
  if (failed(fn) || failed(checkTensorSizes(module)))
    return failure();
  ModelStats stats;
  for (auto param : module.getOps<ParamOp>()) {
    auto sum = checkedAdd<int64_t>(stats.parameters, param.getTensorType().getNumElements());
    if (!sum)
      return param.emitOpError() << "brings the model's parameters past " << INT64_MAX
                                 << ", more than 64-bit sizes can count";
    stats.parameters = *sum;
  }
  auto ids = cast<RankedTensorType>(fn->getFunctionType().getInput(0));
  stats.tokensPerMicroBatch = ids.getNumElements();
  double flops = 0; // for the whole micro-batch
  fn->walk([&](Operation *op) { flops += forwardFlops(op); });
  stats.forwardFlopsPerToken = flops / double(stats.tokensPerMicroBatch);
  return stats;
}

} // namespace mt
