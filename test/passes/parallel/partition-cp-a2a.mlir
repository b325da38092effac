// RUN: mtc-opt %s -mt-partition-cp=comm-type=a2a -split-input-file -verify-diagnostics | FileCheck %s

// Megatron-Core's cp_comm_type a2a (Ulysses) with cp = 2: queries, keys and
// values all-to-all'ed from sequence slices [2, 6, H, 4] to whole sequences
// in their true order (load_balanced_dim 1) for half the heads; attention
// as on one rank, its heads and kv heads halved; the output exchanged back.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK-LABEL: func.func @forward
// CHECK-SAME: tensor<2x6x4x4xf32>
func.func @forward(%ids: tensor<2x12xi32> {mt.input = "input_ids"}, %q: tensor<2x12x4x4xf32>, %kv: tensor<2x12x2x4xf32>) -> tensor<2x12x4x4xf32> {
  // CHECK: %[[Q:.*]] = mt.all_to_all %{{.*}} {axis = "cp", concat_dim = 1 : i64, layer = 3 : i64, load_balanced_dim = 1 : i64, split_dim = 2 : i64} : (tensor<2x6x4x4xf32>) -> tensor<2x12x2x4xf32>
  // CHECK: %[[K:.*]] = mt.all_to_all %{{.*}} {axis = "cp", concat_dim = 1 : i64, layer = 3 : i64, load_balanced_dim = 1 : i64, split_dim = 2 : i64} : (tensor<2x6x2x4xf32>) -> tensor<2x12x1x4xf32>
  // CHECK: %[[V:.*]] = mt.all_to_all
  // CHECK: %[[O:.*]] = mt.attention %[[Q]], %[[K]], %[[V]] {head_dim = 4 : i64, layer = 3 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 5.000000e-01 : f64}
  // CHECK-SAME: -> tensor<2x12x2x4xf32>
  // CHECK: %[[R:.*]] = mt.all_to_all %[[O]] {axis = "cp", concat_dim = 2 : i64, layer = 3 : i64, load_balanced_dim = 1 : i64, split_dim = 1 : i64} : (tensor<2x12x2x4xf32>) -> tensor<2x6x4x4xf32>
  // CHECK: return %[[R]] : tensor<2x6x4x4xf32>
  %o = mt.attention %q, %kv, %kv {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64, scale = 0.5 : f64, layer = 3 : i64}
      : (tensor<2x12x4x4xf32>, tensor<2x12x2x4xf32>, tensor<2x12x2x4xf32>) -> tensor<2x12x4x4xf32>
  return %o : tensor<2x12x4x4xf32>
}

// -----

// Key/value heads that cp does not divide: refused, as Transformer Engine's a2a.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @forward(%ids: tensor<2x12xi32> {mt.input = "input_ids"}, %q: tensor<2x12x4x4xf32>, %kv: tensor<2x12x1x4xf32>) -> tensor<2x12x4x4xf32> {
  // expected-error @+1 {{'mt.attention' op cannot split its 4 query heads and 1 key/value heads (per tensor-parallel rank) over context_parallel_size 2 with cp_comm_type a2a: both must be divisible by cp}}
  %o = mt.attention %q, %kv, %kv {num_heads = 4 : i64, num_kv_heads = 1 : i64, head_dim = 4 : i64, scale = 0.5 : f64}
      : (tensor<2x12x4x4xf32>, tensor<2x12x1x4xf32>, tensor<2x12x1x4xf32>) -> tensor<2x12x4x4xf32>
  return %o : tensor<2x12x4x4xf32>
}
