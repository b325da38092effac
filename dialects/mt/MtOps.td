// Op definitions of the `mt` dialect. Shape rules live in MtOps.cpp verifiers.
#ifndef MT_OPS_TD
#define MT_OPS_TD

include "dialects/mt/MtDialect.td"
include "dialects/mt/MtAttributes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "dialects/mt/MtInterfaces.td"

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

def Mt_ParamOp : Mt_Op<"param",
    [Symbol, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "A trainable parameter, named by its Hugging Face state-dict key";
  let description = [{
    Declares a parameter of the model at module level. The symbol name is the
    exact key of the tensor in a Hugging Face state dict. `init` is the rule
    for a fresh model: `normal` draws from N(0, std²) (`std` is required),
    `zeros` and `ones` fill a constant.

    Experts of a mixture-of-experts layer are one grouped parameter whose
    leading dimension is the expert index; its name holds `*` where the HF key
    holds the expert number, and it carries `grouped_experts`. A `frozen`
    parameter is not trained: no gradient is computed for it. A `sharding`
    splits dimensions over mesh axes; each rank holds its slice (the type of
    `mt.weight`), checked against the mesh.

    ```mlir
    mt.param @"model.norm.weight" : tensor<2048xbf16> init(ones)
    mt.param @"model.embed_tokens.weight" : tensor<128256x2048xbf16> init(normal, std = 2.0e-02)
    mt.param @"model.layers.0.mlp.experts.*.up_proj.weight" : tensor<8x14336x4096xbf16> init(normal, std = 2.0e-02) {grouped_experts}
    mt.param @"model.layers.0.self_attn.o_proj.weight" : tensor<2048x2048xbf16> init(normal, std = 2.0e-02) {sharding = #mt.sharding<@mesh, [[], ["tp"]]>}
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<Mt_FloatTensor>:$type,
                       Mt_InitKind:$init,
                       OptionalAttr<F64Attr>:$std,
                       UnitAttr:$grouped_experts, UnitAttr:$frozen,
                       OptionalAttr<Mt_ShardingAttr>:$sharding,
                       OptionalAttr<I64Attr>:$hf_rows);
  let assemblyFormat = [{
    $sym_name `:` $type `init` `(` $init (`,` `std` `=` $std^)? `)` attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
    /// The type of the slice one rank holds (the full type when unsharded).
    ::mlir::RankedTensorType getLocalType();
  }];
}

def Mt_WeightOp : Mt_Op<"weight",
    [Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Reads the value of a parameter";
  let description = [{
    Yields the current value of the `mt.param` named by `param`. The result
    type must equal the parameter's type.

    ```mlir
    %w = mt.weight @"model.norm.weight" : tensor<2048xbf16>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$param attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Dense layers
//===----------------------------------------------------------------------===//

def Mt_EmbeddingOp : Mt_Op<"embedding", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Looks up token ids in an embedding table";
  let description = [{
    `ids`: [B, S] integers in [0, V); `table`: [V, H]; result: [B, S, H] with
    the element type of `table`. With `vocab_parallel_axis`, `table` is the
    slice of rows [r·V, (r+1)·V) of the rank at coordinate r on that axis,
    and ids outside it give zero rows (the sum over the axis is the lookup).

    ```mlir
    %x = mt.embedding %ids, %table : (tensor<4x128xi32>, tensor<256x64xf32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_IdTensor:$ids, Mt_FloatTensor:$table,
                       OptionalAttr<StrAttr>:$vocab_parallel_axis);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise", "tokens vocab hidden vocab_parallel_axis:s?",
      "tokens; vocab*hidden; tokens*hidden">;
}

def Mt_LinearOp : Mt_Op<"linear", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Affine map y = x Wᵀ + b with Hugging Face's [out, in] weight";
  let description = [{
    `input`: [..., in]; `weight`: [out, in] (the layout of `torch.nn.Linear`);
    optional `bias`: [out]; result: [..., out]. All three share one element
    type.

    ```mlir
    %q = mt.linear %x, %wq, %bq : (tensor<4x128x64xf32>, tensor<64x64xf32>, tensor<64xf32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight,
                       Optional<Mt_FloatTensor>:$bias);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Gemm", "tokens in out has_bias?",
      "tokens*in; out*in; has_bias?out; tokens*out">;
}

def Mt_BiasAddOp : Mt_Op<"bias_add", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Adds a bias along the last axis";
  let description = [{
    `input` [..., n] + `bias` [n]. Tensor parallelism adds a row-parallel
    linear's bias after the sum over ranks, once.

    ```mlir
    %y = mt.bias_add %x, %b : (tensor<4x128x64xf32>, tensor<64xf32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$bias);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise", "rows dim", "rows*dim; dim; rows*dim">;
}

def Mt_ReshapeOp : Mt_Op<"reshape", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Reinterprets a tensor with another static shape";
  let description = [{
    Row-major reshape that keeps the element type and the element count, e.g.
    splitting [B, S, heads*head_dim] into [B, S, heads, head_dim].

    ```mlir
    %q4 = mt.reshape %q : tensor<4x128x64xf32> -> tensor<4x128x4x16xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Mt_ZerosOp : Mt_Op<"zeros", [Pure]> {
  let summary = "A tensor of zeros";
  let description = [{
    ```mlir
    %z = mt.zeros : tensor<f32>
    ```
  }];
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
  let instruction = Mt_Instruction<"Fill", "n", "n", 0, 0, "fill_zero">;
}

def Mt_AddOp : Mt_Op<"add", [Pure, SameOperandsAndResultType,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Element-wise sum (residual connections, loss terms)";
  let description = [{
    ```mlir
    %h = mt.add %x, %attn_out : tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$lhs, Mt_FloatTensor:$rhs);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
  let instruction = Mt_Instruction<"Elementwise", "n", "n; n; n">;
}

//===----------------------------------------------------------------------===//
// Normalization
//===----------------------------------------------------------------------===//

def Mt_RMSNormOp : Mt_Op<"rmsnorm", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Root-mean-square normalization over the last axis";
  let description = [{
    y = x / sqrt(mean(x², last axis) + eps) * weight. `weight` has the size of
    the last axis. On a [B, S, heads, head_dim] view this is the per-head
    q/k normalization of Qwen3.

    ```mlir
    %y = mt.rmsnorm %x, %w {eps = 1.0e-05 : f64} : (tensor<4x128x64xf32>, tensor<64xf32>) -> tensor<4x128x64xf32>
    %qn = mt.rmsnorm %q, %qw {eps = 1.0e-06 : f64} : (tensor<4x128x4x16xf32>, tensor<16xf32>) -> tensor<4x128x4x16xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight, F64Attr:$eps);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Norm", "rows dim eps:f", "rows*dim; dim; rows*dim">;
}

def Mt_AddRMSNormOp : Mt_Op<"add_rmsnorm", [Pure]> {
  let summary = "Residual add fused with the RMSNorm of the sum (mt-fuse)";
  let description = [{
    sum = input + residual; result = rmsnorm(sum, weight, eps): the values of
    `mt.add` followed by `mt.rmsnorm` of its result, in one pass over the
    rows (Megatron/Transformer Engine's fused add + norm): each row is read
    once and both the residual stream `sum` and the normalized `result` are
    written. `input`, `residual`, `sum` and `result` share one type;
    `weight` has the size of the last axis. Made by mt-fuse after
    mt-autodiff, so it is never differentiated itself: its backward is the
    `mt.rmsnorm_grad` (or `mt.add_rmsnorm_grad`) already built.

    ```mlir
    %h, %y = mt.add_rmsnorm %x, %attn, %w {eps = 1.0e-05 : f64}
        : (tensor<4x128x64xf32>, tensor<4x128x64xf32>, tensor<64xf32>) -> (tensor<4x128x64xf32>, tensor<4x128x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$residual,
                       Mt_FloatTensor:$weight, F64Attr:$eps);
  let results = (outs Mt_FloatTensor:$sum, Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Norm", "rows dim eps:f",
      "rows*dim; rows*dim; dim; rows*dim; rows*dim">;
}

def Mt_LayerNormOp : Mt_Op<"layernorm", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Layer normalization over the last axis, with scale and shift";
  let description = [{
    y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis;
    `weight` and `bias` have the size of the last axis.

    ```mlir
    %y = mt.layernorm %x, %w, %b {eps = 1.0e-05 : f64} : (tensor<4x128x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight,
                       Mt_FloatTensor:$bias, F64Attr:$eps);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Norm", "rows dim eps:f", "rows*dim; dim; dim; rows*dim">;
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

def Mt_RotaryOp : Mt_Op<"rotary", [Pure, AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Rotary position embedding (rotate-half convention)";
  let description = [{
    Rotates pairs (x[i], x[i + D/2]) of each head of `input` [B, S, heads, D]
    by angle pos · theta^(-2i/D), as Hugging Face's `rotate_half`. The
    position of token (b, s) is s, or `position_ids`[b, s] when given
    ([B, S] i32: positions restarting at 0 at each document packed in a row,
    Hugging Face's `position_ids`). With `scaling_factor` set, the inverse
    frequencies are rescaled as Llama 3.1's `rope_scaling` ("llama3"):
    `low_freq_factor`, `high_freq_factor` and `original_max_position` are
    then required.

    With `context_parallel_axis` (mt-partition-cp), the sequence is split
    over that axis with Megatron-Core's load balancing: of 2·cp chunks of
    S / (2·cp) tokens, the rank at coordinate r holds chunks r and
    2·cp-1-r, and token s of its [B, S/cp] slice takes the position of its
    place in the whole sequence (runtime/kernels/ContextParallel.h).

    ```mlir
    %q = mt.rotary %q0 {theta = 5.0e+05 : f64} : tensor<4x128x4x16xf32>
    %k = mt.rotary %k0 {theta = 5.0e+05 : f64, scaling_factor = 3.2e+01 : f64,
                        low_freq_factor = 1.0 : f64, high_freq_factor = 4.0 : f64,
                        original_max_position = 8192 : i64} : tensor<4x128x2x16xf32>
    %p = mt.rotary %q0 positions %pos : tensor<4x128xi32> {theta = 1.0e+04 : f64} : tensor<4x128x4x16xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input,
                       Optional<RankedTensorOf<[I32]>>:$position_ids, F64Attr:$theta,
                       OptionalAttr<F64Attr>:$scaling_factor,
                       OptionalAttr<F64Attr>:$low_freq_factor,
                       OptionalAttr<F64Attr>:$high_freq_factor,
                       OptionalAttr<I64Attr>:$original_max_position,
                       OptionalAttr<StrAttr>:$context_parallel_axis);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`positions` $position_ids^ `:` type($position_ids))? attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Elementwise",
      "batch seq heads head_dim theta:f scaling_factor:f? low_freq_factor:f? high_freq_factor:f? original_max_position? position_ids? context_parallel_axis:s?",
      "batch*seq*heads*head_dim; position_ids?batch*seq; batch*seq*heads*head_dim">;
}

def Mt_AttentionOp : Mt_Op<"attention", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Causal grouped-query scaled dot-product attention";
  let description = [{
    `query`: [B, S, num_heads, head_dim]; `key`, `value`: [B, S, num_kv_heads,
    head_dim]; result: [B, S, num_heads, head_dim]. Query head h attends with
    kv head h / (num_heads / num_kv_heads), causally (position i sees j <= i),
    with logits scaled by `scale` (usually head_dim^-1/2).

    With `position_ids` ([B, S] i32, as `mt.rotary` takes them) the row holds
    several documents, each starting where its position id is 0 and counting
    up by one: query i sees keys j in [i - position_ids[b, i], i], the
    causal part of its own document (FlashAttention's varlen attention with
    cu_seqlens, Hugging Face's packed `position_ids`).

    With `context_parallel_axis` (Megatron-Core's cp_comm_type all_gather),
    `query` is this rank's [B, S/cp] slice of the sequence in the
    load-balanced layout of `mt.rotary` (chunks r and 2·cp-1-r of 2·cp) and
    `key`, `value` are the all-gather over that axis of every rank's slice,
    [B, S, ...] in rank order; the causal mask compares the tokens' places
    in the whole sequence (runtime/kernels/ContextParallel.h), and with
    `position_ids` (the queries', [B, S/cp]) query i at place P sees keys
    at places [P - position_ids[b, i], P].

    ```mlir
    %o = mt.attention %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 2.5e-01 : f64}
        : (tensor<4x128x4x16xf32>, tensor<4x128x2x16xf32>, tensor<4x128x2x16xf32>) -> tensor<4x128x4x16xf32>
    %p = mt.attention %q, %k, %v, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 2.5e-01 : f64}
        : (tensor<4x128x4x16xf32>, tensor<4x128x2x16xf32>, tensor<4x128x2x16xf32>, tensor<4x128xi32>) -> tensor<4x128x4x16xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$query, Mt_FloatTensor:$key,
                       Mt_FloatTensor:$value, Optional<RankedTensorOf<[I32]>>:$position_ids,
                       I64Attr:$num_heads,
                       I64Attr:$num_kv_heads, I64Attr:$head_dim, F64Attr:$scale,
                       OptionalAttr<StrAttr>:$context_parallel_axis);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Attention", "batch seq kv_seq heads kv_heads head_dim scale:f position_ids? context_parallel_axis:s?",
      "batch*seq*heads*head_dim; batch*kv_seq*kv_heads*head_dim; batch*kv_seq*kv_heads*head_dim; position_ids?batch*seq; " #
      "batch*seq*heads*head_dim; batch*heads*seq", 0, 1>;
}

// Ring attention (Megatron-Core's cp_comm_type p2p): mt-partition-cp turns
// an mt.attention into cp blocks, step t attending to the keys and values of
// the rank t places back on the ring (passed on by mt.ring_shift), merged by
// their log-sum-exp.

def Mt_AttentionBlockOp : Mt_Op<"attention_block", [Pure,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Causal attention of this rank's queries to one cp rank's keys, with its log-sum-exp";
  let description = [{
    `query` [B, S, num_heads, head_dim] is this rank's slice of the
    sequence under context parallelism over `context_parallel_axis` (the
    load-balanced layout of `mt.rotary`); `key`, `value` [B, S, num_kv_heads,
    head_dim] are the slice of the rank at coordinate (r - `step`) mod cp.
    Query i sees key j when j's place in the sequence is at most i's and,
    with `position_ids` (the queries', [B, S] i32: documents packed in a
    row, as `mt.attention` takes them), not before the start of i's
    document: P - position_ids[b, i] for i at place P. Results: the softmax-weighted values over the visible keys (0 for a
    query that sees none) and `lse` [B, num_heads, S] f32, their
    log-sum-exp (-inf for a query that sees none).

    ```mlir
    %o, %lse = mt.attention_block %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 2.5e-01 : f64, context_parallel_axis = "cp", step = 1 : i64}
        : (tensor<4x64x4x16xf32>, tensor<4x64x2x16xf32>, tensor<4x64x2x16xf32>) -> (tensor<4x64x4x16xf32>, tensor<4x4x64xf32>)
    %p, %plse = mt.attention_block %q, %k, %v, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 2.5e-01 : f64, context_parallel_axis = "cp", step = 1 : i64}
        : (tensor<4x64x4x16xf32>, tensor<4x64x2x16xf32>, tensor<4x64x2x16xf32>, tensor<4x64xi32>) -> (tensor<4x64x4x16xf32>, tensor<4x4x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$query, Mt_FloatTensor:$key, Mt_FloatTensor:$value,
                       Optional<RankedTensorOf<[I32]>>:$position_ids,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads, I64Attr:$head_dim,
                       F64Attr:$scale, StrAttr:$context_parallel_axis, I64Attr:$step);
  let results = (outs Mt_FloatTensor:$result, RankedTensorOf<[F32]>:$lse);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Attention",
      "batch seq heads kv_heads head_dim scale:f position_ids? context_parallel_axis:s step",
      "batch*seq*heads*head_dim; batch*seq*kv_heads*head_dim; batch*seq*kv_heads*head_dim; " #
      "position_ids?batch*seq; batch*seq*heads*head_dim; batch*heads*seq">;
}

def Mt_AttentionMergeOp : Mt_Op<"attention_merge", [Pure,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Two partial attentions over disjoint keys merged by their log-sum-exp";
  let description = [{
    `out_a`, `out_b` [B, S, H, D] with `lse_a`, `lse_b` [B, H, S] f32: the
    attention of the same queries over two disjoint key sets. Result: the
    attention over their union, lse = log(exp(lse_a) + exp(lse_b)) and
    out = exp(lse_a - lse) out_a + exp(lse_b - lse) out_b (0 and -inf where
    both are empty), as Megatron-Core's ring attention merges its steps.

    ```mlir
    %o, %lse = mt.attention_merge %oa, %la, %ob, %lb
        : (tensor<4x64x4x16xf32>, tensor<4x4x64xf32>, tensor<4x64x4x16xf32>, tensor<4x4x64xf32>) -> (tensor<4x64x4x16xf32>, tensor<4x4x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$out_a, RankedTensorOf<[F32]>:$lse_a,
                       Mt_FloatTensor:$out_b, RankedTensorOf<[F32]>:$lse_b);
  let results = (outs Mt_FloatTensor:$result, RankedTensorOf<[F32]>:$lse);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Attention", "batch seq heads head_dim",
      "batch*seq*heads*head_dim; batch*heads*seq; batch*seq*heads*head_dim; batch*heads*seq; " #
      "batch*seq*heads*head_dim; batch*heads*seq">;
}

//===----------------------------------------------------------------------===//
// Feed-forward activations
//===----------------------------------------------------------------------===//

def Mt_SwiGLUOp : Mt_Op<"swiglu", [Pure, SameOperandsAndResultType,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Gated SiLU: silu(gate) * up";
  let description = [{
    ```mlir
    %a = mt.swiglu %gate, %up : tensor<4x128x256xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$gate, Mt_FloatTensor:$up);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$gate `,` $up attr-dict `:` type($result)";
  let instruction = Mt_Instruction<"Elementwise", "n", "n; n; n">;
}

def Mt_GELUOp : Mt_Op<"gelu", [Pure, SameOperandsAndResultType,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Gaussian error linear unit, exact or tanh-approximated";
  let description = [{
    ```mlir
    %a = mt.gelu %x : tensor<4x128x256xf32>
    %b = mt.gelu %x {approximate_tanh} : tensor<4x128x256xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, UnitAttr:$approximate_tanh);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let instruction = Mt_Instruction<"Elementwise", "n approximate_tanh?", "n; n">;
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def Mt_MoERouterOp : Mt_Op<"moe_router", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Softmax top-k router with the load-balancing auxiliary loss";
  let description = [{
    `input`: [B, S, H]; `weight`: [E, H]. Computes router logits x Wᵀ, softmax
    over the E experts, and keeps the `top_k` largest probabilities per token:
    `weights` [B, S, top_k] (f32; renormalized to sum 1 when `norm_topk_prob`)
    and `indices` [B, S, top_k] (i32). `aux_loss` is Megatron-Core's
    (moe_utils.py) with `load_balancing_type` (moe_router_load_balancing_type):
    "aux_loss" (the default) is switch_load_balancing_loss_func over the
    micro-batch, `aux_loss_coeff · E / top_k · Σ_e f_e · P_e` with f_e the
    fraction of the B·S tokens routed to e and P_e the mean probability of e
    (balanced routing gives aux_loss_coeff); "seq_aux_loss" the same over each
    sequence, averaged over the B sequences; "none" no balancing loss.
    `z_loss` is Megatron-Core's z_loss_func with `z_loss_coeff` (0 without it):
    `z_loss_coeff · mean(logsumexp(logits)²)` over the B·S tokens, a result of
    its own as Megatron-Core logs it apart from the load-balancing loss.
    Hugging Face's load_balancing_loss_func is top_k times the "aux_loss" term
    for one coefficient: the importer passes router_aux_loss_coef · top_k.
    Models sum it over layers, as Megatron-Core does (HF pools every layer's
    router logits into one loss).

    With `token_counts` and `token_shards` = n (context parallelism: the
    input is this rank's 1/n of each sequence), the losses are this rank's
    share of the whole micro-batch's, as Megatron-Core's router computes them
    under cp: `token_counts` [G, E] (mt.moe_router_counts summed over the n
    ranks; G = B with seq_aux_loss, else 1) replaces the counts of this
    rank's tokens, and every mean is over the n times more tokens of the
    whole; the ranks' terms then sum to the single rank's losses, and their
    gradients to its gradients.

    ```mlir
    %w, %i, %aux, %z = mt.moe_router %x, %wr {top_k = 2 : i64, norm_topk_prob, aux_loss_coeff = 1.0e-02 : f64}
        : (tensor<4x128x64xf32>, tensor<8x64xf32>) -> (tensor<4x128x2xf32>, tensor<4x128x2xi32>, tensor<f32>, tensor<f32>)
    %w2, %i2, %aux2, %z2 = mt.moe_router %x, %wr, %counts {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64, token_shards = 2 : i64}
        : (tensor<4x128x64xf32>, tensor<8x64xf32>, tensor<1x8xf32>) -> (tensor<4x128x2xf32>, tensor<4x128x2xi32>, tensor<f32>, tensor<f32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight,
                       Optional<RankedTensorOf<[F32]>>:$token_counts,
                       I64Attr:$top_k, UnitAttr:$norm_topk_prob,
                       F64Attr:$aux_loss_coeff,
                       OptionalAttr<StrAttr>:$load_balancing_type,
                       OptionalAttr<F64Attr>:$z_loss_coeff,
                       OptionalAttr<I64Attr>:$token_shards);
  let results = (outs RankedTensorOf<[F32]>:$weights,
                      RankedTensorOf<[I32]>:$indices, Mt_F32Scalar:$aux_loss,
                      Mt_F32Scalar:$z_loss);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "tokens hidden experts top_k norm_topk_prob? aux_loss_coeff:f seq? load_balancing_type=aux_loss|seq_aux_loss|none z_loss_coeff:f? count_groups? token_shards?",
      "tokens*hidden; experts*hidden; count_groups?count_groups*experts; tokens*top_k; tokens*top_k; 1; 1">;
}

def Mt_MoERouterCountsOp : Mt_Op<"moe_router_counts", [Pure]> {
  let summary = "Tokens the router sends to each expert, per load-balancing group";
  let description = [{
    `input` [B, S, H], `weight` [E, H]: `counts`[g, e] (f32) is the number
    of (token, slot) pairs of group g that `mt.moe_router` with the same
    `top_k` routes to expert e (the same softmax and top-k), G = B groups
    (the sequences) with `load_balancing_type` "seq_aux_loss", else one
    (the micro-batch). Megatron-Core's router all-reduces these counts
    (tokens_per_expert) over tp x cp before its load-balancing loss:
    mt-partition-cp sums them over cp and hands them to mt.moe_router.
    No gradient (the choice of experts is not differentiable).

    ```mlir
    %counts = mt.moe_router_counts %x, %wr {top_k = 2 : i64}
        : (tensor<4x64x64xf32>, tensor<8x64xf32>) -> tensor<1x8xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight, I64Attr:$top_k,
                       OptionalAttr<StrAttr>:$load_balancing_type);
  let results = (outs RankedTensorOf<[F32]>:$counts);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "tokens hidden experts top_k seq groups load_balancing_type=aux_loss|seq_aux_loss|none",
      "tokens*hidden; experts*hidden; groups*experts">;
}

def Mt_SigmoidGateOp : Mt_Op<"sigmoid_gate", [Pure,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Scales each token's vector by the sigmoid of its gate logit";
  let description = [{
    `result`[..., h] = sigmoid(`gate`[..., 0]) · `input`[..., h], with `gate`
    [..., 1] (one logit per token) and `input` [..., H] of the same leading
    shape. The shared expert's gate of Qwen2-MoE
    (transformers' Qwen2MoeSparseMoeBlock:
    `sigmoid(shared_expert_gate(x)) * shared_expert(x)`; Megatron-Core's
    SharedExpertMLP with `moe_shared_expert_gate`).

    ```mlir
    %y = mt.sigmoid_gate %logit, %x : (tensor<4x128x1xf32>, tensor<4x128x64xf32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$gate, Mt_FloatTensor:$input);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "rows dim", "rows; rows*dim; rows*dim">;
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

def Mt_CrossEntropyOp : Mt_Op<"cross_entropy", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Mean token cross-entropy over the unmasked positions";
  let description = [{
    `logits`: [B, S, V]; `labels`: [B, S] in [0, V); `mask`: [B, S] f32 of 0/1.
    Result (f32 scalar): Σ mask · (logsumexp(logits) - logits[label]) / Σ mask.
    Labels are already shifted: position s predicts `labels`[b, s]. With
    `vocab_parallel_axis`, `logits` hold the vocabulary slice of this rank
    on that axis; the log-sum-exp and the label's logit are reduced over
    the axis, so the full logits are never gathered. With `valid_vocab`,
    columns at or past it (vocabulary padding) take no part.

    ```mlir
    %loss = mt.cross_entropy %logits, %labels, %mask
        : (tensor<4x128x256xf32>, tensor<4x128xi32>, tensor<4x128xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$logits, Mt_IdTensor:$labels,
                       RankedTensorOf<[F32]>:$mask,
                       OptionalAttr<StrAttr>:$vocab_parallel_axis,
                       OptionalAttr<I64Attr>:$valid_vocab);
  let results = (outs Mt_F32Scalar:$loss);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Loss", "tokens vocab", "tokens*vocab; tokens; tokens; 1">;
}

def Mt_NumTokensOp : Mt_Op<"num_tokens", [Pure]> {
  let summary = "Number of loss tokens of a micro-batch: the sum of its loss mask";
  let description = [{
    `mask`: [B, S] f32 (mt.cross_entropy's loss mask). Result (f32 scalar):
    Σ mask, accumulated in fp64: Megatron-Core's num_tokens, which its loss
    function returns beside the summed token losses. mt-per-token-loss
    multiplies the micro-batch's mean loss by it (the sum of its token
    losses), and with calculate_per_token_loss the optimizer divides the
    gradients by its sum over the step's micro-batches and ranks.

    ```mlir
    %n = mt.num_tokens %mask : (tensor<4x128xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32]>:$mask);
  let results = (outs Mt_F32Scalar:$count);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let instruction = Mt_Instruction<"Loss", "n", "n; 1">;
}

//===----------------------------------------------------------------------===//
// Vocab-parallel cross-entropy: the local parts between its all-reduces
//===----------------------------------------------------------------------===//

// Megatron-Core's VocabParallelCrossEntropy (tensor_parallel/cross_entropy.py)
// in local steps; mt-expose-collectives builds them from a vocab-parallel
// mt.cross_entropy, with mt.all_reduce over `axis` between them:
//   logits_max -> all_reduce(max) -> predicted_logits -> all_reduce(sum) x2
//   -> cross_entropy_loss; backward: vocab_parallel_cross_entropy_grad.
// `logits` hold the columns [r·V, (r+1)·V) of the rank at coordinate r on
// `axis`; columns at or past `valid_vocab` (vocabulary padding) take no part.

def Mt_VocabParallelLogitsMaxOp : Mt_Op<"vocab_parallel_logits_max", [Pure]> {
  let summary = "Row maximum of this rank's slice of the logits";
  let description = [{
    `logits`: [B, S, V] (this rank's vocabulary slice); result: [B, S] f32,
    the maximum over the slice's valid columns (-inf where it has none).
    Its all-reduce(max) over `axis` is the row maximum of the full logits.

    ```mlir
    %m = mt.vocab_parallel_logits_max %logits {axis = "tp"}
        : (tensor<4x128x128xf32>) -> tensor<4x128xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$logits, StrAttr:$axis,
                       OptionalAttr<I64Attr>:$valid_vocab);
  let results = (outs RankedTensorOf<[F32]>:$row_max);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Loss", "tokens vocab axis:s valid_vocab?", "tokens*vocab; tokens">;
}

def Mt_VocabParallelPredictedLogitsOp : Mt_Op<"vocab_parallel_predicted_logits", [Pure]> {
  let summary = "This rank's share of the label's logit and of the softmax denominator";
  let description = [{
    `logits`: [B, S, V] (this rank's slice); `row_max`: [B, S] f32, the
    maximum over the full row; `labels`: [B, S]. Results, [B, S] f32 each:
    `predicted_logits` = logits[label] where this rank holds the label's
    column, else 0; `sum_exp_logits` = Σ over the slice's valid columns of
    exp(logits - row_max), accumulated in fp64. Their all-reduce(sum) over
    `axis` gives the full row's values.

    ```mlir
    %p, %e = mt.vocab_parallel_predicted_logits %logits, %m, %labels {axis = "tp"}
        : (tensor<4x128x128xf32>, tensor<4x128xf32>, tensor<4x128xi32>)
        -> (tensor<4x128xf32>, tensor<4x128xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$logits, RankedTensorOf<[F32]>:$row_max,
                       Mt_IdTensor:$labels, StrAttr:$axis,
                       OptionalAttr<I64Attr>:$valid_vocab);
  let results = (outs RankedTensorOf<[F32]>:$predicted_logits,
                      RankedTensorOf<[F32]>:$sum_exp_logits);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Loss", "tokens vocab axis:s valid_vocab?",
      "tokens*vocab; tokens; tokens; tokens; tokens">;
}

def Mt_CrossEntropyLossOp : Mt_Op<"cross_entropy_loss", [Pure]> {
  let summary = "Masked mean cross-entropy from the reduced rows of the logits";
  let description = [{
    `row_max`, `predicted_logits` (the label's logit), `sum_exp_logits`
    (Σ exp(logits - row_max)), `mask`: [B, S] f32, each over the full
    vocabulary. Result (f32 scalar): Σ mask · (log(sum_exp_logits) + row_max
    - predicted_logits) / Σ mask, accumulated in fp64, 0 when Σ mask is 0:
    the value of mt.cross_entropy.

    ```mlir
    %loss = mt.cross_entropy_loss %m, %p, %e, %mask
        : (tensor<4x128xf32>, tensor<4x128xf32>, tensor<4x128xf32>, tensor<4x128xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32]>:$row_max,
                       RankedTensorOf<[F32]>:$predicted_logits,
                       RankedTensorOf<[F32]>:$sum_exp_logits,
                       RankedTensorOf<[F32]>:$mask);
  let results = (outs Mt_F32Scalar:$loss);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Loss", "tokens", "tokens; tokens; tokens; tokens; 1">;
}

include "dialects/mt/MtGradOps.td"
include "dialects/mt/MtCollectiveOps.td"
include "dialects/mt/MtOptimizerOps.td"
include "dialects/mt/MtMoEOps.td"
include "dialects/mt/MtFusedOps.td"

#endif // MT_OPS_TD
