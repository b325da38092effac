// RUN: mtc-opt %s -mt-partition-cp=comm-type=p2p | FileCheck %s --check-prefix=P2P
// RUN: mtc-opt %s -mt-partition-cp=comm-type=a2a | FileCheck %s --check-prefix=A2A

// Packed documents (position_ids) under cp with the ring and with a2a
// (all_gather: partition-cp.mlir). p2p: every block masks by the queries'
// own position ids, sliced with the tokens. a2a: attention runs on the whole
// sequence, so it takes the whole sequence's position ids in their true
// order, gathered load-balanced over cp.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// P2P-LABEL: func.func @forward
// P2P-SAME: %[[POS:arg[0-9]+]]: tensor<2x4xi32> {mt.input = "position_ids"}
// P2P: mt.attention_block %[[Q:.*]], %[[Q]], %[[Q]], %[[POS]] {{{.*}}step = 0 : i64}
// P2P-SAME: tensor<2x4xi32>)
// P2P: mt.attention_block %[[Q]], %{{.*}}, %{{.*}}, %[[POS]] {{{.*}}step = 1 : i64}
// A2A-LABEL: func.func @forward
// A2A-SAME: %[[POS:arg[0-9]+]]: tensor<2x4xi32> {mt.input = "position_ids"}
// A2A: %[[ALL:.*]] = mt.all_gather %[[POS]] {axis = "cp", dim = 1 : i64, layer = 1 : i64, load_balanced} : (tensor<2x4xi32>) -> tensor<2x8xi32>
// A2A: mt.attention %{{.*}}, %{{.*}}, %{{.*}}, %[[ALL]] {head_dim = 4 : i64, layer = 1 : i64, num_heads = 1 : i64, num_kv_heads = 1 : i64
// A2A-SAME: tensor<2x8xi32>) -> tensor<2x8x1x4xf32>
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %pos: tensor<2x8xi32> {mt.input = "position_ids"},
                   %q: tensor<2x8x2x4xf32>) -> tensor<2x8x2x4xf32> {
  %o = mt.attention %q, %q, %q, %pos {num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64, scale = 0.5 : f64, layer = 1 : i64}
      : (tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8xi32>) -> tensor<2x8x2x4xf32>
  return %o : tensor<2x8x2x4xf32>
}
