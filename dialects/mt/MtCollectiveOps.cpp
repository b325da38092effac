// Verifiers and gradients of the collective ops.
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtVerify.h"
#include "runtime/plan/MeshAxes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace mt;
using mt::verify::expectMeshAxis;

/// `axis` names an axis of the module's meshes (`shard.grid` with
/// `mt.axes`), or of Megatron's declared axes in IR without a mesh yet.
LogicalResult mt::verify::expectMeshAxis(Operation *op, StringRef axis) {
  std::string known;
  bool hasMesh = false;
  if (auto module = op->getParentOfType<ModuleOp>())
    for (auto grid : module.getOps<shard::GridOp>()) {
      if (!grid->hasAttr(MtDialect::kAxesAttrName))
        continue;
      if (axisSize(grid, axis))
        return success();
      hasMesh = true;
      known += (known.empty() ? "" : "; ") + axisList(grid);
    }
  if (!hasMesh) {
    SmallVector<StringRef> declared;
    for (const auto *axes : {&plan::kDenseAxes, &plan::kExpertAxes})
      for (std::string_view a : *axes)
        if (!llvm::is_contained(declared, StringRef(a.data(), a.size())))
          declared.push_back(StringRef(a.data(), a.size()));
    if (llvm::is_contained(declared, axis))
      return success();
    known = llvm::join(declared, ", ");
  }
  return op->emitOpError() << "expects a mesh axis (" << known << "), got '" << axis << "'";
}

/// `big` is `small` repeated along `dim` a whole number of times.
static LogicalResult verifyGathered(Operation *op, StringRef axis, int64_t dim,
                             RankedTensorType small, RankedTensorType big) {
  if (failed(expectMeshAxis(op, axis)))
    return failure();
  if (small.getElementType() != big.getElementType() || small.getRank() != big.getRank() ||
      dim < 0 || dim >= small.getRank())
    return op->emitOpError() << "expects tensors of one rank and element type, and "
                                "dim in range, got "
                             << small << ", " << big << ", dim " << dim;
  for (int64_t i = 0; i < small.getRank(); ++i) {
    bool ok = i == dim ? big.getDimSize(i) % small.getDimSize(i) == 0
                       : big.getDimSize(i) == small.getDimSize(i);
    if (!ok)
      return op->emitOpError() << "expects " << big << " to be " << small
                               << " repeated along dimension " << dim;
  }
  return success();
}

LogicalResult AllReduceOp::verify() {
  StringRef reduce = getReduce();
  if (reduce != "sum" && reduce != "max" && reduce != "mean")
    return emitOpError() << "expects reduce sum, max or mean, got '" << reduce << "'";
  // The embedding group is pp's first and last stage: a sum of a tied
  // parameter's two gradient terms (mt-pipeline-split's).
  if (getAxis() == StringRef(plan::kTiedEmbeddingGroup)) {
    if (reduce != "sum")
      return emitOpError() << "over '" << getAxis() << "' expects reduce sum, got '" << reduce
                           << "'";
    return expectMeshAxis(*this, "pp");
  }
  return expectMeshAxis(*this, getAxis());
}

LogicalResult StageTransferOp::verify() {
  const int64_t from = int64_t(getFrom()), to = int64_t(getTo());
  if (from < 0 || to < 0 || (to != from + 1 && to + 1 != from))
    return emitOpError() << "expects adjacent virtual stages (to = from + 1 or from - 1, both "
                            ">= 0), got from " << from << " and to " << to;
  return success();
}

LogicalResult AllGatherOp::verify() {
  auto in = cast<RankedTensorType>(getInput().getType());
  if (failed(verifyGathered(*this, getAxis(), getDim(), in,
                            cast<RankedTensorType>(getResult().getType()))))
    return failure();
  if (getLoadBalanced() && in.getDimSize(getDim()) % 2 != 0)
    return emitOpError() << "expects an even dimension " << getDim() << " ("
                         << in.getDimSize(getDim()) << ", two chunks) with load_balanced";
  return success();
}

LogicalResult ReduceScatterOp::verify() {
  if (getReduce() != "sum" && getReduce() != "mean")
    return emitOpError() << "expects reduce sum or mean, got '" << getReduce() << "'";
  return verifyGathered(*this, getAxis(), getDim(), cast<RankedTensorType>(getResult().getType()),
                        cast<RankedTensorType>(getInput().getType()));
}

LogicalResult AllSliceOp::verify() {
  return verifyGathered(*this, getAxis(), getDim(), cast<RankedTensorType>(getResult().getType()),
                        cast<RankedTensorType>(getInput().getType()));
}

LogicalResult AllGatherOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  grads.assign(1, Value());
  if (!needed[0])
    return success();
  if (getLoadBalanced()) // only position ids travel so (mt-partition-cp's a2a)
    return emitOpError() << "with load_balanced has no gradient";
  if (getSliceGrad())
    grads[0] = AllSliceOp::create(b, getLoc(), getInput().getType(), dys[0], getAxisAttr(),
                                  getDimAttr());
  else
    grads[0] = ReduceScatterOp::create(b, getLoc(), getInput().getType(), dys[0],
                                       getAxisAttr(), getDimAttr());
  return success();
}

LogicalResult AllSliceOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                         ArrayRef<bool> needed,
                                         SmallVectorImpl<Value> &grads) {
  grads.assign(1, Value());
  if (needed[0])
    grads[0] = AllGatherOp::create(b, getLoc(), getInput().getType(), dys[0], getAxisAttr(),
                                   getDimAttr(), b.getUnitAttr());
  return success();
}

