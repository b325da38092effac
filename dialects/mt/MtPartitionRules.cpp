// Partition rules of the mt ops (PartitionableOpInterface): Megatron-Core's
// tensor- and sequence-parallel layouts, one rule per op.
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtPartition.h"

using namespace mlir;
using namespace mt;

namespace {

int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }

} // namespace

//===----------------------------------------------------------------------===//
// Dense layers
//===----------------------------------------------------------------------===//

/// Vocab-parallel: the table split by rows, the lookups summed over tp.
LogicalResult EmbeddingOp::partition(Partitioner &p) {
  if (failed(p.shardWeight(*this, getTable(), 0, /*vocabulary=*/true)))
    return failure();
  setVocabParallelAxis(p.axis());
  return p.reduceAfter(*this, getResult());
}

/// A projection onto one feature (Qwen2-MoE's shared_expert_gate, a logit
/// per token) on whole features: replicated, as Megatron-Core's
/// SharedExpertMLP keeps its gate weight, each rank projecting its tokens.
/// Split along the sequence, each rank's share of the weight's gradient is
/// partial (summed over tp by mt.tp_copy).
static LogicalResult partitionReplicated(LinearOp op, Partitioner &p) {
  Value bias = op.getBias();
  if (failed(p.shardWeight(op, op.getWeight(), std::nullopt)) ||
      (bias && failed(p.shardWeight(op, bias, std::nullopt))))
    return failure();
  Sharding in = p.of(op.getInput());
  if (in.kind == Sharding::Replicated)
    return success();
  OpBuilder &b = p.builder();
  b.setInsertionPoint(op);
  for (OpOperand *weight : {&op.getWeightMutable(), bias ? &op.getBiasMutable()[0] : nullptr})
    if (weight) {
      auto copy = TPCopyOp::create(b, op.getLoc(), weight->get(), p.axis());
      copyLayer(op, copy);
      weight->set(copy);
    }
  return p.splitValue(op, op.getResult(), in.dim);
}

/// Column-parallel when the input is replicated (or split along the
/// sequence: gathered first); row-parallel when it is split on its features,
/// with the output summed over tp and the bias added once after the sum.
/// A projection onto one feature stays replicated (partitionReplicated).
LogicalResult LinearOp::partition(Partitioner &p) {
  Sharding in = p.of(getInput());
  bool sequenceSplit = p.sequenceParallel() && in.kind == Sharding::Split && in.dim == 1 &&
                       rankOf(getInput()) == 3;
  if ((in.kind == Sharding::Replicated || sequenceSplit) &&
      cast<RankedTensorType>(getWeight().getType()).getDimSize(0) == 1)
    return partitionReplicated(*this, p);
  if (in.kind == Sharding::Replicated || sequenceSplit) { // column-parallel
    getInputMutable().assign(p.columnInput(*this, getInput()));
    // The output projection onto the vocabulary may pad it.
    bool logits = llvm::any_of(getResult().getUsers(),
                               [](Operation *u) { return isa<CrossEntropyOp>(u); });
    if (failed(p.shardWeight(*this, getWeight(), 0, logits)) ||
        (getBias() && failed(p.shardWeight(*this, getBias(), 0))))
      return failure();
    // The local output has as many features as the local weight has rows.
    auto t = cast<RankedTensorType>(getResult().getType());
    SmallVector<int64_t> shape(t.getShape());
    shape.back() = cast<RankedTensorType>(getWeight().getType()).getDimSize(0);
    getResult().setType(RankedTensorType::get(shape, t.getElementType()));
    p.setSharding(getResult(), Sharding::split(rankOf(getResult()) - 1));
    return success();
  }
  if (in.dim != rankOf(getInput()) - 1)
    return emitOpError() << "has an input split on dimension " << in.dim
                         << ", not on its features";
  if (failed(p.shardWeight(*this, getWeight(), 1))) // row-parallel
    return failure();
  Value bias = getBias();
  if (bias)
    getBiasMutable().clear();
  if (failed(p.reduceAfter(*this, getResult())))
    return failure();
  if (!bias)
    return success();
  // The bias is added once, after the sum over ranks; split along the
  // sequence, each rank's share of its gradient is partial.
  if (failed(p.shardWeight(*this, bias, std::nullopt)))
    return failure();
  Operation *reduce = *getResult().getUsers().begin();
  Value summed = reduce->getResult(0);
  OpBuilder &b = p.builder();
  b.setInsertionPointAfter(reduce);
  if (p.sequenceParallel()) {
    auto copy = TPCopyOp::create(b, getLoc(), bias, p.axis());
    copyLayer(*this, copy);
    bias = copy;
  }
  auto add = BiasAddOp::create(b, getLoc(), summed.getType(), summed, bias);
  copyLayer(*this, add);
  summed.replaceAllUsesExcept(add.getResult(), add);
  p.setSharding(add.getResult(), p.of(summed));
  return success();
}

