// mt-partition-ep: mixture-of-experts layers over the ep and etp axes of
// @expert_mesh with Megatron-Core's alltoall or allgather token dispatcher
// and expert tensor parallelism.
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

constexpr StringLiteral kExpertAxis = "ep", kExpertTensorAxis = "etp";

template <typename Op> Op inLayer(Op op, Operation *original) {
  op->setDiscardableAttrs(original->getDiscardableAttrDictionary());
  return op;
}

/// Gives the grouped parameter that `value` (an mt.weight) reads its split
/// over @expert_mesh, and every read of it the local type: the experts
/// (dimension 0) over ep, and with etp > 1 the ffn columns (dimension
/// `ffnDim`: 1 of gate and up [E, F, H], column-parallel; 2 of down
/// [E, H, F], row-parallel) over etp.
LogicalResult shardExperts(ModuleOp module, Operation *user, Value value, int64_t ep,
                           int64_t etp, unsigned ffnDim) {
  auto weight = value.getDefiningOp<WeightOp>();
  if (!weight)
    return user->emitOpError() << "expects expert weights read by mt.weight";
  auto param = module.lookupSymbol<ParamOp>(weight.getParamAttr());
  if (!param.getGroupedExperts())
    return user->emitOpError() << "expects grouped expert parameters, got "
                               << weight.getParamAttr();
  if (param.getShardingAttr() && param.getShardingAttr().isSplit())
    return success(); // shared by several layers' reads: done once
  RankedTensorType full = param.getTensorType();
  if (full.getDimSize(0) % ep != 0)
    return user->emitOpError() << "cannot split the " << full.getDimSize(0) << " experts of "
                               << weight.getParamAttr() << " over ep = " << ep;
  if (full.getDimSize(ffnDim) % etp != 0)
    return user->emitOpError() << "cannot split the " << full.getDimSize(ffnDim)
                               << " ffn columns (moe_intermediate_size) of "
                               << weight.getParamAttr() << " over etp = " << etp;
  MLIRContext *ctx = module.getContext();
  SmallVector<Attribute> dims(full.getRank(), ArrayAttr::get(ctx, {}));
  if (ep > 1)
    dims[0] = ArrayAttr::get(ctx, {StringAttr::get(ctx, kExpertAxis)});
  if (etp > 1)
    dims[ffnDim] = ArrayAttr::get(ctx, {StringAttr::get(ctx, kExpertTensorAxis)});
  param.setShardingAttr(ShardingAttr::get(ctx, FlatSymbolRefAttr::get(ctx, kExpertMeshName),
                                          ArrayAttr::get(ctx, dims)));
  for (auto fn : module.getOps<func::FuncOp>())
    fn.walk([&](WeightOp read) {
      if (read.getParamAttr() == weight.getParamAttr())
        read.getResult().setType(param.getLocalType());
    });
  return success();
}

/// `run` on the rows of `in` sorted by local expert: `in` holds chunks
/// (p, g) of `global` [P, G] rows (packed, or blocked by `offsets` when
/// set: mt.moe_sort_chunks), and `run`'s rows go back to that layout.
Value byLocalExpert(OpBuilder &b, MoEGroupedMLPOp experts, Value in, Value global, Value offsets,
                    function_ref<Value(Value)> run) {
  Location loc = experts.getLoc();
  Value sorted = inLayer(
      MoESortChunksOp::create(b, loc, in.getType(), in, global, offsets, UnitAttr()), experts);
  return inLayer(MoESortChunksOp::create(b, loc, in.getType(), run(sorted), global, offsets,
                                         b.getUnitAttr()),
                 experts);
}

