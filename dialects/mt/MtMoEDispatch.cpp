// Verifiers and gradients of the expert-parallel dispatch ops
// (MtMoEOps.td: mt.moe_exchange_counts, mt.moe_sort_chunks).
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtVerify.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

using namespace mlir;
using namespace mt;
using namespace mt::verify;

LogicalResult MoEExchangeCountsOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())))
    return failure();
  auto counts = tensorOf(getTokensPerExpert()), send = tensorOf(getSendCounts());
  if (failed(expectRank(*this, "tokens_per_expert", counts, 1)) ||
      failed(expectRank(*this, "send_counts", send, 1)))
    return failure();
  int64_t experts = counts.getDimSize(0), parts = send.getDimSize(0);
  if (parts < 1 || experts % parts != 0)
    return emitOpError() << "expects the experts (" << experts << ") divisible by the ranks of '"
                         << getAxis() << "' (" << parts << ", the size of send_counts)";
  if (auto module = (*this)->getParentOfType<ModuleOp>())
    for (auto grid : module.getOps<shard::GridOp>())
      if (std::optional<int64_t> size = axisSize(grid, getAxis()); size && *size != parts)
        return emitOpError() << "expects one count per rank of axis '" << getAxis() << "' ("
                             << *size << "), got " << parts;
  int64_t local = experts / parts;
  if (failed(expectShape(*this, "recv_counts", tensorOf(getRecvCounts()), {parts})) ||
      failed(expectShape(*this, "global_counts", tensorOf(getGlobalCounts()), {parts, local})))
    return failure();
  return expectShape(*this, "tokens_per_local_expert", tensorOf(getTokensPerLocalExpert()),
                     {local});
}

LogicalResult MoESortChunksOp::verify() {
  auto in = tensorOf(getInput());
  if (failed(expectRank(*this, "input", in, 2)) ||
      failed(expectRank(*this, "counts", tensorOf(getCounts()), 2)))
    return failure();
  return expectType(*this, "result", getResult(), in);
}

LogicalResult MoESortChunksOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                              ArrayRef<bool> needed,
                                              SmallVectorImpl<Value> &grads) {
  grads.assign(getNumOperands(), Value());
  if (needed[0] && dys[0])
    grads[0] = MoESortChunksOp::create(b, getLoc(), getInput().getType(), dys[0], getCounts(),
                                       getInverse() ? UnitAttr() : b.getUnitAttr());
  return success();
}
