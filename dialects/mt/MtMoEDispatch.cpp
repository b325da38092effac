// Verifiers and gradients of the expert-parallel dispatch ops
// (MtMoEOps.td: mt.moe_exchange_counts, mt.moe_gather_counts,
// mt.moe_sort_chunks).
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtVerify.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

using namespace mlir;
using namespace mt;
using namespace mt::verify;

namespace {

/// The ranks of `axis` that `parts` counts are for: the experts divide over
/// them, and a mesh of the module with that axis has that many.
LogicalResult expectExpertParts(Operation *op, StringRef axis, int64_t experts, int64_t parts,
                                StringRef partsOperand) {
  if (parts < 1 || experts % parts != 0)
    return op->emitOpError() << "expects the experts (" << experts
                             << ") divisible by the ranks of '" << axis << "' (" << parts
                             << ", the size of " << partsOperand << ")";
  if (auto module = op->getParentOfType<ModuleOp>())
    for (auto grid : module.getOps<shard::GridOp>())
      if (std::optional<int64_t> size = axisSize(grid, axis); size && *size != parts)
        return op->emitOpError() << "expects one count per rank of axis '" << axis << "' ("
                                 << *size << "), got " << parts;
  return success();
}

} // namespace

LogicalResult MoEExchangeCountsOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())))
    return failure();
  auto counts = tensorOf(getTokensPerExpert()), send = tensorOf(getSendCounts());
  if (failed(expectRank(*this, "tokens_per_expert", counts, 1)) ||
      failed(expectRank(*this, "send_counts", send, 1)))
    return failure();
  int64_t experts = counts.getDimSize(0), parts = send.getDimSize(0);
  if (failed(expectExpertParts(*this, getAxis(), experts, parts, "send_counts")))
    return failure();
  int64_t local = experts / parts;
  if (failed(expectShape(*this, "recv_counts", tensorOf(getRecvCounts()), {parts})) ||
      failed(expectShape(*this, "global_counts", tensorOf(getGlobalCounts()), {parts, local})))
    return failure();
  return expectShape(*this, "tokens_per_local_expert", tensorOf(getTokensPerLocalExpert()),
                     {local});
}

LogicalResult MoEGatherCountsOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())))
    return failure();
  auto counts = tensorOf(getTokensPerExpert()), offsets = tensorOf(getOffsets());
  if (failed(expectRank(*this, "tokens_per_expert", counts, 1)) ||
      failed(expectRank(*this, "offsets", offsets, 1)))
    return failure();
  int64_t experts = counts.getDimSize(0), parts = offsets.getDimSize(0);
  if (failed(expectExpertParts(*this, getAxis(), getSameExperts() ? parts * experts : experts,
                               parts, "offsets")))
    return failure();
  int64_t local = getSameExperts() ? experts : experts / parts;
  if (failed(expectShape(*this, "global_counts", tensorOf(getGlobalCounts()), {parts, local})))
    return failure();
  return expectShape(*this, "tokens_per_local_expert", tensorOf(getTokensPerLocalExpert()),
                     {local});
}

LogicalResult MoESortChunksOp::verify() {
  auto in = tensorOf(getInput());
  if (failed(expectRank(*this, "input", in, 2)) ||
      failed(expectRank(*this, "counts", tensorOf(getCounts()), 2)))
    return failure();
  if (Value offsets = getOffsets()) {
    int64_t parts = tensorOf(getCounts()).getDimSize(0);
    if (failed(expectShape(*this, "offsets", tensorOf(offsets), {parts})))
      return failure();
    if (in.getDimSize(0) % parts != 0)
      return emitOpError() << "expects the rows (" << in.getDimSize(0)
                           << ") to be " << parts << " equal blocks, one per offset";
  }
  return expectType(*this, "result", getResult(), in);
}

LogicalResult MoESortChunksOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                              ArrayRef<bool> needed,
                                              SmallVectorImpl<Value> &grads) {
  grads.assign(getNumOperands(), Value());
  if (needed[0] && dys[0])
    grads[0] = MoESortChunksOp::create(b, getLoc(), getInput().getType(), dys[0], getCounts(),
                                       getOffsets(), getInverse() ? UnitAttr() : b.getUnitAttr());
  return success();
}
