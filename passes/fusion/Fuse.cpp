// mt-fuse: rewrites op patterns of the training step into fused ops that
// compute the same values in fewer passes over memory (passes/Passes.td).
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace mt {
#define GEN_PASS_DEF_FUSE
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

/// Whether `a` and `b` run in the same place of the step: the same virtual
/// pipeline stage, both forward or both backward, both recomputed or not.
/// A fusion across these lines would move work between programs or undo a
/// recompute decision.
bool samePlace(Operation *a, Operation *b) {
  for (StringRef name : {MtDialect::kVirtualStageAttrName, MtDialect::kBackwardAttrName,
                         MtDialect::kRecomputeAttrName})
    if (a->getAttr(name) != b->getAttr(name))
      return false;
  return a->getBlock() == b->getBlock();
}

/// Whether a user of `v` other than `except` lies strictly between `from`
/// and `to` in their block (a fused op at `to` would then be read before it
/// is made).
bool usedBetween(Value v, Operation *from, Operation *to, Operation *except) {
  return llvm::any_of(v.getUsers(), [&](Operation *user) {
    return user != except && user->getBlock() == to->getBlock() &&
           from->isBeforeInBlock(user) && user->isBeforeInBlock(to);
  });
}

/// `%h = mt.add %x, %r; %y = mt.rmsnorm %h, %w` -> `%h, %y = mt.add_rmsnorm
/// %x, %r, %w`, at the norm.
bool fuseAddRMSNorm(RMSNormOp norm) {
  auto add = norm.getInput().getDefiningOp<AddOp>();
  if (!add || !samePlace(add, norm) || usedBetween(add.getResult(), add, norm, norm))
    return false;
  OpBuilder b(norm);
  auto fused = AddRMSNormOp::create(b, norm.getLoc(),
                                    TypeRange{add.getType(), norm.getType()}, add.getLhs(),
                                    add.getRhs(), norm.getWeight(), norm.getEpsAttr());
  fused->setDiscardableAttrs(norm->getDiscardableAttrDictionary());
  norm.getResult().replaceAllUsesWith(fused.getResult());
  norm.erase();
  add.getResult().replaceAllUsesWith(fused.getSum());
  add.erase();
  return true;
}

/// `%dx, %dw = mt.rmsnorm_grad %h, %w, %dy; %s = mt.add %g, %dx` (either
/// order) -> `%s, %dw = mt.add_rmsnorm_grad %h, %w, %dy, %g`, at the add.
bool fuseAddRMSNormGrad(AddOp add) {
  for (int k = 0; k < 2; ++k) {
    Value dx = add->getOperand(k), other = add->getOperand(1 - k);
    auto grad = dx.getDefiningOp<RMSNormGradOp>();
    // A one-use `other` is accumulated into in place by the plan already.
    if (!grad || grad.getDx() != dx || dx == other || !dx.hasOneUse() || other.hasOneUse() ||
        !samePlace(grad, add))
      continue;
    // %dw moves down to the add: none of its readers may come before it.
    if (llvm::any_of(grad.getDweight().getUsers(),
                     [&](Operation *u) { return u->getBlock() == add->getBlock() &&
                                                u->isBeforeInBlock(add); }))
      continue;
    OpBuilder b(add);
    auto fused = AddRMSNormGradOp::create(
        b, grad.getLoc(), TypeRange{add.getType(), grad.getDweight().getType()},
        grad.getInput(), grad.getWeight(), grad.getDy(), other, grad.getEpsAttr());
    fused->setDiscardableAttrs(grad->getDiscardableAttrDictionary());
    add.getResult().replaceAllUsesWith(fused.getDx());
    add.erase();
    grad.getDweight().replaceAllUsesWith(fused.getDweight());
    grad.erase();
    return true;
  }
  return false;
}

struct FusePass : public mt::impl::FuseBase<FusePass> {
  using FuseBase::FuseBase;

  void runOnOperation() override {
    // The backward pattern first: the forward one erases adds.
    if (addRMSNormGrad) {
      SmallVector<AddOp> adds;
      getOperation().walk([&](AddOp add) { adds.push_back(add); });
      for (AddOp add : adds)
        fuseAddRMSNormGrad(add);
    }
    if (addRMSNorm) {
      SmallVector<RMSNormOp> norms;
      getOperation().walk([&](RMSNormOp norm) { norms.push_back(norm); });
      for (RMSNormOp norm : norms)
        fuseAddRMSNorm(norm);
    }
  }
};

} // namespace
