// RUN: mtc-opt %s -mt-partition-cp=comm-type=p2p | FileCheck %s

// Ring attention with cp = 3 (Megatron-Core's cp_comm_type p2p): the
// attention becomes 3 blocks, step t on the keys and values passed t times
// along the ring, merged by their log-sum-exp; each step's shifts come
// before the previous step's block (a backend overlaps them).
shard.grid @mesh(shape = 1x1x3x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK-LABEL: func.func @forward
// CHECK-SAME: tensor<2x4x2x4xf32>
func.func @forward(%ids: tensor<2x12xi32> {mt.input = "input_ids"}, %q: tensor<2x12x2x4xf32>) -> tensor<2x12x2x4xf32> {
  // CHECK: %[[K1:.*]] = mt.ring_shift %[[Q:.*]] {axis = "cp"} : tensor<2x4x2x4xf32>
  // CHECK: %[[V1:.*]] = mt.ring_shift %[[Q]] {axis = "cp"} : tensor<2x4x2x4xf32>
  // CHECK: %[[O0:.*]], %[[L0:.*]] = mt.attention_block %[[Q]], %[[Q]], %[[Q]] {context_parallel_axis = "cp", {{.*}}step = 0 : i64}
  // CHECK-SAME: -> (tensor<2x4x2x4xf32>, tensor<2x2x4xf32>)
  // CHECK: %[[K2:.*]] = mt.ring_shift %[[K1]] {axis = "cp"}
  // CHECK: %[[V2:.*]] = mt.ring_shift %[[V1]] {axis = "cp"}
  // CHECK: %[[O1:.*]], %[[L1:.*]] = mt.attention_block %[[Q]], %[[K1]], %[[V1]] {{{.*}}step = 1 : i64}
  // CHECK: %[[M1:.*]], %[[ML1:.*]] = mt.attention_merge %[[O0]], %[[L0]], %[[O1]], %[[L1]]
  // CHECK: %[[O2:.*]], %[[L2:.*]] = mt.attention_block %[[Q]], %[[K2]], %[[V2]] {{{.*}}step = 2 : i64}
  // CHECK: %[[M2:.*]], %{{.*}} = mt.attention_merge %[[M1]], %[[ML1]], %[[O2]], %[[L2]]
  // CHECK-NOT: mt.attention %
  // CHECK: return %[[M2]] : tensor<2x4x2x4xf32>
  %o = mt.attention %q, %q, %q {num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64, scale = 0.5 : f64}
      : (tensor<2x12x2x4xf32>, tensor<2x12x2x4xf32>, tensor<2x12x2x4xf32>) -> tensor<2x12x2x4xf32>
  return %o : tensor<2x12x2x4xf32>
}
