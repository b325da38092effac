// Collectives of the `mt` dialect over named mesh axes (pp, dp, cp, ep, tp),
// inserted by the partitioning passes. Each rank runs the same op on its
// local values; the mesh and the rank's coordinate come from the plan.
#ifndef MT_COLLECTIVE_OPS_TD
#define MT_COLLECTIVE_OPS_TD



def Mt_AllReduceOp : Mt_Op<"all_reduce",
    [Pure, SameOperandsAndResultType,
     DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Element-wise sum, maximum or mean over the ranks of a mesh axis";
  let description = [{
    Every rank of the group along `axis` gets the element-wise reduction of
    the group's `input`s: `reduce` is `sum` (the default), `max` or `mean`
    (the sum divided by the group size). The gradient of a sum or mean is
    the identity: it reduces partial results into a value that is
    replicated over the axis, whose gradient is replicated too (Megatron's
    reduce-from-tensor-parallel region). A `max` has no gradient: it only
    feeds values treated as constants (the vocab-parallel cross-entropy's
    row maximum, as Megatron's).

    ```mlir
    %y = mt.all_reduce %partial {axis = "tp"} : tensor<4x128x64xf32>
    %g = mt.all_reduce %grad {axis = "dp", reduce = "mean"} : tensor<64x64xf32>
    %m = mt.all_reduce %row_max {axis = "tp", reduce = "max"} : tensor<4x128xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, StrAttr:$axis,
                       DefaultValuedStrAttr<StrAttr, "sum">:$reduce);
  let results = (outs Mt_FloatTensor:$result);
  let builders = [
    // The sum, or with `average` the mean: the form of the partitioning pass.
    OpBuilder<(ins "::mlir::Value":$input, "::mlir::StringAttr":$axis,
                   "::mlir::UnitAttr":$average), [{
      build($_builder, $_state, input, axis,
            $_builder.getStringAttr(average ? "mean" : "sum"));
    }]>
  ];
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective", "n axis:s? reduce=sum|max|mean", "n; n">;
}

def Mt_TPCopyOp : Mt_Op<"tp_copy",
    [Pure, SameOperandsAndResultType,
     DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Identity on a replicated value whose gradient is summed over an axis";
  let description = [{
    Marks where a value replicated over `axis` enters computations that each
    rank does on its own shard (column-parallel linears): forward it is the
    identity; its gradient is the all-reduce over the axis of the gradients
    (Megatron's copy-to-tensor-parallel region).

    ```mlir
    %x1 = mt.tp_copy %x {axis = "tp"} : tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, StrAttr:$axis);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Mt_AllGatherOp : Mt_Op<"all_gather",
    [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Concatenation over the ranks of a mesh axis along one dimension";
  let description = [{
    Every rank of the group along `axis` gets the group's `input`s
    concatenated along dimension `dim` in rank order (sequence parallelism:
    the sequence shards before a column-parallel linear). Its gradient is
    the reduce-scatter of the result's gradient.

    ```mlir
    %full = mt.all_gather %x {axis = "tp", dim = 1 : i64} : (tensor<4x64x64xf32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, StrAttr:$axis, I64Attr:$dim);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective", "axis:s? outer run parts", "outer*run; outer*run*parts">;
}

def Mt_ReduceScatterOp : Mt_Op<"reduce_scatter",
    [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Sum over the ranks of a mesh axis, each keeping one slice";
  let description = [{
    Sums the group's `input`s and gives rank r its r-th slice along `dim`
    (sequence parallelism: the partial outputs of a row-parallel linear).
    Its gradient is the all-gather of the result's gradient.

    ```mlir
    %part = mt.reduce_scatter %y {axis = "tp", dim = 1 : i64} : (tensor<4x128x64xf32>) -> tensor<4x64x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, StrAttr:$axis, I64Attr:$dim);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective", "axis:s? outer run parts", "outer*run*parts; outer*run">;
}

#endif // MT_COLLECTIVE_OPS_TD