LogicalResult RingShiftOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  grads.assign(1, Value());
  if (needed[0])
    grads[0] = RingShiftOp::create(b, getLoc(), dys[0], getAxisAttr(),
                                   getReverse() ? UnitAttr() : b.getUnitAttr());
  return success();
}

LogicalResult ReduceScatterOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                              ArrayRef<bool> needed,
                                              SmallVectorImpl<Value> &grads) {
  grads.assign(1, Value());
  if (getReduce() != "sum" && needed[0])
    return emitOpError() << "has no gradient with reduce '" << getReduce()
                         << "': it only reduces gradients in @optimizer_step";
  if (needed[0])
    grads[0] = AllGatherOp::create(b, getLoc(), getInput().getType(), dys[0], getAxisAttr(),
                                   getDimAttr());
  return success();
}
LogicalResult TPCopyOp::verify() { return expectMeshAxis(*this, getAxis()); }

LogicalResult AllReduceOp::buildGradients(OpBuilder &, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  if (getReduce() == "max" && needed[0])
    return emitOpError() << "has no gradient: a maximum over '" << getAxis()
                         << "' feeds only values treated as constants";
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
    grads[0] = AllReduceOp::create(b, getLoc(), dys[0], getAxisAttr(), b.getStringAttr("sum"));
  return success();
}

LogicalResult AllToAllVOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())))
    return failure();
  auto in = verify::tensorOf(getInput()), out = verify::tensorOf(getResult());
  auto send = verify::tensorOf(getSendCounts()), recv = verify::tensorOf(getRecvCounts());
  if (in.getRank() < 1 || out.getRank() != in.getRank() ||
      in.getElementType() != out.getElementType() ||
      in.getShape().drop_front() != out.getShape().drop_front())
    return emitOpError() << "expects input and result of one element type and one row shape, "
                            "got "
                         << in << " and " << out;
  if (failed(verify::expectRank(*this, "send_counts", send, 1)) ||
      failed(verify::expectShape(*this, "recv_counts", recv, send.getShape())))
    return failure();
  // The peers are the ranks of the axis on the module's mesh, when it has one.
  if (auto module = (*this)->getParentOfType<ModuleOp>())
    for (auto grid : module.getOps<shard::GridOp>())
      if (std::optional<int64_t> size = axisSize(grid, getAxis());
          size && *size != send.getDimSize(0))
        return emitOpError() << "expects one count per rank of axis '" << getAxis() << "' ("
                             << *size << "), got " << send.getDimSize(0);
  return success();
}

LogicalResult AllToAllVOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  grads.assign(getNumOperands(), Value());
  if (needed[0] && dys[0])
    grads[0] = AllToAllVOp::create(b, getLoc(), getInput().getType(), dys[0], getRecvCounts(),
                                   getSendCounts(), getAxisAttr());
  return success();
}

LogicalResult AllToAllOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())))
    return failure();
  auto in = verify::tensorOf(getInput()), out = verify::tensorOf(getResult());
  const int64_t rank = in.getRank(), split = getSplitDim(), concat = getConcatDim();
  if (out.getRank() != rank || in.getElementType() != out.getElementType() || split < 0 ||
      split >= rank || concat < 0 || concat >= rank || split == concat)
    return emitOpError() << "expects input and result of one rank and element type, and two "
                            "distinct dimensions in range, got "
                         << in << ", " << out << ", split_dim " << split << ", concat_dim "
                         << concat;
  // n ranks: the split dimension shrinks by n, the concat dimension grows by n.
  const int64_t n = out.getDimSize(concat) / std::max<int64_t>(in.getDimSize(concat), 1);
  for (int64_t i = 0; i < rank; ++i) {
    int64_t expected = i == split ? in.getDimSize(i) / std::max<int64_t>(n, 1)
                       : i == concat ? in.getDimSize(i) * n
                                     : in.getDimSize(i);
    if (n < 1 || out.getDimSize(i) != expected || (i == split && in.getDimSize(i) % n != 0))
      return emitOpError() << "expects " << out << " to be " << in << " with dimension "
                           << split << " split and dimension " << concat
                           << " gathered over the same number of ranks";
  }
  if (auto module = (*this)->getParentOfType<ModuleOp>())
    for (auto grid : module.getOps<shard::GridOp>())
      if (std::optional<int64_t> size = axisSize(grid, getAxis()); size && *size != n)
        return emitOpError() << "exchanges " << n << " pieces, expected one per rank of axis '"
                             << getAxis() << "' (" << *size << ")";
  if (std::optional<int64_t> balanced = getLoadBalancedDim()) {
    if (*balanced != split && *balanced != concat)
      return emitOpError() << "expects load_balanced_dim to be split_dim (" << split
                           << ") or concat_dim (" << concat << "), got " << *balanced;
    int64_t whole = *balanced == split ? in.getDimSize(split) : out.getDimSize(concat);
    if (whole % (2 * n) != 0)
      return emitOpError() << "expects the load-balanced dimension (" << whole
                           << ") divisible by 2 x " << n << " chunks";
  }
  return success();
}

LogicalResult AllToAllOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                         ArrayRef<bool> needed,
                                         SmallVectorImpl<Value> &grads) {
  grads.assign(1, Value());
  if (needed[0])
    grads[0] = AllToAllOp::create(b, getLoc(), getInput().getType(), dys[0], getAxisAttr(),
                                  getConcatDimAttr(), getSplitDimAttr(),
                                  getLoadBalancedDimAttr());
  return success();
}