/// The local experts on expert-sorted rows [M, H] (`counts` [G] per local
/// expert). With etp > 1 (Megatron-Core's expert tensor parallelism, as its
/// dispatchers do it): the rows of the etp ranks are gathered, each rank
/// computes its slice of every expert's ffn columns (fc1 column-parallel,
/// fc2 row-parallel) on all of them, and the reduce-scatter over etp sums
/// the partial outputs into each rank's rows.
Value localExperts(OpBuilder &b, MoEGroupedMLPOp experts, Value rows, Value counts,
                   int64_t etp) {
  Location loc = experts.getLoc();
  auto rowsType = cast<RankedTensorType>(rows.getType());
  auto mlp = [&](Value in, Value perExpert) {
    // fc1_output: the local rows through this rank's ffn columns.
    auto inType = cast<RankedTensorType>(in.getType());
    int64_t ffn = cast<RankedTensorType>(experts.getGate().getType()).getDimSize(1);
    auto fc1 = RankedTensorType::get({2, inType.getDimSize(0), ffn}, inType.getElementType());
    return inLayer(MoEGroupedMLPOp::create(b, loc, in.getType(), fc1, in, perExpert,
                                           experts.getGate(), experts.getUp(),
                                           experts.getDown()),
                   experts)
        .getResult();
  };
  if (etp == 1)
    return mlp(rows, counts);
  int64_t groups = cast<RankedTensorType>(counts.getType()).getDimSize(0);
  auto i32 = b.getI32Type();
  StringAttr axis = b.getStringAttr(kExpertTensorAxis);
  auto gathered = inLayer(
      MoEGatherCountsOp::create(b, loc, RankedTensorType::get({etp, groups}, i32),
                                RankedTensorType::get({etp}, i32),
                                RankedTensorType::get({groups}, i32), counts, axis,
                                b.getUnitAttr()),
      experts);
  auto all = RankedTensorType::get({etp * rowsType.getDimSize(0), rowsType.getDimSize(1)},
                                   rowsType.getElementType());
  Value in = inLayer(AllGatherOp::create(b, loc, all, rows, axis, b.getI64IntegerAttr(0)),
                     experts);
  Value unsorted =
      byLocalExpert(b, experts, in, gathered.getGlobalCounts(), gathered.getOffsets(),
                    [&](Value sorted) { return mlp(sorted, gathered.getTokensPerLocalExpert()); });
  return inLayer(ReduceScatterOp::create(b, loc, rowsType, unsorted, axis,
                                         b.getI64IntegerAttr(0), b.getStringAttr("sum")),
                 experts);
}

/// The alltoall dispatcher around one layer's experts (Megatron-Core's
/// MoEAlltoAllTokenDispatcher, dropless or with capacity): the permuted rows
/// [N, H] go to the ranks that hold their experts, are sorted by local
/// expert, run through the local experts, and come back in the order they
/// left. A rank may receive every peer's rows: the buffers hold ep x N.
Value allToAllDispatch(OpBuilder &b, MoEGroupedMLPOp experts, int64_t ep, int64_t etp) {
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
  Value unsorted = byLocalExpert(b, experts, in, counts.getGlobalCounts(), Value(), [&](Value s) {
    return localExperts(b, experts, s, counts.getTokensPerLocalExpert(), etp);
  });
  return inLayer(AllToAllVOp::create(b, loc, rows, unsorted, counts.getRecvCounts(),
                                     counts.getSendCounts(), axis),
                 experts);
}

/// The allgather dispatcher around one layer's experts (Megatron-Core's
/// MoEAllGatherTokenDispatcher): every rank's permuted rows [N, H] are
/// gathered over ep, this rank's experts run on the rows routed to them,
/// and the reduce-scatter over ep gives each rank its rows back, each
/// computed by one rank (zero from the others: the sum is exact).
Value allGatherDispatch(OpBuilder &b, MoEGroupedMLPOp experts, int64_t ep, int64_t etp) {
  Location loc = experts.getLoc();
  auto rows = cast<RankedTensorType>(experts.getInput().getType());
  int64_t numExperts = cast<RankedTensorType>(experts.getTokensPerExpert().getType()).getDimSize(0);
  int64_t local = numExperts / ep;
  auto i32 = b.getI32Type();
  StringAttr axis = b.getStringAttr(kExpertAxis);
  auto counts = inLayer(MoEGatherCountsOp::create(b, loc, RankedTensorType::get({ep, local}, i32),
                                                  RankedTensorType::get({ep}, i32),
                                                  RankedTensorType::get({local}, i32),
                                                  experts.getTokensPerExpert(), axis),
                        experts);
  auto gathered = RankedTensorType::get({ep * rows.getDimSize(0), rows.getDimSize(1)},
                                        rows.getElementType());
  Value all = inLayer(AllGatherOp::create(b, loc, gathered, experts.getInput(), axis,
                                          b.getI64IntegerAttr(0)),
                      experts);
  Value unsorted =
      byLocalExpert(b, experts, all, counts.getGlobalCounts(), counts.getOffsets(), [&](Value s) {
        return localExperts(b, experts, s, counts.getTokensPerLocalExpert(), etp);
      });
  return inLayer(ReduceScatterOp::create(b, loc, rows, unsorted, axis, b.getI64IntegerAttr(0),
                                         b.getStringAttr("sum")),
                 experts);
}

