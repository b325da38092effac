// mt-build-optimizer: the optimizer half of a training step as IR.
#include "passes/Passes.h"

#include "dialects/mt/MtMesh.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

namespace mt {
#define GEN_PASS_DEF_BUILDOPTIMIZER
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

struct BuildOptimizerPass
    : public mt::impl::BuildOptimizerBase<BuildOptimizerPass> {
  using BuildOptimizerBase::BuildOptimizerBase;
  void runOnOperation() override;
};

void BuildOptimizerPass::runOnOperation() {
  ModuleOp module = getOperation();
  if (module.lookupSymbol("optimizer_step")) {
    module.emitError() << "mt-build-optimizer: @optimizer_step exists already";
    return signalPassFailure();
  }
  // The data-parallel size is the dp axis of the module's mesh; a module
  // without a mesh runs on one rank.
  int64_t dp = 1;
  if (auto mesh = module.lookupSymbol<shard::GridOp>(kMeshName)) {
    std::optional<int64_t> size = axisSize(mesh, "dp");
    if (!size) {
      mesh.emitError() << "mt-build-optimizer: @" << kMeshName << " has no axis 'dp' (its axes: "
                       << axisList(mesh) << ")";
      return signalPassFailure();
    }
    dp = *size;
  }
  SmallVector<ParamOp> params;
  for (auto param : module.getOps<ParamOp>())
    if (!param.getFrozen())
      params.push_back(param);

  MLIRContext *ctx = module.getContext();
  OpBuilder b(ctx);
  b.setInsertionPointToEnd(module.getBody());
  Location loc = module.getLoc();
  auto stepType = RankedTensorType::get({}, b.getI64Type());
  auto scalar = RankedTensorType::get({}, b.getF32Type());

  // Arguments: step, then (param, grad, exp_avg, exp_avg_sq) per parameter.
  static constexpr StringLiteral kRoles[] = {"param", "grad", "exp_avg", "exp_avg_sq"};
  SmallVector<Type> argTypes = {stepType};
  SmallVector<DictionaryAttr> argAttrs = {
      b.getDictionaryAttr(b.getNamedAttr("mt.role", b.getStringAttr("step")))};
  SmallVector<Type> resultTypes;
  SmallVector<DictionaryAttr> resultAttrs;
  auto roleAttrs = [&](ParamOp p, StringRef role) {
    return b.getDictionaryAttr(
        {b.getNamedAttr("mt.role", b.getStringAttr(role)),
         b.getNamedAttr("mt.param", FlatSymbolRefAttr::get(p.getSymNameAttr()))});
  };
  for (ParamOp p : params)
    for (StringRef role : kRoles) {
      argTypes.push_back(p.getLocalType());
      argAttrs.push_back(roleAttrs(p, role));
      if (role != "grad") {
        resultTypes.push_back(p.getLocalType());
        resultAttrs.push_back(roleAttrs(p, role));
      }
    }
  auto fn = func::FuncOp::create(b, loc, "optimizer_step",
                                 b.getFunctionType(argTypes, resultTypes));
  fn.setAllArgAttrs(argAttrs);
  fn.setAllResultAttrs(resultAttrs);
  Block *body = fn.addEntryBlock();
  b.setInsertionPointToEnd(body);

  Value step = body->getArgument(0);
  auto argOf = [&](size_t param, size_t role) {
    return body->getArgument(1 + 4 * param + role);
  };
  // Data parallelism: every rank's gradients are averaged over dp first.
  SmallVector<Value> grads;
  SmallVector<bool> replicated;
  StringAttr normAxis; // the mesh axis sharded parameters are split over
  for (auto [i, p] : llvm::enumerate(params)) {
    Value g = argOf(i, 1);
    if (dp > 1)
      g = AllReduceOp::create(b, p.getLoc(), g, b.getStringAttr("dp"), b.getStringAttr("mean"));
    grads.push_back(g);
    ShardingAttr sharding = p.getShardingAttr();
    replicated.push_back(!sharding || !sharding.isSplit());
    for (unsigned d = 0; sharding && d < sharding.getSplitAxes().size(); ++d)
      for (StringRef axis : sharding.getAxes(d)) {
        if (normAxis && normAxis.getValue() != axis) {
          p.emitOpError() << "is split over mesh axis '" << axis
                          << "' and another parameter over '" << normAxis.getValue()
                          << "': a global norm over several mesh axes is not supported yet";
          return signalPassFailure();
        }
        normAxis = b.getStringAttr(axis);
      }
  }
  // Shards of one parameter sum over the axis they are split on; replicated
  // parameters count once.
  Value norm = GlobalNormOp::create(
      b, loc, scalar, grads, normAxis,
      normAxis ? b.getDenseBoolArrayAttr(replicated) : DenseBoolArrayAttr());
  CheckFiniteOp::create(b, loc, norm);
  Value scale = ClipCoefficientOp::create(b, loc, scalar, norm,
                                          b.getF64FloatAttr(clipGrad));
  Value lrValue = LRScheduleOp::create(
      b, loc, scalar, step, b.getF64FloatAttr(lr), b.getF64FloatAttr(minLr),
      b.getI64IntegerAttr(warmupSteps), b.getI64IntegerAttr(decaySteps),
      b.getStringAttr(decayStyle));
  SmallVector<Value> results;
  for (auto [i, p] : llvm::enumerate(params)) {
    // Megatron: no weight decay on norms and biases (rank-1 parameters).
    double decay = p.getTensorType().getRank() == 1 ? 0.0 : weightDecay.getValue();
    auto update = AdamWOp::create(
        b, p.getLoc(), p.getLocalType(), p.getLocalType(), p.getLocalType(), argOf(i, 0),
        grads[i], argOf(i, 2), argOf(i, 3), lrValue, step, scale,
        b.getF64FloatAttr(beta1), b.getF64FloatAttr(beta2),
        b.getF64FloatAttr(eps), b.getF64FloatAttr(decay));
    results.append({update.getNewParam(), update.getNewExpAvg(),
                    update.getNewExpAvgSq()});
  }
  func::ReturnOp::create(b, loc, results);
  if (failed(mlir::verify(fn)))
    return signalPassFailure();
}

} // namespace
