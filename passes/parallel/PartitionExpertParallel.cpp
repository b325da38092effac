// mt-partition-ep: mixture-of-experts layers over the ep axis of
// @expert_mesh with Megatron-Core's alltoall token dispatcher.
#include "passes/Passes.h"
#include "dialects/mt/MtMesh.h"

#include "mlir/IR/Builders.h"

namespace mt {
#define GEN_PASS_DEF_PARTITIONEXPERTPARALLEL
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

constexpr StringLiteral kExpertAxis = "ep";

template <typename Op> Op inLayer(Op op, Operation *original) {
  op->setDiscardableAttrs(original->getDiscardableAttrDictionary());
  return op;
}

/// Gives the grouped parameter that `value` (an mt.weight) reads the split
/// of its experts (dimension 0) over ep, and every read of it the local type.
LogicalResult shardExperts(ModuleOp module, Operation *user, Value value, int64_t ep) {
  auto weight = value.getDefiningOp<WeightOp>();
  if (!weight)
    return user->emitOpError() << "expects expert weights read by mt.weight";
  auto param = module.lookupSymbol<ParamOp>(weight.getParamAttr());
  if (!param.getGroupedExperts())
    return user->emitOpError() << "expects grouped expert parameters, got "
                               << weight.getParamAttr();
  if (param.getShardingAttr() && param.getShardingAttr().isSplit())
    return success(); // shared by several layers' reads: done once
  if (param.getTensorType().getDimSize(0) % ep != 0)
    return user->emitOpError() << "cannot split the " << param.getTensorType().getDimSize(0)
                               << " experts of " << weight.getParamAttr() << " over ep = " << ep;
  param.setShardingAttr(ShardingAttr::split(module.getContext(), kExpertMeshName,
                                            param.getTensorType().getRank(), 0, kExpertAxis));
  for (auto fn : module.getOps<func::FuncOp>())
    fn.walk([&](WeightOp read) {
      if (read.getParamAttr() == weight.getParamAttr())
        read.getResult().setType(param.getLocalType());
    });
  return success();
}

/// The alltoall dispatcher around one layer's experts (Megatron-Core's
/// MoEAlltoAllTokenDispatcher, dropless or with capacity): the permuted rows
/// [N, H] go to the ranks that hold their experts, are sorted by local
/// expert, run through the local experts, and come back in the order they
/// left. A rank may receive every peer's rows: the buffers hold ep x N.
LogicalResult dispatch(ModuleOp module, MoEGroupedMLPOp experts, int64_t ep) {
  for (Value w : {experts.getGate(), experts.getUp(), experts.getDown()})
    if (failed(shardExperts(module, experts, w, ep)))
      return failure();
  OpBuilder b(experts);
  Location loc = experts.getLoc();
  auto rows = cast<RankedTensorType>(experts.getInput().getType());
  int64_t numExperts = cast<RankedTensorType>(experts.getTokensPerExpert().getType()).getDimSize(0);
  int64_t local = numExperts / ep;
  auto i32 = b.getI32Type();
  auto splits = RankedTensorType::get({ep}, i32);
  StringAttr axis = b.getStringAttr(kExpertAxis);
  auto counts = inLayer(MoEExchangeCountsOp::create(b, loc, splits, splits,
                                                    RankedTensorType::get({ep, local}, i32),
                                                    RankedTensorType::get({local}, i32),
                                                    experts.getTokensPerExpert(), axis),
                        experts);
  auto received = RankedTensorType::get({ep * rows.getDimSize(0), rows.getDimSize(1)},
                                        rows.getElementType());
  Value in = inLayer(AllToAllVOp::create(b, loc, received, experts.getInput(),
                                         counts.getSendCounts(), counts.getRecvCounts(), axis),
                     experts);
  Value sorted = inLayer(MoESortChunksOp::create(b, loc, received, in, counts.getGlobalCounts(),
                                                 UnitAttr()),
                         experts);
  Value out = inLayer(MoEGroupedMLPOp::create(b, loc, received, sorted,
                                              counts.getTokensPerLocalExpert(),
                                              experts.getGate(), experts.getUp(),
                                              experts.getDown()),
                      experts);
  Value unsorted = inLayer(MoESortChunksOp::create(b, loc, received, out,
                                                   counts.getGlobalCounts(), b.getUnitAttr()),
                           experts);
  Value back = inLayer(AllToAllVOp::create(b, loc, rows, unsorted, counts.getRecvCounts(),
                                           counts.getSendCounts(), axis),
                       experts);
  experts.getResult().replaceAllUsesWith(back);
  experts.erase();
  return success();
}

struct PartitionExpertParallel
    : public mt::impl::PartitionExpertParallelBase<PartitionExpertParallel> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto grid = module.lookupSymbol<shard::GridOp>(kExpertMeshName);
    std::optional<int64_t> ep = grid ? axisSize(grid, kExpertAxis) : std::nullopt;
    if (!ep) {
      module.emitError() << "mt-partition-ep expects a mesh 'shard.grid @" << kExpertMeshName
                         << "' with axis '" << kExpertAxis << "' in 'mt.axes'";
      return signalPassFailure();
    }
    if (*ep == 1)
      return;
    auto fn = module.lookupSymbol<func::FuncOp>("forward");
    if (!fn) {
      module.emitError() << "mt-partition-ep expects a function @forward";
      return signalPassFailure();
    }
    SmallVector<MoEGroupedMLPOp> layers;
    fn.walk([&](MoEGroupedMLPOp op) { layers.push_back(op); });
    for (MoEGroupedMLPOp op : layers)
      if (failed(dispatch(module, op, *ep)))
        return signalPassFailure();
  }
};

} // namespace
