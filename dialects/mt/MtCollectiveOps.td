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
    the reduce-scatter of the result's gradient (Megatron-Core's
    gather_from_sequence_parallel_region); with `slice_grad`, where every
    rank computes the whole result's gradient (a replicated region, as the
    MoE router's tokens under tp), this rank's slice of it, mt.all_slice
    (gather_from_tensor_model_parallel_region).

    `deferred` (overlap_param_gather, set by mt-build-optimizer on the
    distributed optimizer's gathers of updated weights; the plan
    instruction's `deferred`): the backends may run it behind the next
    step's forward, as long as everything that reads the gathered weights
    (the next forward, a checkpoint) waits for it; the values are the same.

    `load_balanced` (over n ranks): along `dim` the result is in context
    parallelism's load-balanced order (`mt.rotary`): the piece of rank r
    fills chunks r and 2·n-1-r of 2·n, giving the whole sequence in its
    true order. It gathers the packed documents' position ids (i32, not
    differentiated) for the whole-sequence attention of cp_comm_type a2a.

    ```mlir
    %full = mt.all_gather %x {axis = "tp", dim = 1 : i64} : (tensor<4x64x64xf32>) -> tensor<4x128x64xf32>
    %tokens = mt.all_gather %y {axis = "tp", dim = 1 : i64, slice_grad} : (tensor<4x64x64xf32>) -> tensor<4x128x64xf32>
    %bucket = mt.all_gather %shard {axis = "dp", deferred, dim = 0 : i64} : (tensor<16xf32>) -> tensor<32xf32>
    %pos = mt.all_gather %local_pos {axis = "cp", dim = 1 : i64, load_balanced} : (tensor<2x64xi32>) -> tensor<2x128xi32>
    ```
  }];
  let arguments = (ins AnyTypeOf<[Mt_FloatTensor, RankedTensorOf<[I32]>]>:$input, StrAttr:$axis,
                       I64Attr:$dim, UnitAttr:$slice_grad, UnitAttr:$deferred,
                       UnitAttr:$load_balanced);
  let results = (outs AnyTypeOf<[Mt_FloatTensor, RankedTensorOf<[I32]>]>:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective", "axis:s? outer run parts deferred? load_balanced?",
      "outer*run; outer*run*parts">;
}

