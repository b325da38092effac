// Verifiers and gradients of the MoE token permutation ops (MtMoEOps.td).
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtVerify.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mt;
using namespace mt::verify;

namespace {

/// `probs` and a companion i32 tensor of one [B, S, K] shape, matching the
/// tokens [B, S] of `tokens` (rank 3, [B, S, H]).
LogicalResult verifySlots(Operation *op, RankedTensorType tokens,
                          RankedTensorType probs, StringRef name,
                          RankedTensorType slots) {
  if (failed(expectRank(op, "probs", probs, 3)))
    return failure();
  if (failed(expectShape(op, "probs", probs,
                         {tokens.getDimSize(0), tokens.getDimSize(1), probs.getDimSize(2)})))
    return failure();
  return expectShape(op, name, slots, probs.getShape());
}

/// Experts [E, F, H] for gate and up, [E, H, F] for down, E = the size of
/// tokens_per_expert, H = the rows' width.
LogicalResult verifyExpertWeights(Operation *op, RankedTensorType rows,
                                  RankedTensorType counts, Value gateV,
                                  Value upV, Value downV) {
  auto gate = tensorOf(gateV);
  if (failed(expectRank(op, "input", rows, 2)) ||
      failed(expectRank(op, "tokens_per_expert", counts, 1)) ||
      failed(expectRank(op, "gate", gate, 3)))
    return failure();
  int64_t experts = counts.getDimSize(0), ffn = gate.getDimSize(1), hidden = rows.getDimSize(1);
  if (failed(expectShape(op, "gate", gate, {experts, ffn, hidden})) ||
      failed(expectShape(op, "up", tensorOf(upV), {experts, ffn, hidden})) ||
      failed(expectShape(op, "down", tensorOf(downV), {experts, hidden, ffn})))
    return failure();
  for (auto [name, v] : {std::pair<StringRef, Value>{"gate", gateV}, {"up", upV}, {"down", downV}})
    if (failed(expectSameElementType(op, "input", rows, name, tensorOf(v))))
      return failure();
  return success();
}

/// fc1_output [2, N, F] (the gate and up pre-activations) of `rows` [N, H]
/// through experts whose gate is [E, F, H].
LogicalResult verifyFc1Output(Operation *op, RankedTensorType rows, Value gateV,
                              Value fc1V) {
  auto fc1 = tensorOf(fc1V);
  if (failed(expectShape(op, "fc1_output", fc1,
                         {2, rows.getDimSize(0), tensorOf(gateV).getDimSize(1)})))
    return failure();
  return expectSameElementType(op, "input", rows, "fc1_output", fc1);
}

void resize(SmallVectorImpl<Value> &grads, Operation *op) {
  grads.assign(op->getNumOperands(), Value());
}

} // namespace

LogicalResult MoEPermuteOp::verify() {
  auto in = tensorOf(getInput()), probs = tensorOf(getProbs());
  auto counts = tensorOf(getTokensPerExpert());
  if (failed(expectRank(*this, "input", in, 3)) ||
      failed(verifySlots(*this, in, probs, "indices", tensorOf(getIndices()))) ||
      failed(expectShape(*this, "slot_rows", tensorOf(getSlotRows()), probs.getShape())) ||
      failed(expectRank(*this, "tokens_per_expert", counts, 1)))
    return failure();
  int64_t experts = counts.getDimSize(0), topK = probs.getDimSize(2);
  if (topK < 1 || topK > experts)
    return emitOpError() << "expects 1 <= top_k (" << topK << ") <= experts (" << experts
                         << ", the size of tokens_per_expert)";
  int64_t slots = in.getDimSize(0) * in.getDimSize(1) * topK, rows = slots;
  if (auto policy = getDropPolicy(); policy && *policy != "probs" && *policy != "position")
    return emitOpError() << "expects drop_policy \"probs\" or \"position\", got \"" << *policy
                         << "\"";
  if (std::optional<int64_t> capacity = getCapacity()) {
    if (*capacity < 1)
      return emitOpError() << "expects capacity >= 1, got " << *capacity;
    rows = getPadToCapacity() ? experts * *capacity : std::min(slots, experts * *capacity);
  } else if (getDropPolicy() || getPadToCapacity()) {
    return emitOpError() << "has drop_policy or pad_to_capacity but no capacity "
                            "(a dropless permutation drops nothing)";
  }
  if (failed(expectShape(*this, "permuted", tensorOf(getPermuted()), {rows, in.getDimSize(2)})))
    return failure();
  return expectSameElementType(*this, "input", in, "permuted", tensorOf(getPermuted()));
}

