// mt-per-token-loss: @forward returns the sum of its token losses (the
// cross-entropy's mean times mt.num_tokens) plus its routers' auxiliary
// losses times their tokens, Megatron-Core's loss under
// calculate_per_token_loss.
#include "passes/Passes.h"
#include "passes/loss/LossSum.h"

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

/// Multiplies `router`'s load-balancing and z-loss coefficients by its
/// tokens (the rows of its input, B·S, times its token_shards: under
/// context parallelism the whole micro-batch's): both terms are linear
/// in their coefficients, so its aux_loss and that loss's gradient are
/// scaled by the token count. Megatron-Core's router (router.py,
/// attach_and_log_load_balancing_loss and apply_z_loss) does the same
/// under calculate_per_token_loss: it hands MoEAuxLossAutoScaler
/// `aux_loss * activation.shape[0]` (`z_loss * logits.shape[0]`), so that
/// finalize_model_grads' division by the step's loss tokens leaves the aux
/// gradients scaled by about 1 / (micro-batches · dp), as without it.
void scaleByTokens(MoERouterOp router) {
  auto x = cast<RankedTensorType>(router.getInput().getType());
  double tokens = double(x.getNumElements() / x.getShape().back()) *
                  double(router.getTokenShards().value_or(1));
  Builder b(router.getContext());
  router.setAuxLossCoeffAttr(
      b.getF64FloatAttr(router.getAuxLossCoeff().convertToDouble() * tokens));
  if (auto z = router.getZLossCoeffAttr())
    router.setZLossCoeffAttr(b.getF64FloatAttr(z.getValueAsDouble() * tokens));
}

void PerTokenLossPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward || forward.isExternal() || forward.getNumResults() != 1) {
    module.emitError() << "mt-per-token-loss expects 'func.func @forward(...) -> loss' (run it "
                          "before mt-autodiff)";
    return signalPassFailure();
  }
  CrossEntropyOp loss = lossCrossEntropy(forward);
  if (!loss) {
    forward.getBody().front().getTerminator()->emitOpError()
        << "returns a loss that is not an mt.cross_entropy (plus routers' auxiliary losses): "
           "mt-per-token-loss sums the token losses of one cross-entropy";
    return signalPassFailure();
  }
  forward.walk([](MoERouterOp router) { scaleByTokens(router); });
  // Right after the cross-entropy: with it on the last pipeline stage.
  OpBuilder b(loss->getContext());
  b.setInsertionPointAfter(loss);
  auto scalar = RankedTensorType::get({}, b.getF32Type());
  Value tokens = NumTokensOp::create(b, loss.getLoc(), scalar, loss.getMask());
  auto sum = ScaleByOp::create(b, loss.getLoc(), scalar, loss.getResult(), tokens, UnitAttr());
  loss.getResult().replaceAllUsesExcept(sum, sum);
}

} // namespace
