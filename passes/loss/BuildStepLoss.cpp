// mt-build-step-loss: @step_loss, how a step's reported loss and its
// gradient seed follow from its micro-batches' losses (the plan's StepLoss).
#include "passes/Passes.h"

#include "dialects/mt/MtMesh.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

namespace mt {
#define GEN_PASS_DEF_BUILDSTEPLOSS
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

struct BuildStepLossPass : public mt::impl::BuildStepLossBase<BuildStepLossPass> {
  using BuildStepLossBase::BuildStepLossBase;
  void runOnOperation() override;
};

void BuildStepLossPass::runOnOperation() {
  ModuleOp module = getOperation();
  if (module.lookupSymbol(MtDialect::kStepLossFunctionName)) {
    module.emitError() << "mt-build-step-loss: @" << MtDialect::kStepLossFunctionName << " exists already";
    return signalPassFailure();
  }
  if (microBatches < 1) {
    module.emitError() << "mt-build-step-loss: micro-batches must be >= 1, got " << microBatches;
    return signalPassFailure();
  }
  auto mesh = module.lookupSymbol<shard::GridOp>(kMeshName);
  auto sizeOf = [&](StringRef axis) {
    return mesh ? axisSize(mesh, axis).value_or(1) : int64_t(1);
  };
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  auto scalar = RankedTensorType::get({}, b.getF32Type());
  SmallVector<Type> args = {scalar};
  SmallVector<DictionaryAttr> argAttrs = {
      b.getDictionaryAttr(b.getNamedAttr("mt.role", b.getStringAttr("loss")))};
  if (perTokenLoss) {
    args.push_back(scalar);
    argAttrs.push_back(
        b.getDictionaryAttr(b.getNamedAttr("mt.role", b.getStringAttr("num_tokens"))));
  }
  Location loc = module.getLoc();
  auto fn = func::FuncOp::create(b, loc, MtDialect::kStepLossFunctionName, b.getFunctionType(args, {scalar}));
  fn.setAllArgAttrs(argAttrs);
  // The seed of each micro-batch's backward: the gradients of the step are
  // the mean over its micro-batches, or (per token) sums normalized later;
  // the routers' aux losses take the same seed (Megatron-Core's forward_step
  // sets MoEAuxLossAutoScaler's scale to 1 / num_microbatches, or to 1 per
  // token, where mt-per-token-loss has scaled them by their tokens).
  fn->setAttr(MtDialect::kLossScaleAttrName, b.getF64FloatAttr(perTokenLoss ? 1.0 : 1.0 / microBatches));
  Block *body = fn.addEntryBlock();
  b.setInsertionPointToEnd(body);
  Value loss = body->getArgument(0);
  if (!perTokenLoss)
    loss = ScaleOp::create(b, loc, loss, b.getF64FloatAttr(1.0 / double(microBatches)));
  // Only the last stage has the loss; each cp rank its tokens' share (per
  // token: its tokens' sum).
  auto reduce = [&](Value v) {
    for (auto [axis, op] : {std::pair<StringRef, StringRef>{"pp", "sum"},
                            {kContextParallelAxis, "sum"},
                            {"dp", perTokenLoss ? "sum" : "mean"}})
      if (sizeOf(axis) > 1)
        v = AllReduceOp::create(b, loc, v, b.getStringAttr(axis), b.getStringAttr(op));
    return v;
  };
  loss = reduce(loss);
  if (perTokenLoss)
    loss = ScaleByOp::create(b, loc, scalar, loss, reduce(body->getArgument(1)), b.getUnitAttr());
  func::ReturnOp::create(b, loc, loss);
  if (failed(mlir::verify(fn)))
    return signalPassFailure();
}

} // namespace
