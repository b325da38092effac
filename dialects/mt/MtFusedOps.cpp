// Verifiers of the ops mt-fuse makes (MtFusedOps.td).
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtVerify.h"

using namespace mlir;
using namespace mt;
using namespace mt::verify;

namespace {

/// `whole` is `parts` joined along the first axis: two or more parts of
/// whole's element type and rank, equal to it but for the first axis,
/// whose sizes sum to whole's. `partsName` names the parts in messages.
LogicalResult verifyRowParts(Operation *op, RankedTensorType whole, ValueRange parts,
                             StringRef wholeName, StringRef partsName) {
  if (parts.size() < 2)
    return op->emitOpError() << "expects two or more " << partsName << ", got "
                             << parts.size();
  if (whole.getRank() < 1)
    return op->emitOpError() << "expects " << wholeName << " of rank >= 1";
  int64_t rows = 0;
  for (auto [i, part] : llvm::enumerate(parts)) {
    auto t = tensorOf(part);
    if (t.getElementType() != whole.getElementType() || t.getRank() != whole.getRank() ||
        t.getShape().drop_front() != whole.getShape().drop_front())
    {
      std::string shape = "[N";
      for (int64_t d : whole.getShape().drop_front())
        shape += ", " + std::to_string(d);
      return op->emitOpError() << "expects " << partsName << " #" << i << " of shape "
                               << shape << "] and element type " << whole.getElementType()
                               << " (as " << wholeName << " " << shapeStr(whole)
                               << " but for the first axis), got " << shapeStr(t) << " "
                               << t.getElementType();
    }
    rows += t.getDimSize(0);
  }
  if (rows != whole.getDimSize(0))
    return op->emitOpError() << "expects " << wholeName << " with " << rows
                             << " rows (the sum of the " << partsName << "'), got "
                             << shapeStr(whole);
  return success();
}

/// `packed` [..., 2F] and `half` [..., F] with the same leading axes and
/// element type.
LogicalResult verifyChunks(Operation *op, StringRef packedName, RankedTensorType packed,
                           StringRef halfName, RankedTensorType half) {
  if (packed.getRank() < 1 || packed.getShape().back() % 2 != 0)
    return op->emitOpError() << "expects " << packedName
                             << " [..., 2F] with an even last axis, got " << shapeStr(packed);
  SmallVector<int64_t> shape(packed.getShape());
  shape.back() /= 2;
  if (failed(expectSameElementType(op, packedName, packed, halfName, half)))
    return failure();
  return expectShape(op, halfName, half, shape);
}

/// `packed` [..., Q + 2K] and its parts `q` [..., Q], `k`, `v` [..., K]:
/// one element type, equal leading axes, k and v of one width.
LogicalResult verifyQKVParts(Operation *op, StringRef packedName, RankedTensorType packed,
                             ArrayRef<StringRef> names, ValueRange parts) {
  if (packed.getRank() < 1)
    return op->emitOpError() << "expects " << packedName << " of rank >= 1";
  int64_t columns = 0;
  for (auto [name, part] : llvm::zip(names, parts)) {
    RankedTensorType t = tensorOf(part);
    if (failed(expectSameElementType(op, packedName, packed, name, t)))
      return failure();
    if (t.getRank() != packed.getRank() ||
        t.getShape().drop_back() != packed.getShape().drop_back())
      return op->emitOpError() << "expects " << name << " with the leading axes of "
                               << packedName << " " << shapeStr(packed) << ", got "
                               << shapeStr(t);
    columns += t.getShape().back();
  }
  if (tensorOf(parts[1]).getShape().back() != tensorOf(parts[2]).getShape().back())
    return op->emitOpError() << "expects " << names[1] << " and " << names[2]
                             << " of one width, got " << shapeStr(tensorOf(parts[1]))
                             << " and " << shapeStr(tensorOf(parts[2]));
  if (columns != packed.getShape().back())
    return op->emitOpError() << "expects " << packedName << " with " << columns
                             << " columns (the sum of the parts'), got " << shapeStr(packed);
  return success();
}

/// `packed` [B, S, Q + 2K] and its rotated parts `q` [B, S, H, D], `k` and
/// `v` [B, S, KH, D] (Q = H·D, K = KH·D), of one element type, with the
/// rotary attributes and position ids [B, S] of `op`.
template <typename QKVRotary>
LogicalResult verifyRotaryQKV(QKVRotary op, StringRef packedName, Value packed, Value q,
                              Value k, Value v) {
  RankedTensorType p = tensorOf(packed), tq = tensorOf(q), tk = tensorOf(k);
  if (failed(expectRank(op, packedName, p, 3)) || failed(expectRank(op, "q", tq, 4)))
    return failure();
  const int64_t b = p.getDimSize(0), s = p.getDimSize(1), d = tq.getDimSize(3);
  if (failed(expectSameElementType(op, packedName, p, "q", tq)) ||
      failed(expectShape(op, "q", tq, {b, s, tq.getDimSize(2), d})) ||
      failed(expectRank(op, "k", tk, 4)) ||
      failed(expectShape(op, "k", tk, {b, s, tk.getDimSize(2), d})) ||
      failed(expectType(op, "v", v, k.getType())) ||
      failed(expectPositionIds(op, op.getPositionIds(), q)))
    return failure();
  const int64_t columns = (tq.getDimSize(2) + 2 * tk.getDimSize(2)) * d;
  if (columns != p.getDimSize(2))
    return op.emitOpError() << "expects " << packedName << " with " << columns
                            << " columns ((q heads + 2 x kv heads) x head_dim), got "
                            << shapeStr(p);
  return verifyRotaryParams(op, d);
}

} // namespace

LogicalResult SplitQKVOp::verify() {
  return verifyQKVParts(*this, "input", tensorOf(getInput()), {"q", "k", "v"},
                        getResults());
}

LogicalResult ConcatQKVOp::verify() {
  return verifyQKVParts(*this, "result", tensorOf(getResult()), {"dq", "dk", "dv"},
                        getOperands());
}

LogicalResult ConcatRowsOp::verify() {
  return verifyRowParts(*this, tensorOf(getResult()), getInputs(), "result", "inputs");
}

LogicalResult SplitRowsOp::verify() {
  return verifyRowParts(*this, tensorOf(getInput()), getResults(), "input", "results");
}

LogicalResult ChunkedSwiGLUOp::verify() {
  return verifyChunks(*this, "input", tensorOf(getInput()), "result", tensorOf(getResult()));
}

LogicalResult ChunkedSwiGLUGradOp::verify() {
  if (failed(verifyChunks(*this, "input", tensorOf(getInput()), "dy", tensorOf(getDy()))))
    return failure();
  return expectType(*this, "dx", getDx(), getInput().getType());
}

LogicalResult ChunkedSwiGLURecomputeGradOp::verify() {
  if (failed(verifyChunks(*this, "input", tensorOf(getInput()), "dy", tensorOf(getDy()))) ||
      failed(expectType(*this, "dx", getDx(), getInput().getType())))
    return failure();
  return expectType(*this, "output", getOutput(), getDy().getType());
}

LogicalResult SplitQKVRotaryOp::verify() {
  return verifyRotaryQKV(*this, "input", getInput(), getQ(), getK(), getV());
}

LogicalResult RotaryConcatQKVOp::verify() {
  return verifyRotaryQKV(*this, "result", getResult(), getDq(), getDk(), getDv());
}
