// Shared shape checks of the mt op verifiers; messages quote the values.
#ifndef MT_DIALECTS_MT_MTVERIFY_H
#define MT_DIALECTS_MT_MTVERIFY_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"
#include "llvm/ADT/STLExtras.h"

#include <string>

namespace mt::verify {

using namespace mlir;

inline RankedTensorType tensorOf(Value v) { return cast<RankedTensorType>(v.getType()); }

/// Prints a shape as "[4, 128, 64]" for diagnostics.
inline std::string shapeStr(RankedTensorType t) {
  std::string s = "[";
  llvm::interleave(
      t.getShape(), [&](int64_t d) { s += std::to_string(d); },
      [&] { s += ", "; });
  return s + "]";
}

inline LogicalResult expectRank(Operation *op, StringRef name, RankedTensorType t,
                         int64_t rank) {
  if (t.getRank() == rank)
    return success();
  return op->emitOpError() << "expects " << name << " of rank " << rank
                           << ", got " << shapeStr(t);
}

inline LogicalResult expectSameElementType(Operation *op, StringRef a,
                                    RankedTensorType ta, StringRef b,
                                    RankedTensorType tb) {
  if (ta.getElementType() == tb.getElementType())
    return success();
  return op->emitOpError() << "expects " << a << " and " << b
                           << " to have one element type, got "
                           << ta.getElementType() << " and "
                           << tb.getElementType();
}

inline LogicalResult expectShape(Operation *op, StringRef name, RankedTensorType t,
                          ArrayRef<int64_t> shape) {
  if (t.getShape() == shape)
    return success();
  auto expected = RankedTensorType::get(shape, t.getElementType());
  return op->emitOpError() << "expects " << name << " of shape "
                           << shapeStr(expected) << ", got " << shapeStr(t);
}

/// A per-channel weight of a norm: rank 1, size of the input's last axis.
inline LogicalResult verifyNormWeight(Operation *op, StringRef name,
                               RankedTensorType input, RankedTensorType w) {
  if (failed(expectRank(op, name, w, 1)))
    return failure();
  int64_t last = input.getShape().back();
  if (w.getDimSize(0) != last)
    return op->emitOpError() << "expects " << name << " of size " << last
                             << " (the last axis of input " << shapeStr(input)
                             << "), got " << shapeStr(w);
  return expectSameElementType(op, "input", input, name, w);
}

inline LogicalResult verifyNorm(Operation *op, Value input, Value weight, Value result,
                         double eps) {
  auto in = tensorOf(input);
  if (in.getRank() < 1)
    return op->emitOpError() << "expects input of rank >= 1";
  if (!(eps > 0.0))
    return op->emitOpError() << "expects eps > 0, got " << eps;
  if (failed(verifyNormWeight(op, "weight", in, tensorOf(weight))))
    return failure();
  if (tensorOf(result) != in)
    return op->emitOpError() << "expects result type " << in << ", got "
                             << result.getType();
  return success();
}


/// `value` must have exactly the type `expected` (a gradient has the type of
/// what it is the gradient of).
inline LogicalResult expectType(Operation *op, StringRef name, Value value,
                                Type expected) {
  if (value.getType() == expected)
    return success();
  return op->emitOpError() << "expects " << name << " of type " << expected
                           << ", got " << value.getType();
}

/// Optional `position_ids` of rotary and attention ops: [B, S] of the
/// [B, S, heads, head_dim] tensor `x` (absent: positions are the indices).
inline LogicalResult expectPositionIds(Operation *op, Value positions, Value x) {
  auto t = tensorOf(x);
  if (!positions || t.getRank() != 4)
    return success();
  return expectShape(op, "position_ids", tensorOf(positions),
                     {t.getDimSize(0), t.getDimSize(1)});
}

/// The rotary attributes of `op` (mt.rotary and the fused ops that apply
/// it): an even `headDim`, theta > 0, and all or none of Llama 3.1's
/// scaling attributes, high_freq_factor > low_freq_factor.
template <typename RotaryLike> LogicalResult verifyRotaryParams(RotaryLike op, int64_t headDim) {
  if (headDim % 2 != 0)
    return op.emitOpError() << "expects an even head_dim, got " << headDim;
  if (!(op.getTheta().convertToDouble() > 0.0))
    return op.emitOpError() << "expects theta > 0, got " << op.getTheta().convertToDouble();
  int present = int(op.getScalingFactor().has_value()) + int(op.getLowFreqFactor().has_value()) +
                int(op.getHighFreqFactor().has_value()) +
                int(op.getOriginalMaxPosition().has_value());
  if (present != 0 && present != 4)
    return op.emitOpError() << "expects all or none of scaling_factor, low_freq_factor, "
                               "high_freq_factor, original_max_position (llama3 rope "
                               "scaling), got "
                            << present << " of 4";
  if (present == 4 && !(*op.getHighFreqFactor() > *op.getLowFreqFactor()))
    return op.emitOpError() << "expects high_freq_factor ("
                            << op.getHighFreqFactor()->convertToDouble()
                            << ") > low_freq_factor ("
                            << op.getLowFreqFactor()->convertToDouble() << ")";
  return success();
}

/// `axis` must name an axis of the module's meshes (`shard.grid` with
/// `mt.axes`), or of Megatron's declared axes (runtime/plan/MeshAxes.h) in
/// IR without a mesh yet. Defined in MtCollectiveOps.cpp.
LogicalResult expectMeshAxis(Operation *op, StringRef axis);

/// The per-token rows of the vocab-parallel cross-entropy: each of `rows`
/// is f32 of shape [B, S], the first two dimensions of `logits` [B, S, V].
inline LogicalResult verifyVocabRows(Operation *op, Value logits,
                                     ArrayRef<std::pair<StringRef, Value>> rows) {
  auto l = tensorOf(logits);
  if (failed(expectRank(op, "logits", l, 3)))
    return failure();
  SmallVector<int64_t> tokens = {l.getDimSize(0), l.getDimSize(1)};
  for (auto [name, v] : rows)
    if (failed(expectShape(op, name, tensorOf(v), tokens)))
      return failure();
  return success();
}

/// A `valid_vocab` (the vocabulary before tp padding) must be positive.
inline LogicalResult expectValidVocab(Operation *op, std::optional<uint64_t> valid) {
  if (!valid || int64_t(*valid) > 0)
    return success();
  return op->emitOpError() << "expects valid_vocab > 0, got " << int64_t(*valid);
}

/// A router's token counts per load-balancing group: [B, experts] for the
/// B sequences of `input` [B, S, H] with seq_aux_loss, else [1, experts].
inline SmallVector<int64_t> routerCountsShape(RankedTensorType input, int64_t experts,
                                              std::optional<StringRef> balancing) {
  return {balancing && *balancing == "seq_aux_loss" ? input.getDimSize(0) : 1, experts};
}

/// A router's optional `token_counts` (of that shape) and `token_shards`
/// (>= 1, above 1 only with the counts of the whole micro-batch).
inline LogicalResult verifyRouterCounts(Operation *op, Value counts, RankedTensorType input,
                                        int64_t experts, std::optional<StringRef> balancing,
                                        std::optional<uint64_t> shards) {
  if (shards && int64_t(*shards) < 1)
    return op->emitOpError() << "expects token_shards >= 1, got " << int64_t(*shards);
  if (shards && *shards > 1 && !counts)
    return op->emitOpError() << "has token_shards " << *shards
                             << " without the token_counts of the whole micro-batch";
  if (!counts)
    return success();
  return expectShape(op, "token_counts", tensorOf(counts),
                     routerCountsShape(input, experts, balancing));
}

} // namespace mt::verify

#endif // MT_DIALECTS_MT_MTVERIFY_H
