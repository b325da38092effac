// RUN: mtc-opt %s -split-input-file -verify-diagnostics

func.func @permute_rows(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op expects permuted of shape [16, 8], got [12, 8]}}
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<12x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  return
}

// -----

func.func @permute_padded_rows(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op expects permuted of shape [12, 8], got [16, 8]}}
  %p, %c, %r = mt.moe_permute %x, %w, %i {capacity = 3 : i64, pad_to_capacity}
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  return
}

// -----

func.func @permute_policy(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op expects drop_policy "probs" or "position", got "random"}}
  %p, %c, %r = mt.moe_permute %x, %w, %i {capacity = 3 : i64, drop_policy = "random"}
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<12x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  return
}

// -----

func.func @permute_pad_dropless(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op has drop_policy or pad_to_capacity but no capacity}}
  %p, %c, %r = mt.moe_permute %x, %w, %i {pad_to_capacity}
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  return
}

// -----

func.func @permute_capacity(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op expects capacity >= 1, got 0}}
  %p, %c, %r = mt.moe_permute %x, %w, %i {capacity = 0 : i64}
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  return
}

// -----

func.func @permute_topk(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op expects 1 <= top_k (2) <= experts (1, the size of tokens_per_expert)}}
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<1xi32>, tensor<2x4x2xi32>)
  return
}

// -----

func.func @permute_indices(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x1xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op expects indices of shape [2, 4, 2], got [2, 4, 1]}}
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x1xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  return
}

// -----

func.func @permute_probs(%x: tensor<2x4x8xf32>, %w: tensor<2x3x2xf32>, %i: tensor<2x3x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute' op expects probs of shape [2, 4, 2], got [2, 3, 2]}}
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x4x8xf32>, tensor<2x3x2xf32>, tensor<2x3x2xi32>) -> (tensor<12x8xf32>, tensor<4xi32>, tensor<2x3x2xi32>)
  return
}

// -----

func.func @grouped_down(%p: tensor<16x8xf32>, %c: tensor<4xi32>, %g: tensor<4x6x8xf32>, %d: tensor<4x6x8xf32>) {
  // expected-error @+1 {{'mt.moe_grouped_mlp' op expects down of shape [4, 8, 6], got [4, 6, 8]}}
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return
}

// -----

func.func @grouped_experts(%p: tensor<16x8xf32>, %c: tensor<3xi32>, %g: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{'mt.moe_grouped_mlp' op expects gate of shape [3, 6, 8], got [4, 6, 8]}}
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<3xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return
}

// -----

func.func @grouped_result(%p: tensor<16x8xf32>, %c: tensor<4xi32>, %g: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{'mt.moe_grouped_mlp' op expects result of type 'tensor<16x8xf32>'}}
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<8x8xf32>, tensor<2x16x6xf32>)
  return
}

// -----

func.func @unpermute_width(%o: tensor<16x8xf32>, %w: tensor<2x4x2xf32>, %r: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_unpermute' op expects result of shape [2, 4, 8], got [2, 4, 6]}}
  %y = mt.moe_unpermute %o, %w, %r
      : (tensor<16x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> tensor<2x4x6xf32>
  return
}

// -----

func.func @unpermute_rows(%o: tensor<16x8xf32>, %w: tensor<2x4x2xf32>, %r: tensor<2x4x1xi32>) {
  // expected-error @+1 {{'mt.moe_unpermute' op expects slot_rows of shape [2, 4, 2], got [2, 4, 1]}}
  %y = mt.moe_unpermute %o, %w, %r
      : (tensor<16x8xf32>, tensor<2x4x2xf32>, tensor<2x4x1xi32>) -> tensor<2x4x8xf32>
  return
}

// -----

func.func @permute_grad_dx(%dp: tensor<16x8xf32>, %r: tensor<2x4x2xi32>) {
  // expected-error @+1 {{'mt.moe_permute_grad' op expects dx of shape [2, 4, 8], got [2, 4, 6]}}
  %dx = mt.moe_permute_grad %dp, %r : (tensor<16x8xf32>, tensor<2x4x2xi32>) -> tensor<2x4x6xf32>
  return
}

// -----

func.func @grouped_grad_dy(%p: tensor<16x8xf32>, %c: tensor<4xi32>, %g: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>, %fc1: tensor<2x16x6xf32>, %dy: tensor<8x8xf32>) {
  // expected-error @+1 {{'mt.moe_grouped_mlp_grad' op expects dy of type 'tensor<16x8xf32>'}}
  %dx, %dg, %du, %dd = mt.moe_grouped_mlp_grad %p, %c, %g, %g, %d, %fc1, %dy
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>, tensor<2x16x6xf32>, tensor<8x8xf32>)
        -> (tensor<16x8xf32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>)
  return
}

// -----

func.func @unpermute_grad_dprobs(%o: tensor<16x8xf32>, %w: tensor<2x4x2xf32>, %r: tensor<2x4x2xi32>, %dy: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'mt.moe_unpermute_grad' op expects dprobs of type 'tensor<2x4x2xf32>'}}
  %do, %dw = mt.moe_unpermute_grad %o, %w, %r, %dy
      : (tensor<16x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>, tensor<2x4x8xf32>) -> (tensor<16x8xf32>, tensor<2x4x1xf32>)
  return
}

