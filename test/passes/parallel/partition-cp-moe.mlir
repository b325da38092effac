// RUN: mtc-opt %s -split-input-file -mt-partition-cp -verify-diagnostics | FileCheck %s

// A MoE layer under cp = 2: every rank routes its own tokens, with the
// whole micro-batch's token counts (each rank's mt.moe_router_counts summed
// over cp) and token_shards = 2, so that its load-balancing and z-losses
// are its terms of the micro-batch's (Megatron-Core's router under cp); it
// permutes, runs the experts on and un-permutes its own tokens: half of
// the rows. The loss is the rank's share of the cross-entropy plus its
// terms of the router's losses.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @router : tensor<4x8xf32> init(normal, std = 0.02)
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.up" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
// CHECK-LABEL: func.func @forward
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %labels: tensor<2x8xi32> {mt.input = "labels"},
                   %mask: tensor<2x8xf32> {mt.input = "loss_mask"}) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  // CHECK: %[[X:.*]] = mt.embedding {{.*}} -> tensor<2x4x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x8xi32>, tensor<32x8xf32>) -> tensor<2x8x8xf32>
  %wr = mt.weight @router : tensor<4x8xf32>
  // CHECK: %[[COUNTS:.*]] = mt.moe_router_counts %[[X]], %[[WR:.*]] {top_k = 2 : i64} : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<1x4xf32>
  // CHECK-NEXT: %[[ALL:.*]] = mt.all_reduce %[[COUNTS]] {axis = "cp"} : tensor<1x4xf32>
  // CHECK-NEXT: %[[W:.*]], %[[I:.*]], %[[AUX:.*]], %[[Z:.*]] = mt.moe_router %[[X]], %[[WR]], %[[ALL]] {aux_loss_coeff = 1.000000e-02 : f64, token_shards = 2 : i64, top_k = 2 : i64, z_loss_coeff = 1.000000e-03 : f64}
  // CHECK-SAME: (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<1x4xf32>) -> (tensor<2x4x2xf32>, tensor<2x4x2xi32>, tensor<f32>, tensor<f32>)
  %w, %i, %aux, %z = mt.moe_router %x, %wr {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64, z_loss_coeff = 1.0e-03 : f64}
      : (tensor<2x8x8xf32>, tensor<4x8xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %u = mt.weight @"e.*.up" : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<4x8x6xf32>
  // CHECK: %[[P:.*]], %[[C:.*]], %[[R:.*]] = mt.moe_permute %[[X]], %[[W]], %[[I]] : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x8x8xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>) -> (tensor<32x8xf32>, tensor<4xi32>, tensor<2x8x2xi32>)
  // CHECK: %[[O:.*]], %{{.*}} = mt.moe_grouped_mlp %[[P]], %[[C]], {{.*}} -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %u, %d
      : (tensor<32x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<32x8xf32>, tensor<2x32x6xf32>)
  // CHECK: mt.moe_unpermute %[[O]], %[[W]], %[[R]] : (tensor<16x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> tensor<2x4x8xf32>
  %y = mt.moe_unpermute %o, %w, %r : (tensor<32x8xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>) -> tensor<2x8x8xf32>
  %s = mt.add %x, %y : tensor<2x8x8xf32>
  %logits = mt.linear %s, %e : (tensor<2x8x8xf32>, tensor<32x8xf32>) -> tensor<2x8x32xf32>
  // CHECK: %[[CE:.*]] = mt.cross_entropy
  // CHECK-NEXT: %[[MINE:.*]] = mt.num_tokens
  // CHECK-NEXT: %[[N:.*]] = mt.all_reduce %[[MINE]] {axis = "cp"} : tensor<f32>
  // CHECK-NEXT: %[[SUM:.*]] = mt.scale_by %[[CE]], %[[MINE]] : tensor<f32>, tensor<f32>
  // CHECK-NEXT: %[[SHARE:.*]] = mt.scale_by %[[SUM]], %[[N]] {inverse} : tensor<f32>, tensor<f32>
  // CHECK-NEXT: %[[LOSS:.*]] = mt.add %[[SHARE]], %[[AUX]] : tensor<f32>
  // CHECK-NEXT: %[[TOTAL:.*]] = mt.add %[[LOSS]], %[[Z]] : tensor<f32>
  // CHECK-NEXT: return %[[TOTAL]] : tensor<f32>
  %ce = mt.cross_entropy %logits, %labels, %mask : (tensor<2x8x32xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  %loss = mt.add %ce, %aux : tensor<f32>
  %total = mt.add %loss, %z : tensor<f32>
  return %total : tensor<f32>
}

// -----

// Megatron-Core sizes an expert capacity by each rank's tokens: with cp
// the drops would differ from the single rank's, so it is refused.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %x: tensor<2x8x8xf32>, %w: tensor<2x8x2xf32>,
                   %i: tensor<2x8x2xi32>) -> tensor<8x8xf32> {
  // expected-error @+1 {{'mt.moe_permute' op has an expert capacity (moe_expert_capacity_factor): not supported with context parallelism (cp 2) yet; use dropless MoE or context_parallel_size 1}}
  %p, %c, %r = mt.moe_permute %x, %w, %i {capacity = 2 : i64, drop_policy = "probs"}
      : (tensor<2x8x8xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>) -> (tensor<8x8xf32>, tensor<4xi32>, tensor<2x8x2xi32>)
  return %p : tensor<8x8xf32>
}

// -----

// seq_aux_loss balances each sequence: the counts are per sequence [B, E],
// summed over the cp ranks that hold its chunks.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @router : tensor<4x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %x: tensor<2x8x8xf32>) -> tensor<2x8x2xf32> {
  %wr = mt.weight @router : tensor<4x8xf32>
  // CHECK-LABEL: func.func @forward
  // CHECK: mt.moe_router_counts %{{.*}}, %{{.*}} {load_balancing_type = "seq_aux_loss", top_k = 2 : i64} : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  // CHECK-NEXT: mt.all_reduce %{{.*}} {axis = "cp"} : tensor<2x4xf32>
  %w, %i, %aux, %z = mt.moe_router %x, %wr {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64, load_balancing_type = "seq_aux_loss"}
      : (tensor<2x8x8xf32>, tensor<4x8xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  return %w : tensor<2x8x2xf32>
}