/// Inserted after row-parallel linears by their rule: already laid out.
LogicalResult BiasAddOp::partition(Partitioner &) { return success(); }

/// [.., a*b] split on the last dim <-> [.., a, b] split on a (heads).
LogicalResult ReshapeOp::partition(Partitioner &p) {
  Sharding in = p.of(getInput());
  if (in.kind == Sharding::Replicated)
    return success();
  auto from = cast<RankedTensorType>(getInput().getType());
  auto to = cast<RankedTensorType>(getResult().getType());
  if (in.dim == from.getRank() - 1 && to.getRank() == from.getRank() + 1)
    return p.splitValue(*this, getResult(), to.getRank() - 2);
  if (in.dim == from.getRank() - 2 && to.getRank() == from.getRank() - 1)
    return p.splitValue(*this, getResult(), to.getRank() - 1);
  return emitOpError() << "reshapes a value split on dimension " << in.dim
                       << " in a way tensor parallelism does not support";
}

LogicalResult AddOp::partition(Partitioner &p) {
  return p.partitionLocal(*this, (*this)->getOperands(), false);
}

//===----------------------------------------------------------------------===//
// Normalization
//===----------------------------------------------------------------------===//

/// Local over an unsplit last dimension (sequence-parallel when the input
/// is split along the sequence); the weight is replicated.
LogicalResult RMSNormOp::partition(Partitioner &p) {
  if (failed(p.shardWeight(*this, getWeight(), std::nullopt)))
    return failure();
  // A norm over local heads (Qwen3's q/k norm) sees only this rank's
  // heads: its weight's gradient is a partial sum over tp.
  if (p.of(getInput()).kind == Sharding::Split) {
    OpBuilder &b = p.builder();
    b.setInsertionPoint(*this);
    auto copy = TPCopyOp::create(b, getLoc(), getWeight(), p.axis());
    copyLayer(*this, copy);
    getWeightMutable().assign(copy);
  }
  return p.partitionLocal(*this, getInput(), true);
}