def Mt_ReduceScatterOp : Mt_Op<"reduce_scatter",
    [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Sum over the ranks of a mesh axis, each keeping one slice";
  let description = [{
    Sums the group's `input`s and gives rank r its r-th slice along `dim`
    (sequence parallelism: the partial outputs of a row-parallel linear).
    With `reduce` = `mean` the sum is divided by the group size (the
    distributed optimizer's gradient reduction over dp, Megatron's
    average_in_collective). Its gradient is the all-gather of the result's
    gradient.

    ```mlir
    %part = mt.reduce_scatter %y {axis = "tp", dim = 1 : i64} : (tensor<4x128x64xf32>) -> tensor<4x64x64xf32>
    %shard = mt.reduce_scatter %bucket {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<8192xf32>) -> tensor<4096xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, StrAttr:$axis, I64Attr:$dim,
                       DefaultValuedStrAttr<StrAttr, "sum">:$reduce);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective", "axis:s? outer run parts reduce=sum|mean",
      "outer*run*parts; outer*run">;
}

def Mt_RingShiftOp : Mt_Op<"ring_shift",
    [Pure, SameOperandsAndResultType,
     DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Each rank's value passed to the next rank of a mesh axis's ring";
  let description = [{
    The rank at coordinate r of `axis` (n ranks) sends `input` to the rank
    at r + 1 mod n and gets, as its result, the input of the rank at
    r - 1 mod n; with `reverse`, the other way round. Ring attention passes
    keys and values on with it (Megatron-Core's cp_comm_type p2p). Its
    gradient is the shift the other way.

    ```mlir
    %k1 = mt.ring_shift %k0 {axis = "cp"} : tensor<4x64x2x16xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, StrAttr:$axis, UnitAttr:$reverse);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let instruction = Mt_Instruction<"Collective", "n axis:s reverse?", "n; n">;
}

def Mt_AllSliceOp : Mt_Op<"all_slice",
    [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "This rank's slice along one dimension of a value replicated over a mesh axis";
  let description = [{
    The inverse of `mt.all_gather`, without communication (upstream
    `shard.all_slice`): `input` is replicated over the ranks of `axis`, and
    rank r keeps its r-th of the equal slices along `dim`. The distributed
    optimizer takes the slice of a parameter bucket that the rank updates;
    tensor parallelism takes each rank's tokens of a replicated MoE layer
    input and of its routing (i32 expert indices too: integers have no
    gradient). The gradient is the all-gather of the slices' gradients
    (Megatron-Core's scatter_to_tensor_model_parallel_region), replicated.

    ```mlir
    %mine = mt.all_slice %params {axis = "dp", dim = 0 : i64} : (tensor<8192xf32>) -> tensor<4096xf32>
    ```
  }];
  let arguments = (ins AnyTypeOf<[Mt_FloatTensor, RankedTensorOf<[I32]>]>:$input, StrAttr:$axis,
                       I64Attr:$dim);
  let results = (outs AnyTypeOf<[Mt_FloatTensor, RankedTensorOf<[I32]>]>:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective", "axis:s? outer run parts", "outer*run*parts; outer*run">;
}

def Mt_AllToAllVOp : Mt_Op<"all_to_all_v",
    [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Rows exchanged between the ranks of a mesh axis, a count per peer";
  let description = [{
    Megatron-Core's all-to-all of the MoE alltoall token dispatcher (and of
    its combine, the same op with the counts swapped). `input` [N, H...]
    holds P consecutive blocks of rows, block p (`send_counts`[p] rows, from
    row 0) going to the rank at coordinate p on `axis` (P ranks);
    `result` [M, H...] gets P consecutive blocks, block r the
    `recv_counts`[r] rows sent by coordinate r; rows past the sent (or
    received) ones are not read (are zero). Counts are i32 tensors [P],
    known only at run time: N and M are the static bounds of the buffers.
    recv_counts[r] must equal rank r's send_counts[this rank].
    The gradient is the same exchange backwards: all_to_all_v of the
    result's gradient with the counts swapped.

    ```mlir
    %recv = mt.all_to_all_v %rows, %send, %recv_counts {axis = "ep"}
        : (tensor<1024x64xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<2048x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, RankedTensorOf<[I32]>:$send_counts,
                       RankedTensorOf<[I32]>:$recv_counts, StrAttr:$axis);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective", "axis:s? rows_in rows_out row parts",
      "rows_in*row; parts; parts; rows_out*row">;
}

def Mt_AllToAllOp : Mt_Op<"all_to_all",
    [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Equal blocks exchanged between the ranks of a mesh axis: one dimension split, another gathered";
  let description = [{
    Upstream `shard.all_to_all` with static, equal blocks (Megatron-Core's
    cp_comm_type a2a, DeepSpeed-Ulysses): over the n ranks of `axis`, rank
    p cuts `input` into n equal pieces along `split_dim` and sends piece q
    to rank q; its `result` is the pieces it receives, concatenated along
    `concat_dim` in rank order. result = input with split_dim divided by n
    and concat_dim multiplied by n.

    `load_balanced_dim` (`split_dim` or `concat_dim`): along that
    dimension the whole tensor is in context parallelism's load-balanced
    order (`mt.rotary`): of 2·n chunks, rank q's piece is chunks q and
    2·n-1-q (split), and the piece from rank r fills chunks r and 2·n-1-r
    (concat). Before attention, the sequence slices [B, S/n, H, D] become
    whole sequences in their true order for H/n heads, [B, S, H/n, D];
    after it, the other way. The gradient is the exchange back: split and
    concat dimensions swapped, the same `load_balanced_dim`.

    ```mlir
    %q = mt.all_to_all %q0 {axis = "cp", split_dim = 2 : i64, concat_dim = 1 : i64, load_balanced_dim = 1 : i64}
        : (tensor<2x8x4x16xf32>) -> tensor<2x16x2x16xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, StrAttr:$axis, I64Attr:$split_dim,
                       I64Attr:$concat_dim, OptionalAttr<I64Attr>:$load_balanced_dim);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Collective",
      "axis:s parts split_outer split_size split_inner concat_outer concat_size concat_inner " #
      "load_balanced=none|split|concat",
      "split_outer*split_size*split_inner; concat_outer*concat_size*concat_inner">;
}

def Mt_StageTransferOp : Mt_Op<"stage_transfer", [Pure, SameOperandsAndResultType]> {
  let summary = "A value passed between adjacent pipeline virtual stages";
  let description = [{
    `result` is `input` as virtual stage `to` sees it. The ranks of
    pipeline stage `from % pp` send it at the end of virtual stage `from`'s
    forward (`to = from + 1`: an activation) or backward (`to = from - 1`:
    the gradient of an activation), and the ranks of stage `to % pp`
    receive it at the start of virtual stage `to`'s, over the pp axis
    (Megatron-Core's send_forward/recv_forward and
    send_backward/recv_backward). mt-pipeline-split inserts it; the plan
    holds the pair as send and recv instructions over one buffer.

    ```mlir
    %x1 = mt.stage_transfer %x0 {from = 0 : i64, to = 1 : i64} : tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, I64Attr:$from, I64Attr:$to);
  let results = (outs Mt_FloatTensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

#endif // MT_COLLECTIVE_OPS_TD
