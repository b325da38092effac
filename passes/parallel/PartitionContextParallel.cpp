// mt-partition-cp: context parallelism, @forward's sequence split over the
// cp mesh axis in Megatron-Core's load-balanced layout.
#include "passes/Passes.h"
#include "passes/loss/LossSum.h"

#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtVerify.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/DenseSet.h"

namespace mt {
#define GEN_PASS_DEF_PARTITIONCONTEXTPARALLEL
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

/// @forward's [B, S] token inputs and the batch and sequence they give.
struct SequenceShape {
  int64_t batch = 0, seq = 0;
  /// Whether `type` is a [B, S', ...] value of the sequence or, with
  /// sequence parallelism, of its tp shard S' = S / tp (for values computed
  /// from the sequence: weights never are).
  bool holds(Type type) const {
    auto t = dyn_cast<RankedTensorType>(type);
    return t && t.getRank() >= 2 && t.getDimSize(0) == batch;
  }
};

/// `type` with its dimension `dim` (the sequence's by default) divided by
/// `cp`.
RankedTensorType localType(Type type, int64_t cp, int64_t dim = 1) {
  auto t = cast<RankedTensorType>(type);
  SmallVector<int64_t> shape(t.getShape());
  shape[dim] /= cp;
  return RankedTensorType::get(shape, t.getElementType());
}

/// The whole sequence of `local` ([B, S/cp, ...]) gathered over cp along
/// dimension 1, before `at` and marked as it: rank-major, or with
/// `loadBalanced` in the sequence's true order (mt.all_gather).
Value gatherSequence(OpBuilder &b, Operation *at, Value local, int64_t cp,
                     bool loadBalanced = false) {
  auto t = cast<RankedTensorType>(local.getType());
  SmallVector<int64_t> whole(t.getShape());
  whole[1] *= cp;
  b.setInsertionPoint(at);
  auto gather = AllGatherOp::create(
      b, at->getLoc(), RankedTensorType::get(whole, t.getElementType()), local,
      b.getStringAttr(kContextParallelAxis), b.getI64IntegerAttr(1), UnitAttr(), UnitAttr(),
      loadBalanced ? b.getUnitAttr() : UnitAttr());
  gather->setDiscardableAttrs(at->getDiscardableAttrDictionary());
  return gather;
}

struct PartitionContextParallelPass
    : public mt::impl::PartitionContextParallelBase<PartitionContextParallelPass> {
  using PartitionContextParallelBase::PartitionContextParallelBase;
  void runOnOperation() override;

  /// Checks what this version of the pass can split; the error names it.
  LogicalResult checkSupported(ModuleOp module, func::FuncOp fn, SequenceShape &shape) const;
  /// Gives `fn`'s sequence values their local types and the ops that need
  /// the whole sequence their context-parallel form.
  LogicalResult partition(func::FuncOp fn, const SequenceShape &shape) const;
  /// all_gather: `attention` reads keys and values gathered over cp.
  void gatherKeysAndValues(OpBuilder &b, AttentionOp attention) const;
  /// p2p: `attention` (on local query, key, value) becomes ring attention,
  /// which takes its uses; returns the ring's output.
  Value ringAttention(OpBuilder &b, AttentionOp attention) const;
  /// a2a: `attention` runs on whole sequences for 1/cp of its heads between
  /// two all-to-alls, which take its uses; returns the local output, or
  /// null after an error when the heads do not divide over cp.
  Value headParallelAttention(OpBuilder &b, AttentionOp attention) const;
  /// Makes the loss `fn` returns this rank's share of the micro-batch's.
  LogicalResult weightLossByTokenShare(func::FuncOp fn) const;
  /// MoE: `router` routes this rank's tokens with the whole micro-batch's
  /// token counts (summed over cp), as Megatron-Core's router under cp.
  void countTokensOverCp(OpBuilder &b, MoERouterOp router) const;
  /// MoE: the rows of `op` (mt.moe_permute's and mt.moe_grouped_mlp's
  /// results) are this rank's tokens'.
  void localizeExpertRows(Operation *op, llvm::DenseSet<Value> &split) const;

  int64_t cp = 1;
};

LogicalResult PartitionContextParallelPass::checkSupported(ModuleOp module, func::FuncOp fn,
                                                           SequenceShape &shape) const {
  if (commType != "all_gather" && commType != "p2p" && commType != "a2a")
    return module.emitError() << "mt-partition-cp: cp_comm_type '" << commType
                              << "' is not built in this version of mtc; use p2p, all_gather "
                                 "or a2a";
  WalkResult capacity = fn.walk([&](MoEPermuteOp permute) {
    if (!permute.getCapacity())
      return WalkResult::advance();
    // Megatron-Core sizes the capacity by each rank's tokens: the drops
    // would differ from the single rank's.
    permute.emitOpError() << "has an expert capacity (moe_expert_capacity_factor): not "
                             "supported with context parallelism (cp "
                          << cp << ") yet; use dropless MoE or context_parallel_size 1";
    return WalkResult::interrupt();
  });
  if (capacity.wasInterrupted())
    return failure();
  for (auto [i, arg] : llvm::enumerate(fn.getArguments())) {
    auto role = fn.getArgAttrOfType<StringAttr>(i, "mt.input");
    if (role && role.getValue() == "input_ids") {
      auto t = cast<RankedTensorType>(arg.getType());
      shape = {t.getDimSize(0), t.getDimSize(1)};
    }
  }
  if (shape.seq == 0)
    return fn.emitError() << "mt-partition-cp expects an argument {mt.input = \"input_ids\"} "
                             "[B, S] of @forward";
  if (shape.seq % (2 * cp) != 0)
    return fn.emitError() << "mt-partition-cp: the sequence length (" << shape.seq
                          << ") must be divisible by 2 x context_parallel_size (2 x " << cp
                          << " = " << 2 * cp << "): each rank holds 2 of 2 x cp chunks";
  return success();
}

LogicalResult PartitionContextParallelPass::partition(func::FuncOp fn,
                                                     const SequenceShape &shape) const {
  llvm::DenseSet<Value> split;
  auto localize = [&](Value v) {
    v.setType(localType(v.getType(), cp));
    split.insert(v);
  };
  for (BlockArgument arg : fn.getArguments())
    if (shape.holds(arg.getType()) && cast<RankedTensorType>(arg.getType()).getDimSize(1) ==
                                          shape.seq)
      localize(arg);
  OpBuilder b(fn.getContext());
  StringAttr axis = b.getStringAttr(kContextParallelAxis);
  WalkResult walked = fn.walk([&](Operation *op) {
    if (llvm::none_of(op->getOperands(), [&](Value v) { return split.contains(v); }))
      return WalkResult::advance();
    if (auto router = dyn_cast<MoERouterOp>(op))
      countTokensOverCp(b, router);
    if (isa<MoEPermuteOp, MoEGroupedMLPOp>(op)) {
      localizeExpertRows(op, split);
      return WalkResult::advance();
    }
    for (Value result : op->getResults())
      if (shape.holds(result.getType()) &&
          cast<RankedTensorType>(result.getType()).getDimSize(1) % cp != 0) {
        op->emitOpError() << "cannot split the sequence dimension (1) of "
                          << result.getType() << " over context_parallel_size " << cp;
        return WalkResult::interrupt();
      }
    // Packed documents: rotary takes the tokens' position ids, sliced with them.
    if (auto rotary = dyn_cast<RotaryOp>(op); rotary && !rotary.getPositionIds())
      rotary.setContextParallelAxisAttr(axis);
    if (auto attention = dyn_cast<AttentionOp>(op); attention && commType != "all_gather") {
      Value out = commType == "p2p" ? ringAttention(b, attention)
                                    : headParallelAttention(b, attention);
      if (!out)
        return WalkResult::interrupt();
      split.insert(out);
      attention.erase();
      return WalkResult::advance();
    }
    if (auto attention = dyn_cast<AttentionOp>(op))
      gatherKeysAndValues(b, attention);
    for (Value result : op->getResults())
      if (shape.holds(result.getType()))
        localize(result);
    return WalkResult::advance();
  });
  if (walked.wasInterrupted())
    return failure();
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  fn.setType(FunctionType::get(fn.getContext(), fn.getBody().getArgumentTypes(),
                               ret.getOperandTypes()));
  return success();
}

// all_gather: every rank's keys and values, rank-major along the sequence;
// autodiff reduce-scatters their gradients back.
void PartitionContextParallelPass::gatherKeysAndValues(OpBuilder &b,
                                                       AttentionOp attention) const {
  for (OpOperand *kv : {&attention->getOpOperand(1), &attention->getOpOperand(2)})
    kv->set(gatherSequence(b, attention, kv->get(), cp));
  attention.setContextParallelAxisAttr(b.getStringAttr(kContextParallelAxis));
}

// Megatron-Core's ring attention (AttnFuncWithCPAndKVP2P): at step t the
// queries attend to the keys and values of the rank t places back on the
// ring, which mt.ring_shift passes on; the steps' partial attentions merge
// by their log-sum-exp. Each step's shifts come before the block of the step
// before, whose keys they pass on, so that a backend can run the transfer
// during that block (Megatron sends the next block's keys and values before
// computing the current one). Autodiff's gradient of each shift is the shift
// the other way: the key and value gradients travel the ring backwards.
Value PartitionContextParallelPass::ringAttention(OpBuilder &b, AttentionOp attention) const {
  b.setInsertionPoint(attention);
  Location loc = attention.getLoc();
  DictionaryAttr marks = attention->getDiscardableAttrDictionary();
  auto q = cast<RankedTensorType>(attention.getQuery().getType());
  auto lseType = RankedTensorType::get({q.getDimSize(0), int64_t(attention.getNumHeads()),
                                        q.getDimSize(1)},
                                       b.getF32Type());
  StringAttr axis = b.getStringAttr(kContextParallelAxis);
  Value key = attention.getKey(), value = attention.getValue(), out, lse;
  for (int64_t step = 0; step < cp; ++step) {
    Value nextKey, nextValue; // the keys and values of step + 1
    if (step + 1 < cp) {
      nextKey = RingShiftOp::create(b, loc, key, axis, UnitAttr());
      nextValue = RingShiftOp::create(b, loc, value, axis, UnitAttr());
      nextKey.getDefiningOp()->setDiscardableAttrs(marks);
      nextValue.getDefiningOp()->setDiscardableAttrs(marks);
    }
    // Packed documents: each block masks by the queries' position ids
    // (their document's start), which stay on the rank.
    auto block = AttentionBlockOp::create(
        b, loc, q, lseType, attention.getQuery(), key, value, attention.getPositionIds(),
        attention.getNumHeadsAttr(), attention.getNumKvHeadsAttr(), attention.getHeadDimAttr(),
        attention.getScaleAttr(), axis, b.getI64IntegerAttr(step));
    block->setDiscardableAttrs(marks);
    if (step == 0) {
      out = block.getResult(), lse = block.getLse();
    } else {
      auto merge = AttentionMergeOp::create(b, loc, q, lseType, out, lse, block.getResult(),
                                            block.getLse());
      merge->setDiscardableAttrs(marks);
      out = merge.getResult(), lse = merge.getLse();
    }
    key = nextKey, value = nextValue;
  }
  attention.getResult().replaceAllUsesWith(out);
  return out;
}

// Megatron-Core's cp_comm_type a2a (DeepSpeed-Ulysses; Transformer
// Engine's AttnFuncWithCPAndQKVOA2A): an all-to-all over cp turns the
// sequence slices [B, S/cp, H, D] of queries, keys and values into whole
// sequences [B, S, H/cp, D], in their true order (the chunks of the
// load-balanced layout put back in place, as TE's
// reorder_seq_chunks_for_a2a), so that attention is the single rank's for
// its heads; an all-to-all back gives each rank its slice of every head.
// Autodiff's gradients are the exchanges the other way. Grouped-query
// attention keeps its groups: rank r gets query heads [r·H/cp, (r+1)·H/cp)
// and kv heads [r·KV/cp, (r+1)·KV/cp), so query head h still reads kv head
// h / (H/KV).
Value PartitionContextParallelPass::headParallelAttention(OpBuilder &b,
                                                         AttentionOp attention) const {
  const int64_t heads = attention.getNumHeads(), kvHeads = attention.getNumKvHeads();
  if (heads % cp != 0 || kvHeads % cp != 0) {
    attention.emitOpError() << "cannot split its " << heads << " query heads and " << kvHeads
                            << " key/value heads (per tensor-parallel rank) over "
                               "context_parallel_size "
                            << cp << " with cp_comm_type a2a: both must be divisible by cp";
    return Value();
  }
  b.setInsertionPoint(attention);
  Location loc = attention.getLoc();
  DictionaryAttr marks = attention->getDiscardableAttrDictionary();
  StringAttr axis = b.getStringAttr(kContextParallelAxis);
  const int64_t seqDim = 1, headDim = 2;
  auto exchange = [&](Value v, int64_t splitDim, int64_t concatDim) -> Value {
    auto t = cast<RankedTensorType>(v.getType());
    SmallVector<int64_t> shape(t.getShape());
    shape[splitDim] /= cp;
    shape[concatDim] *= cp;
    auto op = AllToAllOp::create(b, loc, RankedTensorType::get(shape, t.getElementType()), v,
                                 axis, b.getI64IntegerAttr(splitDim),
                                 b.getI64IntegerAttr(concatDim), b.getI64IntegerAttr(seqDim));
    op->setDiscardableAttrs(marks);
    return op;
  };
  Value q = exchange(attention.getQuery(), headDim, seqDim);
  Value k = exchange(attention.getKey(), headDim, seqDim);
  Value v = exchange(attention.getValue(), headDim, seqDim);
  // Packed documents: the whole sequence's position ids in their true
  // order, so that the document mask is the single rank's.
  Value positions = attention.getPositionIds();
  if (positions)
    positions = gatherSequence(b, attention, positions, cp, /*loadBalanced=*/true);
  auto whole = AttentionOp::create(b, loc, q.getType(), q, k, v, positions,
                                   b.getI64IntegerAttr(heads / cp),
                                   b.getI64IntegerAttr(kvHeads / cp),
                                   attention.getHeadDimAttr(), attention.getScaleAttr(),
                                   StringAttr());
  whole->setDiscardableAttrs(marks);
  Value out = exchange(whole, seqDim, headDim);
  attention.getResult().replaceAllUsesWith(out);
  return out;
}

// Each cp rank routes its own tokens (the top-k is per token), but the
// load-balancing loss counts the tokens every expert gets in the whole
// micro-batch (in each whole sequence with seq_aux_loss): as Megatron-Core's
// router under cp (tokens_per_expert all-reduced over tp x cp), each rank
// counts its tokens' routing (mt.moe_router_counts), the counts are summed
// over cp, and the router takes them with token_shards = cp: its losses are
// then this rank's terms of the micro-batch's, which the loss's sum over cp
// makes whole, and so are their gradients. Routing recomputes the router's
// logits once more: E x H multiply-adds per token, against the experts'
// 3 x top_k x H x F.
void PartitionContextParallelPass::countTokensOverCp(OpBuilder &b, MoERouterOp router) const {
  b.setInsertionPoint(router);
  Location loc = router.getLoc();
  DictionaryAttr marks = router->getDiscardableAttrDictionary();
  SmallVector<int64_t> shape = verify::routerCountsShape(
      cast<RankedTensorType>(router.getInput().getType()),
      cast<RankedTensorType>(router.getWeight().getType()).getDimSize(0),
      router.getLoadBalancingType());
  auto counts = MoERouterCountsOp::create(
      b, loc, RankedTensorType::get(shape, b.getF32Type()), router.getInput(),
      router.getWeight(), router.getTopKAttr(), router.getLoadBalancingTypeAttr());
  auto whole = AllReduceOp::create(b, loc, counts.getResult(),
                                   b.getStringAttr(kContextParallelAxis), b.getStringAttr("sum"));
  counts->setDiscardableAttrs(marks);
  whole->setDiscardableAttrs(marks);
  router.getTokenCountsMutable().assign(whole);
  router.setTokenShardsAttr(b.getI64IntegerAttr(cp));
}

void PartitionContextParallelPass::localizeExpertRows(Operation *op,
                                                      llvm::DenseSet<Value> &split) const {
  auto divide = [&](Value v, int64_t dim) {
    v.setType(localType(v.getType(), cp, dim));
    split.insert(v);
  };
  if (auto permute = dyn_cast<MoEPermuteOp>(op)) {
    divide(permute.getPermuted(), 0); // [B·S·top_k, H], dropless
    divide(permute.getSlotRows(), 1); // [B, S, top_k]
    return;
  }
  auto experts = cast<MoEGroupedMLPOp>(op);
  divide(experts.getResult(), 0);    // [rows, H]
  divide(experts.getFc1Output(), 1); // [2, rows, F]
}

// Each rank's cross-entropy is the mean over its own n_r loss tokens; times
// n_r / N, N the micro-batch's tokens (the sum of n_r over cp), the sum over
// cp is the mean over all N: the single rank's loss, and by autodiff its
// gradients (Megatron-Core's loss_func before calculate_per_token_loss: the
// loss sum and the token count all-reduced over cp). The routers' losses
// added to it are already each rank's share (routeWholeSequence). @forward
// of IR fragments that return no scalar loss is left as it is.
LogicalResult PartitionContextParallelPass::weightLossByTokenShare(func::FuncOp fn) const {
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  if (ret.getNumOperands() == 0)
    return success();
  auto type = dyn_cast<RankedTensorType>(ret.getOperand(0).getType());
  if (!type || type.getRank() != 0)
    return success();
  CrossEntropyOp loss = lossCrossEntropy(fn);
  if (!loss)
    return ret.emitOpError() << "returns a loss that is not an mt.cross_entropy (plus MoE "
                                "routers' losses): mt-partition-cp weights the cross-entropy "
                                "of each cp rank's tokens by their share of the micro-batch's";
  // Right after the cross-entropy: with it on the last pipeline stage.
  OpBuilder b(loss->getContext());
  b.setInsertionPointAfter(loss);
  Location loc = loss.getLoc();
  Value mine = NumTokensOp::create(b, loc, type, loss.getMask());
  Value all = AllReduceOp::create(b, loc, mine, b.getStringAttr(kContextParallelAxis),
                                  b.getStringAttr("sum"));
  auto sum = ScaleByOp::create(b, loc, type, loss.getResult(), mine, UnitAttr());
  Value share = ScaleByOp::create(b, loc, type, sum, all, b.getUnitAttr());
  loss.getResult().replaceAllUsesExcept(share, sum);
  return success();
}

void PartitionContextParallelPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto mesh = module.lookupSymbol<shard::GridOp>(kMeshName);
  std::optional<int64_t> size = mesh ? axisSize(mesh, kContextParallelAxis) : std::nullopt;
  if (!size) {
    module.emitError() << "mt-partition-cp expects a mesh 'shard.grid @" << kMeshName
                       << "' with axis '" << kContextParallelAxis << "' in '"
                       << MtDialect::kAxesAttrName << "'";
    return signalPassFailure();
  }
  cp = *size;
  if (cp == 1)
    return;
  auto fn = module.lookupSymbol<func::FuncOp>("forward");
  if (!fn) {
    module.emitError() << "mt-partition-cp expects 'func.func @forward'";
    return signalPassFailure();
  }
  SequenceShape shape;
  if (failed(checkSupported(module, fn, shape)))
    return signalPassFailure();
  if (failed(partition(fn, shape)) || (!perTokenLoss && failed(weightLossByTokenShare(fn))) ||
      failed(mlir::verify(fn)))
    return signalPassFailure();
}

} // namespace