LogicalResult LayerNormOp::partition(Partitioner &p) {
  if (failed(p.shardWeight(*this, getWeight(), std::nullopt)) ||
      failed(p.shardWeight(*this, getBias(), std::nullopt)))
    return failure();
  return p.partitionLocal(*this, getInput(), true);
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

/// Position ids (whole on every rank) index tokens, not heads.
LogicalResult RotaryOp::partition(Partitioner &p) {
  return p.partitionLocal(*this, getInput(), false);
}

/// On local heads: query and key/value heads split alike.
LogicalResult AttentionOp::partition(Partitioner &p) {
  if (failed(p.partitionLocal(*this, ValueRange{getQuery(), getKey(), getValue()}, false)))
    return failure();
  if (p.of(getQuery()).kind == Sharding::Split) {
    setNumHeads(getNumHeads() / p.tp());
    setNumKvHeads(getNumKvHeads() / p.tp());
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Feed-forward activations
//===----------------------------------------------------------------------===//

LogicalResult SwiGLUOp::partition(Partitioner &p) {
  return p.partitionLocal(*this, (*this)->getOperands(), false);
}

LogicalResult GELUOp::partition(Partitioner &p) {
  return p.partitionLocal(*this, (*this)->getOperands(), false);
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

// MoE parallel folding: each tp rank dispatches its own share of the
// tokens (the sequence split over tp, as with sequence parallelism), so the
// ranks of a tp group hold disjoint tokens like those of dp, and the expert
// gradients are summed over edp, which holds them (mt-build-optimizer).
// The experts themselves are laid out on @expert_mesh by mt-partition-ep
// (ep, and etp: expert tensor parallelism over the same ranks), or with
// ep = etp = 1 replicated over tp.
// The router sees every token (its top-k, load-balancing loss and gradient
// are the single rank's, replicated); permute, experts and un-permute see
// this rank's.

/// On the whole tokens: gathered along the sequence when split.
LogicalResult MoERouterOp::partition(Partitioner &p) {
  if (failed(p.shardWeight(*this, getWeight(), std::nullopt)))
    return failure();
  getInputMutable().assign(p.wholeTokens(*this, getInput()));
  return success();
}

/// On this rank's tokens and their routing; the permuted rows are split.
LogicalResult MoEPermuteOp::partition(Partitioner &p) {
  // Megatron-Core sizes the capacity by each rank's tokens: drops would
  // differ from the single rank's, and that layout is not built.
  if (getCapacity())
    return emitOpError() << "has an expert capacity (moe_expert_capacity_factor): not "
                            "supported with tensor parallelism yet";
  int64_t seq = cast<RankedTensorType>(getProbs().getType()).getDimSize(1);
  if (p.of(getProbs()).kind == Sharding::Replicated && seq % p.tp() != 0)
    return emitOpError() << "cannot split the sequence (" << seq << ") over tp = " << p.tp();
  for (OpOperand &operand : (*this)->getOpOperands())
    operand.set(p.localTokens(*this, operand.get()));
  return failure(failed(p.splitValue(*this, getPermuted(), 0)) ||
                 failed(p.splitValue(*this, getSlotRows(), 1)));
}

/// The experts on this rank's rows. mt-partition-ep lays them on
/// @expert_mesh, whose edp holds the tp ranks when etp is 1 (with ep = etp
/// = 1 whole experts on every rank, their gradient summed over edp, which
/// the distributed optimizer shards over, as Megatron-Core's).
LogicalResult MoEGroupedMLPOp::partition(Partitioner &p) {
  if (p.of(getInput()).kind != Sharding::Split)
    return emitOpError() << "expects the rows of this rank's tokens (mt.moe_permute's)";
  // fc1_output [2, N, F] holds the same rows as the input, along dimension 1.
  return failure(failed(p.splitValue(*this, getResult(), 0)) ||
                 failed(p.splitValue(*this, getFc1Output(), 1)));
}

/// This rank's tokens back; whole on every rank again without sequence
/// parallelism.
LogicalResult MoEUnpermuteOp::partition(Partitioner &p) {
  if (p.of(getInput()).kind != Sharding::Split || p.of(getSlotRows()).kind != Sharding::Split)
    return emitOpError() << "expects the rows and slots of this rank's tokens (mt.moe_permute's)";
  getProbsMutable().assign(p.localTokens(*this, getProbs()));
  if (failed(p.splitValue(*this, getResult(), 1)))
    return failure();
  return p.leaveLocalTokens(*this, getResult());
}

/// The shared expert's gate (Qwen2-MoE): per token, on the logits of the
/// replicated gate projection and the shared expert's summed output, both
/// whole or both split along the sequence.
LogicalResult SigmoidGateOp::partition(Partitioner &p) {
  return p.partitionLocal(*this, (*this)->getOperands(), false);
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

/// Vocab-parallel over logits split on the vocabulary; padding columns of a
/// padded vocabulary take no part.
LogicalResult CrossEntropyOp::partition(Partitioner &p) {
  if (p.of(getLogits()).kind == Sharding::Split) {
    setVocabParallelAxis(p.axis());
    if (p.validVocab())
      setValidVocab(p.validVocab());
  }
  return success();
}
