// Gradient ops of the `mt` dialect, created by the mt-autodiff pass. Each
// takes the forward operands it needs and the gradient of the forward
// result(s), and yields the gradients of the forward operands.
#ifndef MT_GRAD_OPS_TD
#define MT_GRAD_OPS_TD

class Mt_GradOp<string mnemonic, list<Trait> traits = []>
    : Mt_Op<mnemonic, !listconcat([Pure], traits)> {
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let addsIntoResults = 1; // gradients are summed over the uses of a value
}

def Mt_EmbeddingGradOp : Mt_GradOp<"embedding_grad"> {
  let summary = "Gradient of the embedding table: scatter-add of dy rows by id";
  let description = [{
    `ids` [B, S], `dy` [B, S, H]; result [V, H]: row v is the sum of the dy
    rows of the tokens whose id is v.

    ```mlir
    %dt = mt.embedding_grad %ids, %dy : (tensor<4x128xi32>, tensor<4x128x64xf32>) -> tensor<256x64xf32>
    ```
  }];
  let arguments = (ins Mt_IdTensor:$ids, Mt_FloatTensor:$dy,
                       OptionalAttr<StrAttr>:$vocab_parallel_axis);
  let results = (outs Mt_FloatTensor:$dtable);
  let instruction = Mt_Instruction<"Elementwise", "tokens vocab hidden vocab_parallel_axis:s?",
      "tokens; tokens*hidden; vocab*hidden">;
}

