// RUN: mtc-opt %s -split-input-file -mt-partition-cp -verify-diagnostics | FileCheck %s

// Context parallelism with cp = 2 (Megatron-Core's all_gather): the inputs
// and every activation get S/cp tokens, rotary takes the chunks' places in
// the sequence, attention reads keys and values gathered over cp. The loss
// returned is the rank's share of the micro-batch's: its mean times its
// loss tokens, divided by their sum over cp (per token: partition-cp-per-token.mlir).
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @wq : tensor<8x8xf32> init(normal, std = 0.02)
// CHECK-LABEL: func.func @forward
// CHECK-SAME: tensor<2x4xi32> {mt.input = "input_ids"}
// CHECK-SAME: tensor<2x4xi32> {mt.input = "labels"}
// CHECK-SAME: tensor<2x4xf32> {mt.input = "loss_mask"}
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %labels: tensor<2x8xi32> {mt.input = "labels"},
                   %mask: tensor<2x8xf32> {mt.input = "loss_mask"}) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  // CHECK: mt.embedding {{.*}} -> tensor<2x4x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x8xi32>, tensor<32x8xf32>) -> tensor<2x8x8xf32>
  %w = mt.weight @wq : tensor<8x8xf32>
  // CHECK: mt.linear {{.*}} -> tensor<2x4x8xf32>
  %q0 = mt.linear %x, %w : (tensor<2x8x8xf32>, tensor<8x8xf32>) -> tensor<2x8x8xf32>
  // CHECK: mt.reshape {{.*}} -> tensor<2x4x2x4xf32>
  %q1 = mt.reshape %q0 : tensor<2x8x8xf32> -> tensor<2x8x2x4xf32>
  // CHECK: %[[Q:.*]] = mt.rotary {{.*}} {context_parallel_axis = "cp", theta = 1.000000e+04 : f64} : tensor<2x4x2x4xf32>
  %q = mt.rotary %q1 {theta = 1.0e+04 : f64} : tensor<2x8x2x4xf32>
  // CHECK: %[[K:.*]] = mt.all_gather %[[Q]] {axis = "cp", dim = 1 : i64} : (tensor<2x4x2x4xf32>) -> tensor<2x8x2x4xf32>
  // CHECK: %[[V:.*]] = mt.all_gather %[[Q]] {axis = "cp", dim = 1 : i64} : (tensor<2x4x2x4xf32>) -> tensor<2x8x2x4xf32>
  // CHECK: mt.attention %[[Q]], %[[K]], %[[V]] {context_parallel_axis = "cp"
  // CHECK-SAME: (tensor<2x4x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>) -> tensor<2x4x2x4xf32>
  %o = mt.attention %q, %q, %q {num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64, scale = 0.5 : f64}
      : (tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>) -> tensor<2x8x2x4xf32>
  %o1 = mt.reshape %o : tensor<2x8x2x4xf32> -> tensor<2x8x8xf32>
  // CHECK: %[[LOSS:.*]] = mt.cross_entropy %{{.*}}, %{{.*}}, %[[MASK:.*]] : (tensor<2x4x8xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  // CHECK-NEXT: %[[MINE:.*]] = mt.num_tokens %[[MASK]] : (tensor<2x4xf32>) -> tensor<f32>
  // CHECK-NEXT: %[[ALL:.*]] = mt.all_reduce %[[MINE]] {axis = "cp"} : tensor<f32>
  // CHECK-NEXT: %[[SUM:.*]] = mt.scale_by %[[LOSS]], %[[MINE]] : tensor<f32>, tensor<f32>
  // CHECK-NEXT: %[[SHARE:.*]] = mt.scale_by %[[SUM]], %[[ALL]] {inverse} : tensor<f32>, tensor<f32>
  // CHECK-NEXT: return %[[SHARE]] : tensor<f32>
  %loss = mt.cross_entropy %o1, %labels, %mask : (tensor<2x8x8xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

// A scalar loss other than the cross-entropy cannot be weighted by tokens.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %l: tensor<f32>) -> tensor<f32> {
  // expected-error @+1 {{'func.return' op returns a loss that is not an mt.cross_entropy (plus MoE routers' losses): mt-partition-cp weights the cross-entropy of each cp rank's tokens by their share of the micro-batch's}}
  return %l : tensor<f32>
}

// -----

// Each rank holds 2 of 2·cp chunks: the sequence must divide by 2·cp.
shard.grid @mesh(shape = 1x1x4x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// expected-error @+1 {{mt-partition-cp: the sequence length (12) must be divisible by 2 x context_parallel_size (2 x 4 = 8)}}
func.func @forward(%ids: tensor<2x12xi32> {mt.input = "input_ids"}) -> tensor<2x12xi32> {
  return %ids : tensor<2x12xi32>
}

// -----

// Packed documents: the position ids are sliced with the tokens; rotary
// takes them (no cp axis), attention masks by them and the tokens' places.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK-LABEL: func.func @forward
// CHECK-SAME: %[[POS:arg[0-9]+]]: tensor<2x4xi32> {mt.input = "position_ids"}
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %pos: tensor<2x8xi32> {mt.input = "position_ids"},
                   %q0: tensor<2x8x2x4xf32>) -> tensor<2x8x2x4xf32> {
  // CHECK: %[[Q:.*]] = mt.rotary %{{.*}} positions %[[POS]] : tensor<2x4xi32> {theta = 1.000000e+04 : f64} : tensor<2x4x2x4xf32>
  %q = mt.rotary %q0 positions %pos : tensor<2x8xi32> {theta = 1.0e+04 : f64} : tensor<2x8x2x4xf32>
  // CHECK: mt.attention %[[Q]], %{{.*}}, %{{.*}}, %[[POS]] {context_parallel_axis = "cp"
  // CHECK-SAME: (tensor<2x4x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x4xi32>) -> tensor<2x4x2x4xf32>
  %o = mt.attention %q, %q, %q, %pos {num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64, scale = 0.5 : f64}
      : (tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8xi32>) -> tensor<2x8x2x4xf32>
  return %o : tensor<2x8x2x4xf32>
}

// -----

// Without cp the pass changes nothing.
shard.grid @mesh(shape = 1x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK-LABEL: func.func @forward
// CHECK-SAME: tensor<2x8xi32>
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}) -> tensor<2x8xi32> {
  return %ids : tensor<2x8xi32>
}