// -----

func.func @exchange_counts_split(%c: tensor<6xi32>) {
  // expected-error @+1 {{'mt.moe_exchange_counts' op expects the experts (6) divisible by the ranks of 'ep' (4, the size of send_counts)}}
  %s, %r, %g, %l = mt.moe_exchange_counts %c {axis = "ep"}
      : (tensor<6xi32>) -> (tensor<4xi32>, tensor<4xi32>, tensor<4x1xi32>, tensor<1xi32>)
  return
}

// -----

func.func @exchange_counts_global(%c: tensor<8xi32>) {
  // expected-error @+1 {{'mt.moe_exchange_counts' op expects global_counts of shape [2, 4], got [4, 2]}}
  %s, %r, %g, %l = mt.moe_exchange_counts %c {axis = "ep"}
      : (tensor<8xi32>) -> (tensor<2xi32>, tensor<2xi32>, tensor<4x2xi32>, tensor<4xi32>)
  return
}

// -----

func.func @exchange_counts_axis(%c: tensor<8xi32>) {
  // expected-error @+1 {{'mt.moe_exchange_counts' op expects a mesh axis}}
  %s, %r, %g, %l = mt.moe_exchange_counts %c {axis = "experts"}
      : (tensor<8xi32>) -> (tensor<2xi32>, tensor<2xi32>, tensor<2x4xi32>, tensor<4xi32>)
  return
}

// -----

func.func @sort_chunks_result(%x: tensor<64x8xf32>, %g: tensor<2x4xi32>) {
  // expected-error @+1 {{'mt.moe_sort_chunks' op expects result of type 'tensor<64x8xf32>'}}
  %0 = mt.moe_sort_chunks %x, %g : (tensor<64x8xf32>, tensor<2x4xi32>) -> tensor<32x8xf32>
  return
}

// -----

func.func @sort_chunks_counts(%x: tensor<64x8xf32>, %g: tensor<8xi32>) {
  // expected-error @+1 {{'mt.moe_sort_chunks' op expects counts of rank 2, got [8]}}
  %0 = mt.moe_sort_chunks %x, %g : (tensor<64x8xf32>, tensor<8xi32>) -> tensor<64x8xf32>
  return
}

// -----

func.func @gather_counts_split(%c: tensor<6xi32>) {
  // expected-error @+1 {{'mt.moe_gather_counts' op expects the experts (6) divisible by the ranks of 'ep' (4, the size of offsets)}}
  %g, %o, %l = mt.moe_gather_counts %c {axis = "ep"}
      : (tensor<6xi32>) -> (tensor<4x1xi32>, tensor<4xi32>, tensor<1xi32>)
  return
}

// -----

func.func @gather_counts_local(%c: tensor<8xi32>) {
  // expected-error @+1 {{'mt.moe_gather_counts' op expects tokens_per_local_expert of shape [4], got [2]}}
  %g, %o, %l = mt.moe_gather_counts %c {axis = "ep"}
      : (tensor<8xi32>) -> (tensor<2x4xi32>, tensor<2xi32>, tensor<2xi32>)
  return
}

// -----

func.func @sort_chunks_offsets(%x: tensor<64x8xf32>, %g: tensor<2x4xi32>, %o: tensor<4xi32>) {
  // expected-error @+1 {{'mt.moe_sort_chunks' op expects offsets of shape [2], got [4]}}
  %0 = mt.moe_sort_chunks %x, %g, %o : (tensor<64x8xf32>, tensor<2x4xi32>, tensor<4xi32>) -> tensor<64x8xf32>
  return
}

// -----

func.func @sort_chunks_blocks(%x: tensor<63x8xf32>, %g: tensor<2x4xi32>, %o: tensor<2xi32>) {
  // expected-error @+1 {{'mt.moe_sort_chunks' op expects the rows (63) to be 2 equal blocks, one per offset}}
  %0 = mt.moe_sort_chunks %x, %g, %o : (tensor<63x8xf32>, tensor<2x4xi32>, tensor<2xi32>) -> tensor<63x8xf32>
  return
}

// -----

func.func @grouped_fc1(%p: tensor<16x8xf32>, %c: tensor<4xi32>, %g: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{'mt.moe_grouped_mlp' op expects fc1_output of shape [2, 16, 6], got [2, 16, 8]}}
  %o, %fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x8xf32>)
  return
}

// -----

func.func @grouped_grad_fc1(%p: tensor<16x8xf32>, %c: tensor<4xi32>, %g: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>, %fc1: tensor<16x6xf32>, %dy: tensor<16x8xf32>) {
  // expected-error @+1 {{'mt.moe_grouped_mlp_grad' op expects fc1_output of shape [2, 16, 6], got [16, 6]}}
  %dx, %dg, %du, %dd = mt.moe_grouped_mlp_grad %p, %c, %g, %g, %d, %fc1, %dy
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>, tensor<16x6xf32>, tensor<16x8xf32>)
        -> (tensor<16x8xf32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>)
  return
}
