// mt-per-token-loss: @forward returns the sum of its token losses (the
// cross-entropy's mean times mt.num_tokens), Megatron-Core's loss under
// calculate_per_token_loss.
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace mt {
#define GEN_PASS_DEF_PERTOKENLOSS
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

struct PerTokenLossPass : public mt::impl::PerTokenLossBase<PerTokenLossPass> {
  void runOnOperation() override;
};

void PerTokenLossPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward || forward.isExternal() || forward.getNumResults() != 1) {
    module.emitError() << "mt-per-token-loss expects 'func.func @forward(...) -> loss' (run it "
                          "before mt-autodiff)";
    return signalPassFailure();
  }
  // Megatron-Core scales the routers' auxiliary losses separately under
  // calculate_per_token_loss; mtc does not yet.
  WalkResult routers = forward.walk([](MoERouterOp router) {
    router.emitOpError() << "adds an auxiliary loss, which calculate_per_token_loss does not "
                            "normalize yet: train mixture-of-experts models without it";
    return WalkResult::interrupt();
  });
  if (routers.wasInterrupted())
    return signalPassFailure();
  auto ret = cast<func::ReturnOp>(forward.getBody().front().getTerminator());
  auto loss = dyn_cast_or_null<CrossEntropyOp>(ret.getOperand(0).getDefiningOp());
  if (!loss) {
    ret.emitOpError() << "returns a loss that is not an mt.cross_entropy: "
                         "mt-per-token-loss sums the token losses of the cross-entropy alone";
    return signalPassFailure();
  }
  // Right after the cross-entropy: with it on the last pipeline stage.
  OpBuilder b(ret);
  auto scalar = RankedTensorType::get({}, b.getF32Type());
  Value tokens = NumTokensOp::create(b, loss.getLoc(), scalar, loss.getMask());
  Value sum = ScaleByOp::create(b, loss.getLoc(), scalar, loss.getResult(), tokens, UnitAttr());
  ret.setOperand(0, sum);
}

} // namespace
