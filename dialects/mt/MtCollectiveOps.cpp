// Verifiers and gradients of the collective ops.
#include "dialects/mt/MtDialect.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mt;

namespace {

LogicalResult verifyAxis(Operation *op, StringRef axis) {
  if (axis == "pp" || axis == "dp" || axis == "cp" || axis == "ep" || axis == "tp")
    return success();
  return op->emitOpError() << "expects a mesh axis (pp, dp, cp, ep, tp), got '"
                           << axis << "'";
}

} // namespace

LogicalResult AllReduceOp::verify() { return verifyAxis(*this, getAxis()); }
LogicalResult TPCopyOp::verify() { return verifyAxis(*this, getAxis()); }

LogicalResult AllReduceOp::buildGradients(OpBuilder &, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  // The result is replicated over the axis, and so is its gradient: each
  // rank's partial input receives it unchanged.
  grads.assign(1, needed[0] ? dys[0] : Value());
  return success();
}

LogicalResult TPCopyOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                       ArrayRef<bool> needed,
                                       SmallVectorImpl<Value> &grads) {
  grads.assign(1, Value());
  if (needed[0])
    grads[0] = AllReduceOp::create(b, getLoc(), dys[0], getAxisAttr(), UnitAttr());
  return success();
}
