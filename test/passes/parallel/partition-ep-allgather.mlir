// RUN: mtc-opt %s -split-input-file -mt-partition-ep="dispatcher=allgather" -verify-diagnostics | FileCheck %s
// A dispatcher Megatron-Core has and mtc does not build is refused by name.
// RUN: not mtc-opt %s -mt-partition-ep="dispatcher=flex" 2>&1 | FileCheck %s --check-prefix=FLEX
// FLEX: mt-partition-ep: dispatcher 'flex' is not one of alltoall, allgather

// A MoE layer over ep = 2 (4 experts, 2 per rank), Megatron-Core's
// allgather dispatcher: the counts and the permuted rows [16, 8] of both
// ranks gathered into 2 x 16 rows, this rank's experts' chunks picked out
// by offset, and the reduce-scatter over ep bringing each rank's rows back.
shard.grid @mesh(shape = 1x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.up" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) -> tensor<2x4x8xf32> {
  %g = mt.weight @"e.*.gate" {mt.layer = 0 : i64} : tensor<4x6x8xf32>
  %u = mt.weight @"e.*.up" {mt.layer = 0 : i64} : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" {mt.layer = 0 : i64} : tensor<4x8x6xf32>
  %p, %c, %r = mt.moe_permute %x, %w, %i {mt.layer = 0 : i64}
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %u, %d {mt.layer = 0 : i64}
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  %y = mt.moe_unpermute %o, %w, %r {mt.layer = 0 : i64} : (tensor<16x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> tensor<2x4x8xf32>
  return %y : tensor<2x4x8xf32>
}
// CHECK: mt.param @"e.*.gate" : tensor<4x6x8xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\["ep"\], \[\], \[\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK: %[[G:.*]] = mt.weight @"e.*.gate" {{.*}}: tensor<2x6x8xf32>
// CHECK: %[[P:.*]], %[[C:.*]], %[[R:.*]] = mt.moe_permute
// CHECK-NEXT: %[[GLOBAL:.*]], %[[OFFSETS:.*]], %[[LOCAL:.*]] = mt.moe_gather_counts %[[C]] {axis = "ep", mt.layer = 0 : i64} : (tensor<4xi32>) -> (tensor<2x2xi32>, tensor<2xi32>, tensor<2xi32>)
// CHECK-NEXT: %[[ALL:.*]] = mt.all_gather %[[P]] {axis = "ep", dim = 0 : i64, mt.layer = 0 : i64} : (tensor<16x8xf32>) -> tensor<32x8xf32>
// CHECK-NEXT: %[[SORTED:.*]] = mt.moe_sort_chunks %[[ALL]], %[[GLOBAL]], %[[OFFSETS]] {mt.layer = 0 : i64} : (tensor<32x8xf32>, tensor<2x2xi32>, tensor<2xi32>) -> tensor<32x8xf32>
// CHECK-NEXT: %[[OUT:[^ ,]+]], %{{[^ ,]+}} = mt.moe_grouped_mlp %[[SORTED]], %[[LOCAL]], %[[G]], {{.*}} -> (tensor<32x8xf32>, tensor<2x32x{{[0-9]+}}xf32>)
// CHECK-NEXT: %[[BACK:.*]] = mt.moe_sort_chunks %[[OUT]], %[[GLOBAL]], %[[OFFSETS]] {inverse, mt.layer = 0 : i64}
// CHECK-NEXT: %[[HOME:.*]] = mt.reduce_scatter %[[BACK]] {axis = "ep", dim = 0 : i64, mt.layer = 0 : i64{{.*}}} : (tensor<32x8xf32>) -> tensor<16x8xf32>
// CHECK-NEXT: mt.moe_unpermute %[[HOME]], %{{.*}}, %[[R]]
