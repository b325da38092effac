// Ops that only mt-fuse makes, after mt-autodiff: sibling weights read as
// one matrix (Megatron-Core's `linear_fc1`, the gate and up projections in
// one GEMM, and `linear_qkv`, the attention's input projections in one),
// the SwiGLU that reads the fc1 GEMM's packed output, the split of the
// qkv GEMM's packed output and its gradient's packing, with or without the
// rotary embedding of q and k. They are never differentiated: their
// gradients are built from the ops they replace.
// Verifiers in MtFusedOps.cpp.
#ifndef MT_FUSED_OPS_TD
#define MT_FUSED_OPS_TD

def Mt_ConcatRowsOp : Mt_Op<"concat_rows", [Pure]> {
  let summary = "Sibling parameters read as one tensor, concatenated along their first axis";
  let description = [{
    `inputs`: two or more tensors of one element type and rank, equal but
    for the first axis; result: their concatenation along it, [ΣN_i, ...].
    mt-fuse reads the weights (and biases) of sibling linears through it,
    so that one `mt.linear` computes all of their outputs, as
    Megatron-Core's single `linear_fc1` matrix does, while the parameters
    stay the Hugging Face ones (`gate_proj`, `up_proj`: checkpoints, export
    and tp sharding are theirs). The plan emits no instruction: it places
    the inputs' buffers back to back and the result is a view over them,
    so the inputs must be `mt.weight` values.

    ```mlir
    %w = mt.concat_rows %wg, %wu : (tensor<128x64xf32>, tensor<128x64xf32>) -> tensor<256x64xf32>
    ```
  }];
  let arguments = (ins Variadic<Mt_FloatTensor>:$inputs);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$inputs attr-dict `:` functional-type($inputs, results)";
  let hasVerifier = 1;
}

