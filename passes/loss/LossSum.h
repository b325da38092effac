// The loss the importer builds (compiler/hf/ModelBuilder.cpp): one
// cross-entropy plus, in a mixture-of-experts model, its routers'
// load-balancing and z-losses.
#pragma once

#include "dialects/mt/MtDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mt {

/// Whether `v` is `ce`, a router's load-balancing or z-loss, or an mt.add of
/// such terms.
inline bool isLossSum(mlir::Value v, CrossEntropyOp ce) {
  if (v == ce.getResult())
    return true;
  if (auto router = v.getDefiningOp<MoERouterOp>())
    return v == router.getAuxLoss() || v == router.getZLoss();
  auto add = v.getDefiningOp<AddOp>();
  return add && isLossSum(add.getLhs(), ce) && isLossSum(add.getRhs(), ce);
}

/// @forward's one mt.cross_entropy when it returns a loss sum of it
/// (isLossSum); null otherwise.
inline CrossEntropyOp lossCrossEntropy(mlir::func::FuncOp forward) {
  CrossEntropyOp found;
  int count = 0;
  forward.walk([&](CrossEntropyOp ce) { found = ce, ++count; });
  auto ret = llvm::cast<mlir::func::ReturnOp>(forward.getBody().front().getTerminator());
  if (count != 1 || ret.getNumOperands() != 1 || !isLossSum(ret.getOperand(0), found))
    return CrossEntropyOp();
  return found;
}

} // namespace mt
