// Attributes of the `mt` dialect: shardings of tensors over named mesh axes.
#ifndef MT_ATTRIBUTES_TD
#define MT_ATTRIBUTES_TD

include "dialects/mt/MtDialect.td"
include "mlir/IR/AttrTypeBase.td"

def Mt_ShardingAttr : AttrDef<Mt_Dialect, "Sharding"> {
  let mnemonic = "sharding";
  let summary = "How each dimension of a tensor is split over named mesh axes";
  let description = [{
    `grid` names the mesh, a `shard.grid` whose `mt.axes` names its axes
    (`@mesh`: pp, dp, cp, tp; `@expert_mesh`: pp, edp, ep, etp).
    `split_axes` has one list per tensor dimension: the axes that dimension
    is split over, major to minor (a rank's slice along it is index
    Σ coordinate(a) · Π sizes of the axes after a). An empty list: the
    dimension is whole on every rank. An axis splits at most one dimension,
    and every split dimension must be divisible by the product of its axes'
    sizes; both are checked where the sharding is used (`mt.param`), against
    the mesh. This is the named-axis form of the upstream `shard` dialect's
    `split_axes` (which indexes the grid's axes by position).

    ```mlir
    #mt.sharding<@mesh, [[], ["tp"]]>                         // row-parallel linear weight
    #mt.sharding<@expert_mesh, [["ep"], ["etp"], []]>         // grouped expert weight
    ```
  }];
  let parameters = (ins "::mlir::FlatSymbolRefAttr":$grid,
                        "::mlir::ArrayAttr":$split_axes);
  let assemblyFormat = "`<` $grid `,` $split_axes `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The axes dimension `dim` is split over, major to minor.
    ::llvm::SmallVector<::llvm::StringRef> getAxes(unsigned dim) const;
    /// Whether any dimension is split.
    bool isSplit() const;
    /// A sharding of `rank` dimensions that splits `dim` over `axis`.
    static ShardingAttr split(::mlir::MLIRContext *context, ::llvm::StringRef grid,
                              int64_t rank, int64_t dim, ::llvm::StringRef axis);
  }];
}

#endif // MT_ATTRIBUTES_TD