def Mt_SplitRowsOp : Mt_Op<"split_rows", [Pure]> {
  let summary = "A tensor cut along its first axis into consecutive parts";
  let description = [{
    The inverse of `mt.concat_rows`: `results` are the consecutive slices
    of `input` along its first axis, in order; their first-axis sizes sum to
    the input's and the other axes are the input's. mt-fuse splits the
    weight gradient of a fused linear, [ΣN_i, in], into each parameter's
    gradient with it. The plan emits no instruction: the results' buffers
    (the parameters' gradient buffers) are placed back to back and the
    input is a view over them, so the GEMM writes every gradient at once.

    ```mlir
    %dwg, %dwu = mt.split_rows %dw : (tensor<256x64xf32>) -> (tensor<128x64xf32>, tensor<128x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input);
  let results = (outs Variadic<Mt_FloatTensor>:$results);
  let assemblyFormat = "$input attr-dict `:` functional-type($input, results)";
  let hasVerifier = 1;
}

def Mt_ChunkedSwiGLUOp : Mt_Op<"chunked_swiglu", [Pure]> {
  let summary = "SwiGLU of a packed [gate | up] tensor: silu(x[..., :F]) * x[..., F:]";
  let description = [{
    `input` [..., 2F] holds the gate projection in its first F columns and
    the up projection in its last F (the output of a fused `linear_fc1`);
    result [..., F] = silu(gate) * up, the values of `mt.swiglu %gate, %up`
    (Megatron-Core's `swiglu`, which chunks its input in two the same way).

    ```mlir
    %a = mt.chunked_swiglu %gu : (tensor<4x128x256xf32>) -> tensor<4x128x128xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise", "rows dim", "rows*dim*2; rows*dim">;
}

def Mt_ChunkedSwiGLUGradOp : Mt_Op<"chunked_swiglu_grad", [Pure]> {
  let summary = "Gradient of mt.chunked_swiglu: [dgate | dup] in one packed tensor";
  let description = [{
    `input` [..., 2F] as `mt.chunked_swiglu`'s, `dy` [..., F]; result
    [..., 2F]: the `dgate` of `mt.swiglu_grad` in the first F columns and
    its `dup` in the last F, written (not added), so that one
    `mt.linear_grad_input` and one `mt.linear_grad_weight` over the fused
    weight take it as their dy.

    ```mlir
    %dgu = mt.chunked_swiglu_grad %gu, %da : (tensor<4x128x256xf32>, tensor<4x128x128xf32>) -> tensor<4x128x256xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dx);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise", "rows dim",
      "rows*dim*2; rows*dim; rows*dim*2">;
}

def Mt_ChunkedSwiGLURecomputeGradOp : Mt_Op<"chunked_swiglu_recompute_grad", [Pure]> {
  let summary = "mt.chunked_swiglu_grad that also recomputes the forward's output";
  let description = [{
    `input` [..., 2F] and `dy` [..., F] as `mt.chunked_swiglu_grad`'s;
    results: `dx` [..., 2F], that op's packed [dgate | dup], and `output`
    [..., F] = silu(gate) * up, bit-identical to `mt.chunked_swiglu` of
    the same input. The backward needs the activation only for the down
    projection's weight gradient; recomputing it from the [gate | up]
    values the gradient reads anyway costs one more write instead of
    keeping it from forward to backward (what torch.compile's
    min-cut partitioner does with pointwise ops).

    ```mlir
    %dgu, %a = mt.chunked_swiglu_recompute_grad %gu, %da : (tensor<4x128x256xf32>, tensor<4x128x128xf32>) -> (tensor<4x128x256xf32>, tensor<4x128x128xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dx, Mt_FloatTensor:$output);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise", "rows dim",
      "rows*dim*2; rows*dim; rows*dim*2; rows*dim">;
}

def Mt_SplitQKVOp : Mt_Op<"split_qkv", [Pure]> {
  let summary = "The packed [q | k | v] output of a fused linear_qkv split into q, k and v";
  let description = [{
    `input` [..., Q + 2K] holds the query projection in its first Q columns,
    the key projection in the next K and the value projection in the last K
    (the output of one `mt.linear` over `mt.concat_rows %wq, %wk, %wv`,
    Megatron-Core's `linear_qkv` with its output split along the last
    axis); results q [..., Q], k [..., K], v [..., K], each dense. One pass
    over the packed output: the rotary, norm and attention kernels read
    dense operands only.

    ```mlir
    %q, %k, %v = mt.split_qkv %qkv : (tensor<2x16x256xf32>) -> (tensor<2x16x128xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input);
  let results = (outs Mt_FloatTensor:$q, Mt_FloatTensor:$k, Mt_FloatTensor:$v);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise", "rows dim q_dim kv_dim",
      "rows*dim; rows*q_dim; rows*kv_dim; rows*kv_dim">;
}

def Mt_ConcatQKVOp : Mt_Op<"concat_qkv", [Pure]> {
  let summary = "The gradients of q, k and v packed as [dq | dk | dv] for a fused linear_qkv";
  let description = [{
    The inverse of `mt.split_qkv`: `dq` [..., Q], `dk` and `dv` [..., K]
    with equal leading axes; result [..., Q + 2K], row by row dq then dk
    then dv, written (not added), so that one `mt.linear_grad_input`, one
    `mt.linear_grad_weight` (and one `mt.bias_grad`) over the fused weight
    take it as their dy.

    ```mlir
    %dqkv = mt.concat_qkv %dq, %dk, %dv : (tensor<2x16x128xf32>, tensor<2x16x64xf32>, tensor<2x16x64xf32>) -> tensor<2x16x256xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$dq, Mt_FloatTensor:$dk, Mt_FloatTensor:$dv);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise", "rows dim q_dim kv_dim",
      "rows*q_dim; rows*kv_dim; rows*kv_dim; rows*dim">;
}

// The rotary attributes of mt.rotary, for the ops that apply it as they
// split or pack q, k and v (no context_parallel_axis: mt-fuse leaves
// context-parallel rotaries apart).
class Mt_QKVRotaryOp<string mnemonic> : Mt_Op<mnemonic, [Pure]> {
  let hasVerifier = 1;
}

def Mt_SplitQKVRotaryOp : Mt_QKVRotaryOp<"split_qkv_rotary"> {
  let summary = "mt.split_qkv of a packed [q | k | v] with q and k rotated (mt.rotary)";
  let description = [{
    `input` [B, S, Q + 2K] as mt.split_qkv reads it; results q [B, S, H, D],
    k and v [B, S, KH, D] (Q = H·D, K = KH·D): q and k through mt.rotary
    with these attributes and `position_ids`, v as split. The same values
    as mt.split_qkv, mt.reshape and two mt.rotary, in one pass over the
    packed output (Megatron-Core's fused rope, `apply_rope_fusion`).

    ```mlir
    %q, %k, %v = mt.split_qkv_rotary %qkv {theta = 5.0e+05 : f64} : (tensor<2x16x256xf32>) -> (tensor<2x16x8x16xf32>, tensor<2x16x4x16xf32>, tensor<2x16x4x16xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Optional<RankedTensorOf<[I32]>>:$position_ids,
                       F64Attr:$theta, OptionalAttr<F64Attr>:$scaling_factor,
                       OptionalAttr<F64Attr>:$low_freq_factor,
                       OptionalAttr<F64Attr>:$high_freq_factor,
                       OptionalAttr<I64Attr>:$original_max_position);
  let results = (outs Mt_FloatTensor:$q, Mt_FloatTensor:$k, Mt_FloatTensor:$v);
  let assemblyFormat = [{
    $input (`positions` $position_ids^ `:` type($position_ids))? attr-dict `:` functional-type($input, results)
  }];
  let instruction = Mt_Instruction<"Elementwise",
      "batch seq dim heads kv_heads head_dim theta:f scaling_factor:f? low_freq_factor:f? high_freq_factor:f? original_max_position? position_ids?",
      "batch*seq*dim; position_ids?batch*seq; batch*seq*heads*head_dim; batch*seq*kv_heads*head_dim; batch*seq*kv_heads*head_dim">;
}

def Mt_RotaryConcatQKVOp : Mt_QKVRotaryOp<"rotary_concat_qkv"> {
  let summary = "mt.concat_qkv of the gradients of rotated q and k (mt.rotary_grad) and of v";
  let description = [{
    `dq` [B, S, H, D], `dk` and `dv` [B, S, KH, D]: the gradients of
    mt.split_qkv_rotary's results. Result [B, S, Q + 2K], written: dq and dk
    through mt.rotary_grad with these attributes and `position_ids`, then
    packed with dv as mt.concat_qkv packs them.

    ```mlir
    %dqkv = mt.rotary_concat_qkv %dq, %dk, %dv {theta = 5.0e+05 : f64} : tensor<2x16x8x16xf32>, tensor<2x16x4x16xf32>, tensor<2x16x4x16xf32> -> tensor<2x16x256xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$dq, Mt_FloatTensor:$dk, Mt_FloatTensor:$dv,
                       Optional<RankedTensorOf<[I32]>>:$position_ids,
                       F64Attr:$theta, OptionalAttr<F64Attr>:$scaling_factor,
                       OptionalAttr<F64Attr>:$low_freq_factor,
                       OptionalAttr<F64Attr>:$high_freq_factor,
                       OptionalAttr<I64Attr>:$original_max_position);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = [{
    $dq `,` $dk `,` $dv (`positions` $position_ids^ `:` type($position_ids))? attr-dict `:`
    type($dq) `,` type($dk) `,` type($dv) `->` type($result)
  }];
  let instruction = Mt_Instruction<"Elementwise",
      "batch seq dim heads kv_heads head_dim theta:f scaling_factor:f? low_freq_factor:f? high_freq_factor:f? original_max_position? position_ids?",
      "batch*seq*heads*head_dim; batch*seq*kv_heads*head_dim; batch*seq*kv_heads*head_dim; position_ids?batch*seq; batch*seq*dim">;
}

#endif // MT_FUSED_OPS_TD