def Mt_LinearGradInputOp : Mt_GradOp<"linear_grad_input"> {
  let summary = "Gradient of a linear map with respect to its input: dy W";
  let description = [{
    `dy` [..., out], `weight` [out, in]; result [..., in].

    ```mlir
    %dx = mt.linear_grad_input %dy, %w : (tensor<4x128x96xf32>, tensor<96x64xf32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$dy, Mt_FloatTensor:$weight);
  let results = (outs Mt_FloatTensor:$dx);
  let instruction = Mt_Instruction<"Gemm", "tokens in out", "tokens*out; out*in; tokens*in">;
}

def Mt_LinearGradWeightOp : Mt_GradOp<"linear_grad_weight"> {
  let summary = "Gradient of a linear map with respect to its weight: dyᵀ x";
  let description = [{
    `input` [..., in], `dy` [..., out]; result [out, in], summed over tokens.

    ```mlir
    %dw = mt.linear_grad_weight %x, %dy : (tensor<4x128x64xf32>, tensor<4x128x96xf32>) -> tensor<96x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dweight);
  let instruction = Mt_Instruction<"Gemm", "tokens in out", "tokens*in; tokens*out; out*in">;
}

def Mt_BiasGradOp : Mt_GradOp<"bias_grad"> {
  let summary = "Gradient of a bias: dy summed over tokens";
  let description = [{
    ```mlir
    %db = mt.bias_grad %dy : (tensor<4x128x96xf32>) -> tensor<96xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dbias);
  let instruction = Mt_Instruction<"Elementwise", "tokens out", "tokens*out; out">;
}

def Mt_RMSNormGradOp : Mt_GradOp<"rmsnorm_grad"> {
  let summary = "Gradients of RMSNorm with respect to input and weight";
  let description = [{
    ```mlir
    %dx, %dw = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64}
        : (tensor<4x128x64xf32>, tensor<64xf32>, tensor<4x128x64xf32>) -> (tensor<4x128x64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight,
                       Mt_FloatTensor:$dy, F64Attr:$eps);
  let results = (outs Mt_FloatTensor:$dx, Mt_FloatTensor:$dweight);
  let instruction = Mt_Instruction<"Norm", "rows dim eps:f", "rows*dim; dim; rows*dim; rows*dim; dim">;
}

def Mt_AddRMSNormGradOp : Mt_GradOp<"add_rmsnorm_grad"> {
  let summary = "RMSNorm's input gradient added to the residual stream's (mt-fuse)";
  let description = [{
    dx = dresidual + (dx of `mt.rmsnorm_grad` %input, %weight, %dy), and
    dweight as `mt.rmsnorm_grad`'s: the values of `mt.rmsnorm_grad`
    followed by the `mt.add` that sums its dx with the gradient `dresidual`
    reaching the norm's input through the residual stream, in one pass (the
    backward of a fused add + norm; Megatron/Transformer Engine). Made by
    mt-fuse. `input` is the norm's input (the residual stream's sum);
    `dy`, `dresidual` and `dx` have its type.

    ```mlir
    %dh, %dw = mt.add_rmsnorm_grad %h, %w, %dy, %dres {eps = 1.0e-05 : f64}
        : (tensor<4x128x64xf32>, tensor<64xf32>, tensor<4x128x64xf32>, tensor<4x128x64xf32>) -> (tensor<4x128x64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight,
                       Mt_FloatTensor:$dy, Mt_FloatTensor:$dresidual, F64Attr:$eps);
  let results = (outs Mt_FloatTensor:$dx, Mt_FloatTensor:$dweight);
  let instruction = Mt_Instruction<"Norm", "rows dim eps:f",
      "rows*dim; dim; rows*dim; rows*dim; rows*dim; dim">;
}

def Mt_LayerNormGradOp : Mt_GradOp<"layernorm_grad"> {
  let summary = "Gradients of LayerNorm with respect to input, weight and bias";
  let description = [{
    ```mlir
    %dx, %dw, %db = mt.layernorm_grad %x, %w, %dy {eps = 1.0e-05 : f64}
        : (tensor<4x128x64xf32>, tensor<64xf32>, tensor<4x128x64xf32>) -> (tensor<4x128x64xf32>, tensor<64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight,
                       Mt_FloatTensor:$dy, F64Attr:$eps);
  let results = (outs Mt_FloatTensor:$dx, Mt_FloatTensor:$dweight,
                      Mt_FloatTensor:$dbias);
  let instruction = Mt_Instruction<"Norm", "rows dim eps:f",
      "rows*dim; dim; rows*dim; rows*dim; dim; dim">;
}

def Mt_RotaryGradOp : Mt_GradOp<"rotary_grad"> {
  let summary = "Gradient of rotary embedding: dy rotated by the opposite angle";
  let description = [{
    Same attributes, `position_ids` and `context_parallel_axis` as the
    forward `mt.rotary`.

    ```mlir
    %dx = mt.rotary_grad %dy {theta = 1.0e+04 : f64} : (tensor<4x128x4x16xf32>) -> tensor<4x128x4x16xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$dy, Optional<RankedTensorOf<[I32]>>:$position_ids,
                       F64Attr:$theta,
                       OptionalAttr<F64Attr>:$scaling_factor,
                       OptionalAttr<F64Attr>:$low_freq_factor,
                       OptionalAttr<F64Attr>:$high_freq_factor,
                       OptionalAttr<I64Attr>:$original_max_position,
                       OptionalAttr<StrAttr>:$context_parallel_axis);
  let results = (outs Mt_FloatTensor:$dx);
  let instruction = Mt_Instruction<"Elementwise",
      "batch seq heads head_dim theta:f scaling_factor:f? low_freq_factor:f? high_freq_factor:f? original_max_position? position_ids? context_parallel_axis:s?",
      "batch*seq*heads*head_dim; position_ids?batch*seq; batch*seq*heads*head_dim">;
}

def Mt_AttentionGradOp : Mt_GradOp<"attention_grad"> {
  let summary = "Gradients of causal grouped-query attention";
  let description = [{
    `out` is the result of the forward `mt.attention` (whose log-sum-exp the
    backend keeps beside it); `position_ids` and `context_parallel_axis`
    are the forward's, if any; results are dq, dk, dv (dk, dv of the
    gathered keys and values under context parallelism).

    ```mlir
    %dq, %dk, %dv = mt.attention_grad %q, %k, %v, %o, %do {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 2.5e-01 : f64}
        : (tensor<4x128x4x16xf32>, tensor<4x128x2x16xf32>, tensor<4x128x2x16xf32>, tensor<4x128x4x16xf32>, tensor<4x128x4x16xf32>)
          -> (tensor<4x128x4x16xf32>, tensor<4x128x2x16xf32>, tensor<4x128x2x16xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$query, Mt_FloatTensor:$key,
                       Mt_FloatTensor:$value, Mt_FloatTensor:$out,
                       Mt_FloatTensor:$dout, Optional<RankedTensorOf<[I32]>>:$position_ids,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads,
                       I64Attr:$head_dim, F64Attr:$scale,
                       OptionalAttr<StrAttr>:$context_parallel_axis);
  let results = (outs Mt_FloatTensor:$dquery, Mt_FloatTensor:$dkey,
                      Mt_FloatTensor:$dvalue);
  let instruction = Mt_Instruction<"Attention", "batch seq kv_seq heads kv_heads head_dim scale:f position_ids? context_parallel_axis:s?",
      "batch*seq*heads*head_dim; batch*kv_seq*kv_heads*head_dim; batch*kv_seq*kv_heads*head_dim; batch*seq*heads*head_dim; batch*seq*heads*head_dim; batch*heads*seq; position_ids?batch*seq; " #
      "batch*seq*heads*head_dim; batch*kv_seq*kv_heads*head_dim; batch*kv_seq*kv_heads*head_dim", 1>;
}

def Mt_AttentionBlockGradOp : Mt_GradOp<"attention_block_grad"> {
  let summary = "Gradients of one block of ring attention, from its output's and log-sum-exp's";
  let description = [{
    Operands: the forward's query, key, value, result `out` and `lse`, and
    the gradients `dout` and `dlse` of both, and the forward's
    `position_ids` if any; results dq, dk, dv. Same attributes as
    `mt.attention_block`.

    ```mlir
    %dq, %dk, %dv = mt.attention_block_grad %q, %k, %v, %o, %lse, %do, %dlse {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 2.5e-01 : f64, context_parallel_axis = "cp", step = 1 : i64}
        : (tensor<4x64x4x16xf32>, tensor<4x64x2x16xf32>, tensor<4x64x2x16xf32>, tensor<4x64x4x16xf32>, tensor<4x4x64xf32>, tensor<4x64x4x16xf32>, tensor<4x4x64xf32>)
          -> (tensor<4x64x4x16xf32>, tensor<4x64x2x16xf32>, tensor<4x64x2x16xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$query, Mt_FloatTensor:$key, Mt_FloatTensor:$value,
                       Mt_FloatTensor:$out, RankedTensorOf<[F32]>:$lse, Mt_FloatTensor:$dout,
                       RankedTensorOf<[F32]>:$dlse, Optional<RankedTensorOf<[I32]>>:$position_ids,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads,
                       I64Attr:$head_dim, F64Attr:$scale, StrAttr:$context_parallel_axis,
                       I64Attr:$step);
  let results = (outs Mt_FloatTensor:$dquery, Mt_FloatTensor:$dkey, Mt_FloatTensor:$dvalue);
  let instruction = Mt_Instruction<"Attention",
      "batch seq heads kv_heads head_dim scale:f position_ids? context_parallel_axis:s step",
      "batch*seq*heads*head_dim; batch*seq*kv_heads*head_dim; batch*seq*kv_heads*head_dim; " #
      "batch*seq*heads*head_dim; batch*heads*seq; batch*seq*heads*head_dim; batch*heads*seq; " #
      "position_ids?batch*seq; " #
      "batch*seq*heads*head_dim; batch*seq*kv_heads*head_dim; batch*seq*kv_heads*head_dim">;
}

def Mt_AttentionMergeGradOp : Mt_GradOp<"attention_merge_grad"> {
  let summary = "Gradients of a log-sum-exp merge of two partial attentions";
  let description = [{
    Operands: the forward's four operands, its results `out` and `lse`, and
    their gradients; results the gradients of out_a, lse_a, out_b, lse_b.

    ```mlir
    %doa, %dla, %dob, %dlb = mt.attention_merge_grad %oa, %la, %ob, %lb, %o, %l, %do, %dl
        : (tensor<4x64x4x16xf32>, tensor<4x4x64xf32>, tensor<4x64x4x16xf32>, tensor<4x4x64xf32>, tensor<4x64x4x16xf32>, tensor<4x4x64xf32>, tensor<4x64x4x16xf32>, tensor<4x4x64xf32>)
          -> (tensor<4x64x4x16xf32>, tensor<4x4x64xf32>, tensor<4x64x4x16xf32>, tensor<4x4x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$out_a, RankedTensorOf<[F32]>:$lse_a,
                       Mt_FloatTensor:$out_b, RankedTensorOf<[F32]>:$lse_b,
                       Mt_FloatTensor:$out, RankedTensorOf<[F32]>:$lse,
                       Mt_FloatTensor:$dout, RankedTensorOf<[F32]>:$dlse);
  let results = (outs Mt_FloatTensor:$dout_a, RankedTensorOf<[F32]>:$dlse_a,
                      Mt_FloatTensor:$dout_b, RankedTensorOf<[F32]>:$dlse_b);
  let instruction = Mt_Instruction<"Attention", "batch seq heads head_dim",
      "batch*seq*heads*head_dim; batch*heads*seq; batch*seq*heads*head_dim; batch*heads*seq; " #
      "batch*seq*heads*head_dim; batch*heads*seq; batch*seq*heads*head_dim; batch*heads*seq; " #
      "batch*seq*heads*head_dim; batch*heads*seq; batch*seq*heads*head_dim; batch*heads*seq">;
}

def Mt_SwiGLUGradOp : Mt_GradOp<"swiglu_grad"> {
  let summary = "Gradients of silu(gate) * up";
  let description = [{
    ```mlir
    %dg, %du = mt.swiglu_grad %g, %u, %dy : (tensor<4x128x256xf32>, tensor<4x128x256xf32>, tensor<4x128x256xf32>) -> (tensor<4x128x256xf32>, tensor<4x128x256xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$gate, Mt_FloatTensor:$up, Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dgate, Mt_FloatTensor:$dup);
  let instruction = Mt_Instruction<"Elementwise", "n", "n; n; n; n; n">;
}

def Mt_GELUGradOp : Mt_GradOp<"gelu_grad"> {
  let summary = "Gradient of GELU";
  let description = [{
    ```mlir
    %dx = mt.gelu_grad %x, %dy : (tensor<4x128x256xf32>, tensor<4x128x256xf32>) -> tensor<4x128x256xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$dy,
                       UnitAttr:$approximate_tanh);
  let results = (outs Mt_FloatTensor:$dx);
  let instruction = Mt_Instruction<"Elementwise", "n approximate_tanh?", "n; n; n">;
}

def Mt_MoERouterGradOp : Mt_GradOp<"moe_router_grad"> {
  let summary = "Gradients of the router through its weights and aux loss";
  let description = [{
    Takes the router's input and weight, the gradient of the top-k weights,
    of the load-balancing loss and of the z-loss, and the forward's
    `token_counts` where it has them; yields dx and dweight. Same attributes
    as the forward `mt.moe_router`.

    ```mlir
    %dx, %dw = mt.moe_router_grad %x, %wr, %dweights, %daux, %dz {top_k = 2 : i64, norm_topk_prob, aux_loss_coeff = 1.0e-02 : f64}
        : (tensor<4x128x64xf32>, tensor<8x64xf32>, tensor<4x128x2xf32>, tensor<f32>, tensor<f32>) -> (tensor<4x128x64xf32>, tensor<8x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, Mt_FloatTensor:$weight,
                       RankedTensorOf<[F32]>:$dweights, Mt_F32Scalar:$daux,
                       Mt_F32Scalar:$dz, Optional<RankedTensorOf<[F32]>>:$token_counts,
                       I64Attr:$top_k, UnitAttr:$norm_topk_prob,
                       F64Attr:$aux_loss_coeff,
                       OptionalAttr<StrAttr>:$load_balancing_type,
                       OptionalAttr<F64Attr>:$z_loss_coeff,
                       OptionalAttr<I64Attr>:$token_shards);
  let results = (outs Mt_FloatTensor:$dx, Mt_FloatTensor:$dweight);
  let instruction = Mt_Instruction<"MoE", "tokens hidden experts top_k norm_topk_prob? aux_loss_coeff:f seq? load_balancing_type=aux_loss|seq_aux_loss|none z_loss_coeff:f? count_groups? token_shards?",
      "tokens*hidden; experts*hidden; tokens*top_k; 1; 1; count_groups?count_groups*experts; tokens*hidden; experts*hidden">;
}

def Mt_SigmoidGateGradOp : Mt_GradOp<"sigmoid_gate_grad"> {
  let summary = "Gradients of sigmoid(gate) * input";
  let description = [{
    With s = sigmoid(`gate`): `dinput` = s · `dy` and `dgate`[..., 0] =
    s (1 − s) Σ_h `dy`[..., h] `input`[..., h]. Shapes as the forward
    `mt.sigmoid_gate`.

    ```mlir
    %dg, %dx = mt.sigmoid_gate_grad %logit, %x, %dy : (tensor<4x128x1xf32>, tensor<4x128x64xf32>, tensor<4x128x64xf32>) -> (tensor<4x128x1xf32>, tensor<4x128x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$gate, Mt_FloatTensor:$input, Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dgate, Mt_FloatTensor:$dinput);
  let instruction = Mt_Instruction<"MoE", "rows dim",
      "rows; rows*dim; rows*dim; rows; rows*dim">;
}

def Mt_CrossEntropyGradOp : Mt_GradOp<"cross_entropy_grad"> {
  let summary = "Gradient of the masked mean cross-entropy w.r.t. the logits";
  let description = [{
    dlogits = dloss · mask / Σmask · (softmax(logits) - onehot(labels)).

    ```mlir
    %dl = mt.cross_entropy_grad %logits, %labels, %mask, %dloss
        : (tensor<4x128x256xf32>, tensor<4x128xi32>, tensor<4x128xf32>, tensor<f32>) -> tensor<4x128x256xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$logits, Mt_IdTensor:$labels,
                       RankedTensorOf<[F32]>:$mask, Mt_F32Scalar:$dloss,
                       OptionalAttr<StrAttr>:$vocab_parallel_axis,
                       OptionalAttr<I64Attr>:$valid_vocab);
  let results = (outs Mt_FloatTensor:$dlogits);
  // Written, not added: the plan may compute it in the logits' own buffer
  // (ProgramEmitter); autodiff adds an mt.add where the logits have other uses.
  let addsIntoResults = 0;
  let instruction = Mt_Instruction<"Loss", "tokens vocab", "tokens*vocab; tokens; tokens; 1; tokens*vocab">;
}

def Mt_VocabParallelCrossEntropyGradOp : Mt_GradOp<"vocab_parallel_cross_entropy_grad"> {
  let summary = "Gradient of the vocab-parallel cross-entropy w.r.t. this rank's logits";
  let description = [{
    `logits` [B, S, V] (this rank's slice of the vocabulary on `axis`),
    `labels` [B, S], `mask` [B, S], `row_max` and `sum_exp_logits` [B, S]
    (the forward's values after their all-reduces), `dloss` scalar. Result
    [B, S, V]: dloss · mask / Σmask · (exp(logits - row_max) /
    sum_exp_logits - onehot(labels)) on the valid columns, 0 on padding
    columns (Megatron's calculate_gradients). Local: the forward's reduced
    rows already hold everything the other ranks contribute.

    ```mlir
    %dl = mt.vocab_parallel_cross_entropy_grad %logits, %labels, %mask, %m, %e, %dloss {axis = "tp"}
        : (tensor<4x128x128xf32>, tensor<4x128xi32>, tensor<4x128xf32>, tensor<4x128xf32>, tensor<4x128xf32>, tensor<f32>) -> tensor<4x128x128xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$logits, Mt_IdTensor:$labels,
                       RankedTensorOf<[F32]>:$mask, RankedTensorOf<[F32]>:$row_max,
                       RankedTensorOf<[F32]>:$sum_exp_logits, Mt_F32Scalar:$dloss,
                       StrAttr:$axis, OptionalAttr<I64Attr>:$valid_vocab);
  let results = (outs Mt_FloatTensor:$dlogits);
  // Written, not added: the plan may compute it in the logits' own buffer
  // (ProgramEmitter); autodiff adds an mt.add where the logits have other uses.
  let addsIntoResults = 0;
  let instruction = Mt_Instruction<"Loss", "tokens vocab axis:s valid_vocab?",
      "tokens*vocab; tokens; tokens; tokens; tokens; 1; tokens*vocab">;
}

#endif // MT_GRAD_OPS_TD