LogicalResult MoEGroupedMLPOp::verify() {
  auto in = tensorOf(getInput());
  if (failed(verifyExpertWeights(*this, in, tensorOf(getTokensPerExpert()), getGate(), getUp(),
                                 getDown())) ||
      failed(verifyFc1Output(*this, in, getGate(), getFc1Output())))
    return failure();
  return expectType(*this, "result", getResult(), in);
}

LogicalResult MoEUnpermuteOp::verify() {
  auto in = tensorOf(getInput()), result = tensorOf(getResult());
  if (failed(expectRank(*this, "input", in, 2)) || failed(expectRank(*this, "result", result, 3)) ||
      failed(verifySlots(*this, result, tensorOf(getProbs()), "slot_rows", tensorOf(getSlotRows()))))
    return failure();
  if (failed(expectShape(*this, "result", result,
                         {result.getDimSize(0), result.getDimSize(1), in.getDimSize(1)})))
    return failure();
  return expectSameElementType(*this, "input", in, "result", result);
}

LogicalResult MoEPermuteGradOp::verify() {
  auto dp = tensorOf(getDpermuted()), rows = tensorOf(getSlotRows()), dx = tensorOf(getDx());
  if (failed(expectRank(*this, "dpermuted", dp, 2)) ||
      failed(expectRank(*this, "slot_rows", rows, 3)))
    return failure();
  if (failed(expectShape(*this, "dx", dx, {rows.getDimSize(0), rows.getDimSize(1), dp.getDimSize(1)})))
    return failure();
  return expectSameElementType(*this, "dpermuted", dp, "dx", dx);
}

LogicalResult MoEGroupedMLPGradOp::verify() {
  auto in = tensorOf(getInput());
  if (failed(verifyExpertWeights(*this, in, tensorOf(getTokensPerExpert()), getGate(), getUp(),
                                 getDown())) ||
      failed(verifyFc1Output(*this, in, getGate(), getFc1Output())) ||
      failed(expectType(*this, "dy", getDy(), in)) || failed(expectType(*this, "dx", getDx(), in)) ||
      failed(expectType(*this, "dgate", getDgate(), getGate().getType())) ||
      failed(expectType(*this, "dup", getDup(), getUp().getType())))
    return failure();
  return expectType(*this, "ddown", getDdown(), getDown().getType());
}

LogicalResult MoEUnpermuteGradOp::verify() {
  auto in = tensorOf(getInput()), dy = tensorOf(getDy());
  if (failed(expectRank(*this, "input", in, 2)) || failed(expectRank(*this, "dy", dy, 3)) ||
      failed(verifySlots(*this, dy, tensorOf(getProbs()), "slot_rows", tensorOf(getSlotRows()))) ||
      failed(expectShape(*this, "dy", dy, {dy.getDimSize(0), dy.getDimSize(1), in.getDimSize(1)})) ||
      failed(expectType(*this, "dinput", getDinput(), in)))
    return failure();
  return expectType(*this, "dprobs", getDprobs(), getProbs().getType());
}

LogicalResult MoEPermuteOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                           ArrayRef<bool> needed,
                                           SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  // Only the tokens are differentiable; probs and indices decide the order.
  if (needed[0] && dys[0])
    grads[0] = MoEPermuteGradOp::create(b, getLoc(), getInput().getType(), dys[0], getSlotRows());
  return success();
}

LogicalResult MoEGroupedMLPOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                              ArrayRef<bool> needed,
                                              SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  // fc1_output is kept for the gradient only: no op differentiates it.
  if (!dys[0])
    return success();
  auto g = MoEGroupedMLPGradOp::create(b, getLoc(), getInput().getType(), getGate().getType(),
                                       getUp().getType(), getDown().getType(), getInput(),
                                       getTokensPerExpert(), getGate(), getUp(), getDown(),
                                       getFc1Output(), dys[0]);
  Value results[] = {g.getDx(), Value(), g.getDgate(), g.getDup(), g.getDdown()};
  for (int i = 0; i < 5; ++i)
    if (needed[i])
      grads[i] = results[i];
  return success();
}

LogicalResult MoEUnpermuteOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                             ArrayRef<bool> needed,
                                             SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (!dys[0])
    return success();
  auto g = MoEUnpermuteGradOp::create(b, getLoc(), getInput().getType(), getProbs().getType(),
                                      getInput(), getProbs(), getSlotRows(), dys[0]);
  if (needed[0])
    grads[0] = g.getDinput();
  if (needed[1])
    grads[1] = g.getDprobs();
  return success();
}
