// The device mesh in the IR: `shard.grid` symbols whose `mt.axes` name their
// axes, and the local types that `#mt.sharding` gives tensors on them.
#ifndef MT_DIALECTS_MT_MTMESH_H
#define MT_DIALECTS_MT_MTMESH_H

#include "dialects/mt/MtDialect.h"

#include "mlir/IR/BuiltinOps.h"

#include <optional>

namespace mt {

/// The symbol of the mesh of attention and dense layers (axes pp, dp, cp, tp).
inline constexpr llvm::StringLiteral kMeshName = "mesh";
/// The symbol of the mesh of expert layers (axes pp, edp, ep, etp).
inline constexpr llvm::StringLiteral kExpertMeshName = "expert_mesh";

/// The axis of @mesh that tensor (and sequence) parallelism splits over.
inline constexpr llvm::StringLiteral kTensorParallelAxis = "tp";
/// The axis of @mesh that context parallelism splits the sequence over.
inline constexpr llvm::StringLiteral kContextParallelAxis = "cp";

/// The `shard.grid` that `name` refers to from `from`, or null. Pass
/// `symbols` in loops: lookups are then cached.
mlir::shard::GridOp lookupGrid(mlir::Operation *from, mlir::FlatSymbolRefAttr name,
                               mlir::SymbolTableCollection *symbols = nullptr);

/// The size of `axis` in `grid` (from its `mt.axes`), or none when the grid
/// has no axis of that name.
std::optional<int64_t> axisSize(mlir::shard::GridOp grid, llvm::StringRef axis);

/// The names of `grid`'s axes, outermost first ("a, b, c"), for messages.
std::string axisList(mlir::shard::GridOp grid);

/// Checks `sharding` for a tensor of `type`: one axis list per dimension,
/// every axis one of `grid`'s, each dimension divisible by the product of
/// its axes' sizes. Diagnostics name the axis or dimension and the mesh.
mlir::LogicalResult verifySharding(llvm::function_ref<mlir::InFlightDiagnostic()> emitError,
                                   ShardingAttr sharding, mlir::RankedTensorType type,
                                   mlir::shard::GridOp grid);

/// The slice of `full` one rank holds under `sharding` on `grid`: each split
/// dimension divided by the product of its axes' sizes.
mlir::RankedTensorType localType(mlir::RankedTensorType full, ShardingAttr sharding,
                                 mlir::shard::GridOp grid);

/// Creates `shard.grid @name(shape = sizes) {mt.axes = axes}` at the
/// builder's insertion point.
mlir::shard::GridOp createGrid(mlir::OpBuilder &builder, mlir::Location loc, llvm::StringRef name,
                               llvm::ArrayRef<llvm::StringRef> axes,
                               llvm::ArrayRef<int64_t> sizes);

/// Adds `shard.grid @mesh` with `denseSizes` (in plan::kDenseAxes order)
/// at the start of `module` and, when `expertSizes` is not empty,
/// `@expert_mesh` with them (plan::kExpertAxes order). Fails, naming it,
/// when the module has a mesh already.
mlir::LogicalResult createMeshes(mlir::ModuleOp module, llvm::ArrayRef<int64_t> denseSizes,
                                 llvm::ArrayRef<int64_t> expertSizes);

} // namespace mt

#endif // MT_DIALECTS_MT_MTMESH_H
