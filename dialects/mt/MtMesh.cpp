// The mesh in the IR: `mt.axes` on `shard.grid`, `#mt.sharding` and the
// local types of sharded tensors.
#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtVerify.h"

#include "runtime/plan/MeshAxes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/InterleavedRange.h"

using namespace mlir;
using namespace mt;

namespace {

ArrayAttr axesOf(shard::GridOp grid) {
  return grid->getAttrOfType<ArrayAttr>(MtDialect::kAxesAttrName);
}

/// "a, b, c" of a declared axis order, for messages.
template <size_t N> std::string joined(const std::array<std::string_view, N> &axes) {
  std::string s;
  for (std::string_view a : axes)
    s += (s.empty() ? "" : ", ") + std::string(a);
  return s;
}

template <size_t N> bool sameNames(ArrayAttr names, const std::array<std::string_view, N> &axes) {
  if (names.size() != N)
    return false;
  for (auto [attr, axis] : llvm::zip(names, axes))
    if (cast<StringAttr>(attr).getValue() != llvm::StringRef(axis.data(), axis.size()))
      return false;
  return true;
}

int64_t product(ArrayRef<int64_t> sizes) {
  int64_t n = 1;
  for (int64_t s : sizes)
    n *= s;
  return n;
}

/// The expert mesh folds over the dense one: same pp, same ranks (Megatron
/// MoE parallel folding: ep · etp · edp = tp · cp · dp).
LogicalResult verifyFolding(Operation *op, shard::GridOp expert) {
  Operation *table = op->getParentOp();
  if (!table)
    return success();
  for (auto dense : table->getRegion(0).getOps<shard::GridOp>()) {
    ArrayAttr names = axesOf(dense);
    if (!names || !sameNames(names, plan::kDenseAxes))
      continue;
    ArrayRef<int64_t> d = dense.getShape(), e = expert.getShape();
    if (d[0] != e[0] || product(d) != product(e))
      return op->emitError() << "expects the expert mesh (" << joined(plan::kExpertAxes)
                             << ") = (" << llvm::interleaved(e) << ") to fold over the mesh ("
                             << joined(plan::kDenseAxes) << ") = (" << llvm::interleaved(d)
                             << "): the same pp and edp x ep x etp = dp x cp x tp";
  }
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// mt.axes
//===----------------------------------------------------------------------===//

namespace mt {

/// Checks `mt.axes` on `op`: a `shard.grid` with static sizes whose axes are
/// Megatron-Core's dense or expert axes in their order.
LogicalResult verifyMeshAxesAttr(Operation *op, Attribute value) {
  auto grid = dyn_cast<shard::GridOp>(op);
  auto names = dyn_cast<ArrayAttr>(value);
  if (!grid || !names || !llvm::all_of(names, [](Attribute a) { return isa<StringAttr>(a); }))
    return op->emitError() << "expects '" << MtDialect::kAxesAttrName
                           << "' to be a list of axis names on a 'shard.grid'";
  bool dense = sameNames(names, plan::kDenseAxes);
  if (!dense && !sameNames(names, plan::kExpertAxes))
    return op->emitError() << "expects the axes of a mesh to be (" << joined(plan::kDenseAxes)
                           << ") or, for expert layers, (" << joined(plan::kExpertAxes)
                           << "), got " << names;
  if (int64_t(names.size()) != grid.getRank())
    return op->emitError() << "names " << names.size() << " axes of a grid of rank "
                           << grid.getRank();
  for (auto [name, size] : llvm::zip(names, grid.getShape()))
    if (size < 1)
      return op->emitError() << "expects a static size >= 1 for mesh axis "
                             << cast<StringAttr>(name);
  return dense ? success() : verifyFolding(op, grid);
}

} // namespace mt

//===----------------------------------------------------------------------===//
// #mt.sharding
//===----------------------------------------------------------------------===//

LogicalResult ShardingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   FlatSymbolRefAttr grid, ArrayAttr splitAxes) {
  llvm::StringSet<> seen;
  for (auto [dim, axes] : llvm::enumerate(splitAxes)) {
    auto list = dyn_cast<ArrayAttr>(axes);
    if (!list)
      return emitError() << "expects one list of axis names per dimension, got " << axes
                         << " for dimension " << dim;
    for (Attribute a : list) {
      auto axis = dyn_cast<StringAttr>(a);
      if (!axis)
        return emitError() << "expects axis names, got " << a << " for dimension " << dim;
      if (!seen.insert(axis.getValue()).second)
        return emitError() << "splits over mesh axis " << axis
                           << " twice (an axis splits at most one dimension, once)";
    }
  }
  return success();
}

SmallVector<StringRef> ShardingAttr::getAxes(unsigned dim) const {
  SmallVector<StringRef> axes;
  for (Attribute a : cast<ArrayAttr>(getSplitAxes()[dim]))
    axes.push_back(cast<StringAttr>(a).getValue());
  return axes;
}

bool ShardingAttr::isSplit() const {
  return llvm::any_of(getSplitAxes(), [](Attribute a) { return !cast<ArrayAttr>(a).empty(); });
}

ShardingAttr ShardingAttr::split(MLIRContext *context, StringRef grid, int64_t rank, int64_t dim,
                                 StringRef axis) {
  Builder b(context);
  SmallVector<Attribute> dims(rank, b.getArrayAttr({}));
  dims[dim] = b.getStrArrayAttr({axis});
  return get(context, FlatSymbolRefAttr::get(context, grid), b.getArrayAttr(dims));
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

shard::GridOp mt::lookupGrid(Operation *from, FlatSymbolRefAttr name,
                             SymbolTableCollection *symbols) {
  if (symbols)
    return symbols->lookupNearestSymbolFrom<shard::GridOp>(from, name);
  return SymbolTable::lookupNearestSymbolFrom<shard::GridOp>(from, name);
}

std::optional<int64_t> mt::axisSize(shard::GridOp grid, StringRef axis) {
  ArrayAttr names = axesOf(grid);
  if (!names)
    return std::nullopt;
  for (auto [name, size] : llvm::zip(names, grid.getShape()))
    if (cast<StringAttr>(name).getValue() == axis)
      return size;
  return std::nullopt;
}

std::string mt::axisList(shard::GridOp grid) {
  std::string s;
  if (ArrayAttr names = axesOf(grid))
    for (Attribute a : names)
      s += (s.empty() ? "" : ", ") + cast<StringAttr>(a).getValue().str();
  return s;
}

LogicalResult mt::verifySharding(function_ref<InFlightDiagnostic()> emitError,
                                 ShardingAttr sharding, RankedTensorType type,
                                 shard::GridOp grid) {
  if (!grid || !axesOf(grid))
    return emitError() << "expects " << sharding.getGrid()
                       << " to be a 'shard.grid' with '" << MtDialect::kAxesAttrName << "'";
  if (int64_t(sharding.getSplitAxes().size()) != type.getRank())
    return emitError() << "expects a sharding with one axis list per dimension of "
                       << verify::shapeStr(type) << ", got " << sharding.getSplitAxes().size();
  for (int64_t dim = 0; dim < type.getRank(); ++dim) {
    int64_t parts = 1;
    for (StringRef axis : sharding.getAxes(dim)) {
      std::optional<int64_t> size = axisSize(grid, axis);
      if (!size)
        return emitError() << "splits dimension " << dim << " over '" << axis
                           << "', which is not an axis of mesh " << sharding.getGrid() << " ("
                           << axisList(grid) << ")";
      parts *= *size;
    }
    if (type.getDimSize(dim) % parts != 0)
      return emitError() << "cannot split dimension " << dim << " of " << verify::shapeStr(type)
                         << " (" << type.getDimSize(dim) << ") into " << parts
                         << " parts over mesh axes " << sharding.getSplitAxes()[dim];
  }
  return success();
}

RankedTensorType mt::localType(RankedTensorType full, ShardingAttr sharding,
                               shard::GridOp grid) {
  if (!grid || int64_t(sharding.getSplitAxes().size()) != full.getRank())
    return full; // invalid: the verifier of the user says why
  SmallVector<int64_t> shape(full.getShape());
  for (int64_t dim = 0; dim < full.getRank(); ++dim)
    for (StringRef axis : sharding.getAxes(dim))
      shape[dim] /= axisSize(grid, axis).value_or(1);
  return RankedTensorType::get(shape, full.getElementType());
}

shard::GridOp mt::createGrid(OpBuilder &builder, Location loc, StringRef name,
                             ArrayRef<StringRef> axes, ArrayRef<int64_t> sizes) {
  auto grid = shard::GridOp::create(builder, loc, name, sizes);
  grid->setAttr(MtDialect::kAxesAttrName, builder.getStrArrayAttr(axes));
  return grid;
}

LogicalResult mt::createMeshes(ModuleOp module, ArrayRef<int64_t> denseSizes,
                               ArrayRef<int64_t> expertSizes) {
  for (StringRef name : {kMeshName, kExpertMeshName})
    if (Operation *existing = module.lookupSymbol(name))
      return existing->emitError() << "the model declares @" << name
                                   << " already: the mesh comes from the parallel layout";
  auto names = [](const auto &axes) {
    SmallVector<StringRef> out;
    for (std::string_view a : axes)
      out.push_back(StringRef(a.data(), a.size()));
    return out;
  };
  OpBuilder b(module.getContext());
  b.setInsertionPointToStart(module.getBody());
  createGrid(b, module.getLoc(), kMeshName, names(plan::kDenseAxes), denseSizes);
  if (!expertSizes.empty())
    createGrid(b, module.getLoc(), kExpertMeshName, names(plan::kExpertAxes), expertSizes);
  return success();
}