/// Splits one layer's experts over ep and etp and wraps them in
/// `dispatcher` (none with ep = 1: every rank holds every expert).
LogicalResult dispatch(ModuleOp module, MoEGroupedMLPOp experts, int64_t ep, int64_t etp,
                       StringRef dispatcher) {
  // Only the gradient, which mt-autodiff builds later, reads fc1_output.
  if (!experts.getFc1Output().use_empty())
    return experts.emitOpError() << "has readers of its fc1_output before mt-autodiff: "
                                    "mt-partition-ep replaces the op and cannot keep them";
  if (failed(shardExperts(module, experts, experts.getGate(), ep, etp, 1)) ||
      failed(shardExperts(module, experts, experts.getUp(), ep, etp, 1)) ||
      failed(shardExperts(module, experts, experts.getDown(), ep, etp, 2)))
    return failure();
  OpBuilder b(experts);
  Value back = ep == 1 ? localExperts(b, experts, experts.getInput(),
                                      experts.getTokensPerExpert(), etp)
               : dispatcher == "allgather" ? allGatherDispatch(b, experts, ep, etp)
                                           : allToAllDispatch(b, experts, ep, etp);
  experts.getResult().replaceAllUsesWith(back);
  experts.erase();
  return success();
}

struct PartitionExpertParallel
    : public mt::impl::PartitionExpertParallelBase<PartitionExpertParallel> {
  using PartitionExpertParallelBase::PartitionExpertParallelBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto grid = module.lookupSymbol<shard::GridOp>(kExpertMeshName);
    std::optional<int64_t> ep = grid ? axisSize(grid, kExpertAxis) : std::nullopt;
    std::optional<int64_t> etp = grid ? axisSize(grid, kExpertTensorAxis) : std::nullopt;
    if (!ep || !etp) {
      module.emitError() << "mt-partition-ep expects a mesh 'shard.grid @" << kExpertMeshName
                         << "' with axes '" << kExpertAxis << "' and '" << kExpertTensorAxis
                         << "' in 'mt.axes'";
      return signalPassFailure();
    }
    if (dispatcher != "alltoall" && dispatcher != "allgather") {
      module.emitError() << "mt-partition-ep: dispatcher '" << dispatcher
                         << "' is not one of alltoall, allgather (Megatron-Core's "
                            "moe_token_dispatcher_type; flex is not built)";
      return signalPassFailure();
    }
    // Under tp the experts go on @expert_mesh even with ep = etp = 1: each
    // tp rank routes its own tokens, and edp (tp·dp·cp) holds the ranks that
    // sum their gradient (mt.moe_grouped_mlp's tp rule leaves them to this).
    auto dense = module.lookupSymbol<shard::GridOp>(kMeshName);
    if (*ep == 1 && *etp == 1 && (!dense || axisSize(dense, "tp").value_or(1) == 1))
      return;
    auto fn = module.lookupSymbol<func::FuncOp>("forward");
    if (!fn) {
      module.emitError() << "mt-partition-ep expects a function @forward";
      return signalPassFailure();
    }
    SmallVector<MoEGroupedMLPOp> layers;
    fn.walk([&](MoEGroupedMLPOp op) { layers.push_back(op); });
    for (MoEGroupedMLPOp op : layers)
      if (failed(dispatch(module, op, *ep, *etp, dispatcher)))
        return signalPassFailure();
  }
};

} // namespace
