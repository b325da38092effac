// Mixture-of-experts token permutation ops of the `mt` dialect, as
// Megatron-Core computes a MoE layer after its router
// (megatron/core/transformer/moe/: token_dispatcher.py, moe_utils.py permute
// and unpermute, experts.py GroupedMLP):
//   mt.moe_router -> mt.moe_permute -> mt.moe_grouped_mlp -> mt.moe_unpermute
// and their gradients. Verifiers in MtMoEOps.cpp.
#ifndef MT_MOE_OPS_TD
#define MT_MOE_OPS_TD

def Mt_MoEPermuteOp : Mt_Op<"moe_permute", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Sorts the routed tokens by expert, with capacity and token dropping";
  let description = [{
    `input` [B, S, H]; `probs`, `indices` [B, S, K] (the router's top-k
    probabilities and experts). `permuted` [N, H] holds a copy of the token
    of each routed (token, slot) pair, grouped by expert in expert order and
    in token order within a group (Megatron-Core's `permute`); rows where no
    token goes are zero. `tokens_per_expert` [E] (i32) gives the size of each
    group, E the number of experts; `slot_rows` [B, S, K] (i32) the row of
    each slot, -1 where the slot was dropped.

    Dropless (no `capacity`): N = B·S·K, nothing is dropped. With `capacity`
    C (Megatron-Core's `get_capacity`: ceil(B·S·K / E · moe_expert_capacity_factor)),
    an expert keeps C of its slots: those of the largest `probs` (ties to the
    earlier token) with `drop_policy` "probs" (the default), the first ones
    in token order with "position". With `pad_to_capacity`, every group is C
    rows (zero rows after its tokens; tokens_per_expert = C) and N = E·C;
    without it N = min(B·S·K, E·C). `probs` only decides the drop: it has
    no gradient here (the un-permutation weights the experts' outputs).

    ```mlir
    %p, %counts, %rows = mt.moe_permute %x, %w, %i
        : (tensor<4x128x64xf32>, tensor<4x128x2xf32>, tensor<4x128x2xi32>) -> (tensor<1024x64xf32>, tensor<8xi32>, tensor<4x128x2xi32>)
    %p2, %c2, %r2 = mt.moe_permute %x, %w, %i {capacity = 80 : i64, drop_policy = "position", pad_to_capacity}
        : (tensor<4x128x64xf32>, tensor<4x128x2xf32>, tensor<4x128x2xi32>) -> (tensor<640x64xf32>, tensor<8xi32>, tensor<4x128x2xi32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, RankedTensorOf<[F32]>:$probs,
                       RankedTensorOf<[I32]>:$indices,
                       OptionalAttr<I64Attr>:$capacity,
                       OptionalAttr<StrAttr>:$drop_policy,
                       UnitAttr:$pad_to_capacity);
  let results = (outs Mt_FloatTensor:$permuted,
                      RankedTensorOf<[I32]>:$tokens_per_expert,
                      RankedTensorOf<[I32]>:$slot_rows);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE",
      "tokens hidden experts top_k rows capacity pad_to_capacity drop_policy=probs|position",
      "tokens*hidden; tokens*top_k; tokens*top_k; rows*hidden; experts; tokens*top_k">;
}

def Mt_MoEGroupedMLPOp : Mt_Op<"moe_grouped_mlp", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "The experts' SwiGLU over expert-sorted rows, one GEMM group per expert";
  let description = [{
    `input` [N, H] rows grouped by expert; `tokens_per_expert` [E] (i32) the
    group sizes (their sum at most N); `gate`, `up` [E, F, H], `down`
    [E, H, F]. Expert e takes the rows [o_e, o_e + tokens_per_expert[e]),
    o_e the sum of the sizes before it:
    `result`[r] = down[e] (silu(gate[e] x[r]) · up[e] x[r]) (Megatron-Core's
    GroupedMLP with `moe_grouped_gemm`); rows past the last group are zero.

    `fc1_output` [2, N, F] keeps the two first products for the gradient
    (Megatron-Core's GroupedMLP keeps its fc1 output for the SwiGLU's
    backward): `fc1_output`[0, r] = gate[e] x[r], `fc1_output`[1, r] =
    up[e] x[r] (the pre-activations, rounded as the backend rounds them
    before the SwiGLU: bf16 on the GPU); rows past the last group are zero.
    `mt.moe_grouped_mlp_grad` reads it instead of recomputing the products.

    ```mlir
    %y, %fc1 = mt.moe_grouped_mlp %p, %counts, %gate, %up, %down
        : (tensor<1024x64xf32>, tensor<8xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> (tensor<1024x64xf32>, tensor<2x1024x96xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input,
                       RankedTensorOf<[I32]>:$tokens_per_expert,
                       Mt_FloatTensor:$gate, Mt_FloatTensor:$up,
                       Mt_FloatTensor:$down);
  let results = (outs Mt_FloatTensor:$result, Mt_FloatTensor:$fc1_output);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "rows hidden ffn experts",
      "rows*hidden; experts; experts*ffn*hidden; experts*ffn*hidden; experts*ffn*hidden; " #
      "rows*hidden; 2*rows*ffn">;
}

def Mt_MoEUnpermuteOp : Mt_Op<"moe_unpermute", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>,
    DeclareOpInterfaceMethods<Mt_PartitionableOpInterface>]> {
  let summary = "Combines the experts' rows back into tokens, weighted by the router";
  let description = [{
    `input` [N, H] (the experts' outputs in the order of `mt.moe_permute`);
    `probs`, `slot_rows` [B, S, K] as the router and the permutation made
    them. `result`[b, s] = Σ_k probs[b, s, k] · input[slot_rows[b, s, k]]
    over the kept slots, k ascending (Megatron-Core's `unpermute` with
    probs); a token all of whose slots were dropped gets zeros.

    ```mlir
    %y = mt.moe_unpermute %out, %w, %rows
        : (tensor<1024x64xf32>, tensor<4x128x2xf32>, tensor<4x128x2xi32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, RankedTensorOf<[F32]>:$probs,
                       RankedTensorOf<[I32]>:$slot_rows);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "tokens hidden top_k rows",
      "rows*hidden; tokens*top_k; tokens*top_k; tokens*hidden">;
}

def Mt_MoEPermuteGradOp : Mt_GradOp<"moe_permute_grad"> {
  let summary = "Gradient of the token permutation: each token sums its rows' gradients";
  let description = [{
    `dpermuted` [N, H], `slot_rows` [B, S, K]; `dx` [B, S, H]:
    dx[b, s] = Σ_k dpermuted[slot_rows[b, s, k]] over the kept slots.

    ```mlir
    %dx = mt.moe_permute_grad %dp, %rows : (tensor<1024x64xf32>, tensor<4x128x2xi32>) -> tensor<4x128x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$dpermuted, RankedTensorOf<[I32]>:$slot_rows);
  let results = (outs Mt_FloatTensor:$dx);
  let instruction = Mt_Instruction<"MoE", "tokens hidden top_k rows",
      "rows*hidden; tokens*top_k; tokens*hidden">;
}

def Mt_MoEGroupedMLPGradOp : Mt_GradOp<"moe_grouped_mlp_grad"> {
  let summary = "Gradients of the grouped expert SwiGLU";
  let description = [{
    Operands as the forward `mt.moe_grouped_mlp`, then its `fc1_output`
    [2, N, F] (the gate and up pre-activations, which the SwiGLU's gradient
    reads instead of recomputing them: rows past the last group are not
    read), then `dy` [N, H]; results dx, dgate, dup, ddown. The act
    silu(gate x) · up x is recomputed from `fc1_output` (elementwise, no
    GEMM).

    ```mlir
    %dx, %dg, %du, %dd = mt.moe_grouped_mlp_grad %p, %counts, %gate, %up, %down, %fc1, %dy
        : (tensor<1024x64xf32>, tensor<8xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>, tensor<2x1024x96xf32>, tensor<1024x64xf32>)
          -> (tensor<1024x64xf32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input,
                       RankedTensorOf<[I32]>:$tokens_per_expert,
                       Mt_FloatTensor:$gate, Mt_FloatTensor:$up,
                       Mt_FloatTensor:$down, Mt_FloatTensor:$fc1_output,
                       Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dx, Mt_FloatTensor:$dgate,
                      Mt_FloatTensor:$dup, Mt_FloatTensor:$ddown);
  let instruction = Mt_Instruction<"MoE", "rows hidden ffn experts",
      "rows*hidden; experts; experts*ffn*hidden; experts*ffn*hidden; experts*ffn*hidden; " #
      "2*rows*ffn; rows*hidden; " #
      "rows*hidden; experts*ffn*hidden; experts*ffn*hidden; experts*ffn*hidden">;
}

def Mt_MoEUnpermuteGradOp : Mt_GradOp<"moe_unpermute_grad"> {
  let summary = "Gradients of the un-permutation w.r.t. the experts' rows and the probabilities";
  let description = [{
    Operands as the forward `mt.moe_unpermute` plus `dy` [B, S, H]:
    dinput[slot_rows[b, s, k]] = probs[b, s, k] · dy[b, s] (zero rows where
    no slot goes), dprobs[b, s, k] = ⟨input[slot_rows[b, s, k]], dy[b, s]⟩
    (zero for a dropped slot).

    ```mlir
    %dout, %dw = mt.moe_unpermute_grad %out, %w, %rows, %dy
        : (tensor<1024x64xf32>, tensor<4x128x2xf32>, tensor<4x128x2xi32>, tensor<4x128x64xf32>) -> (tensor<1024x64xf32>, tensor<4x128x2xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, RankedTensorOf<[F32]>:$probs,
                       RankedTensorOf<[I32]>:$slot_rows, Mt_FloatTensor:$dy);
  let results = (outs Mt_FloatTensor:$dinput, RankedTensorOf<[F32]>:$dprobs);
  let instruction = Mt_Instruction<"MoE", "tokens hidden top_k rows",
      "rows*hidden; tokens*top_k; tokens*top_k; tokens*hidden; rows*hidden; tokens*top_k">;
}

//===----------------------------------------------------------------------===//
// Expert parallelism: the alltoall dispatcher's steps around mt.all_to_all_v
// (Megatron-Core's MoEAlltoAllTokenDispatcher) and the allgather
// dispatcher's around mt.all_gather / mt.reduce_scatter
// (MoEAllGatherTokenDispatcher). Verifiers and gradients in
// MtMoEDispatch.cpp.
//===----------------------------------------------------------------------===//

def Mt_MoEExchangeCountsOp : Mt_Op<"moe_exchange_counts", [Pure]> {
  let summary = "The alltoall dispatcher's token counts, exchanged over the expert-parallel axis";
  let description = [{
    `tokens_per_expert` [E] (i32, this rank's permuted rows per expert, the
    experts of coordinate p on `axis` being [p·E/P, (p+1)·E/P)) is exchanged
    between the P ranks of `axis` (an all-to-all of E/P counts each):
    `send_counts` [P]: rows this rank sends to each rank (the sum over its
    experts); `global_counts` [P, E/P]: rows rank p sends to each local
    expert of this rank; `recv_counts` [P]: their sums over the local
    experts; `tokens_per_local_expert` [E/P]: their sums over the ranks
    (Megatron-Core's preprocess: input_splits, num_global_tokens_per_expert,
    output_splits, tokens_per_expert). Integers: no gradient.

    ```mlir
    %send, %recv, %global, %local = mt.moe_exchange_counts %counts {axis = "ep"}
        : (tensor<8xi32>) -> (tensor<2xi32>, tensor<2xi32>, tensor<2x4xi32>, tensor<4xi32>)
    ```
  }];
  let arguments = (ins RankedTensorOf<[I32]>:$tokens_per_expert, StrAttr:$axis);
  let results = (outs RankedTensorOf<[I32]>:$send_counts, RankedTensorOf<[I32]>:$recv_counts,
                      RankedTensorOf<[I32]>:$global_counts,
                      RankedTensorOf<[I32]>:$tokens_per_local_expert);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "axis:s? experts parts",
      "experts; parts; parts; experts; experts/parts">;
}

def Mt_MoEGatherCountsOp : Mt_Op<"moe_gather_counts", [Pure]> {
  let summary = "The allgather dispatcher's token counts, gathered over the expert-parallel axis";
  let description = [{
    `tokens_per_expert` [E] (i32, this rank's permuted rows per expert, the
    experts of coordinate p on `axis` being [p·E/P, (p+1)·E/P)) is
    all-gathered over the P ranks of `axis`; this rank, at coordinate c,
    keeps what its local experts need of every rank's rows once those are
    all-gathered too (Megatron-Core's MoEAllGatherTokenDispatcher, which
    gathers the routing map): `global_counts` [P, E/P]: rank p's rows for
    each local expert; `offsets` [P]: the first of them within rank p's
    rows (its rows for the experts before c·E/P);
    `tokens_per_local_expert` [E/P]: the sums over the ranks. With
    `same_experts` every rank of `axis` holds the same E experts (the etp
    axis: expert tensor parallelism, each rank a slice of every expert's
    ffn columns), and keeps every rank's counts: `global_counts` [P, E],
    `offsets` zero, `tokens_per_local_expert` [E] (Megatron-Core's gather of
    num_local_tokens_per_expert over the expert tensor-parallel ranks).
    Integers: no gradient.

    ```mlir
    %global, %offsets, %local = mt.moe_gather_counts %counts {axis = "ep"}
        : (tensor<8xi32>) -> (tensor<2x4xi32>, tensor<2xi32>, tensor<4xi32>)
    %all, %zeros, %sums = mt.moe_gather_counts %local {axis = "etp", same_experts}
        : (tensor<4xi32>) -> (tensor<2x4xi32>, tensor<2xi32>, tensor<4xi32>)
    ```
  }];
  let arguments = (ins RankedTensorOf<[I32]>:$tokens_per_expert, StrAttr:$axis,
                       UnitAttr:$same_experts);
  let results = (outs RankedTensorOf<[I32]>:$global_counts, RankedTensorOf<[I32]>:$offsets,
                      RankedTensorOf<[I32]>:$tokens_per_local_expert);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "axis:s? experts parts same_experts?",
      "experts; -; parts; -">;
}

def Mt_MoESortChunksOp : Mt_Op<"moe_sort_chunks", [Pure, DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Re-orders received rows from rank-major to expert-major chunks";
  let description = [{
    `input` [N, H] holds chunks in the order (p, g) — p the source rank, g
    the local expert, chunk (p, g) of `counts`[p, g] rows ([P, G], i32) — as
    mt.all_to_all_v delivers them; `result` has them in the order (g, p), so
    that each local expert's rows are consecutive for mt.moe_grouped_mlp
    (Megatron-Core's sort_chunks_by_idxs). With `offsets` ([P], i32; the
    allgather dispatcher, mt.moe_gather_counts), the input is P blocks of
    N/P rows, as mt.all_gather delivers them, and source p's chunks start at
    row p·N/P + offsets[p] of it. With `inverse`, from (g, p) back to the
    input's layout, before the combine's all-to-all (or reduce-scatter).
    Rows past (or between) the chunks are zero. The gradient is the inverse
    re-ordering.

    ```mlir
    %sorted = mt.moe_sort_chunks %recv, %global : (tensor<2048x64xf32>, tensor<2x4xi32>) -> tensor<2048x64xf32>
    %back = mt.moe_sort_chunks %out, %global {inverse} : (tensor<2048x64xf32>, tensor<2x4xi32>) -> tensor<2048x64xf32>
    %mine = mt.moe_sort_chunks %all, %global, %offsets : (tensor<2048x64xf32>, tensor<2x4xi32>, tensor<2xi32>) -> tensor<2048x64xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, RankedTensorOf<[I32]>:$counts,
                       Optional<RankedTensorOf<[I32]>>:$offsets, UnitAttr:$inverse);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"MoE", "rows hidden parts groups inverse offsets?",
      "rows*hidden; parts*groups; offsets?parts; rows*hidden">;
}

#endif // MT_MOE_OPS_TD
