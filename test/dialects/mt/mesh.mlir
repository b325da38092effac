// RUN: mtc-opt %s | mtc-opt | FileCheck %s

// The dense mesh and the expert mesh folded over the same 16 ranks
// (Megatron-Core MoE parallel folding: edp x ep x etp = dp x cp x tp = 8),
// with shardings on one and on several axes.
shard.grid @mesh(shape = 2x2x1x4) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 2x1x4x2) {mt.axes = ["pp", "edp", "ep", "etp"]}
// CHECK: shard.grid @mesh(shape = 2x2x1x4) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK: shard.grid @expert_mesh(shape = 2x1x4x2) {mt.axes = ["pp", "edp", "ep", "etp"]}

mt.param @"layers.0.mlp.experts.*.up_proj.weight" : tensor<8x16x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], ["etp"], []]>}
mt.param @"layers.0.mlp.experts.*.down_proj.weight" : tensor<8x4x16xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep", "etp"], [], []]>}
mt.param @o : tensor<8x8xf32> init(normal, std = 0.02) {sharding = #mt.sharding<@mesh, [["dp"], ["tp"]]>}
// CHECK: mt.param @"layers.0.mlp.experts.*.up_proj.weight" {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\["ep"\], \["etp"\], \[\]\]}}>
// CHECK: mt.param @"layers.0.mlp.experts.*.down_proj.weight" {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\["ep", "etp"\], \[\], \[\]\]}}>

// CHECK-LABEL: func.func @f
func.func @f() -> (tensor<2x8x4xf32>, tensor<1x4x16xf32>, tensor<4x2xf32>) {
  // CHECK: mt.weight @"layers.0.mlp.experts.*.up_proj.weight" : tensor<2x8x4xf32>
  %u = mt.weight @"layers.0.mlp.experts.*.up_proj.weight" : tensor<2x8x4xf32>
  // CHECK: mt.weight @"layers.0.mlp.experts.*.down_proj.weight" : tensor<1x4x16xf32>
  %d = mt.weight @"layers.0.mlp.experts.*.down_proj.weight" : tensor<1x4x16xf32>
  // CHECK: mt.weight @o : tensor<4x2xf32>
  %o = mt.weight @o : tensor<4x2xf32>
  return %u, %d, %o : tensor<2x8x4xf32>, tensor<1x4x16xf32>, tensor<4x2xf32>
}
