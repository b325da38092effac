// RUN: mtc-opt %s -split-input-file -mt-partition-ep -verify-diagnostics | FileCheck %s

// Expert tensor parallelism alone (ep 1, etp 2): gate and up split on their
// ffn columns (column-parallel fc1), down on its ffn rows (row-parallel
// fc2); the rows of both etp ranks gathered, sorted by expert across them,
// and the partial outputs reduce-scattered back to their rank.
shard.grid @mesh(shape = 1x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x1x2) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.up" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%p: tensor<16x8xf32>, %c: tensor<4xi32>) -> tensor<16x8xf32> {
  %g = mt.weight @"e.*.gate" {mt.layer = 0 : i64} : tensor<4x6x8xf32>
  %u = mt.weight @"e.*.up" {mt.layer = 0 : i64} : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" {mt.layer = 0 : i64} : tensor<4x8x6xf32>
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %u, %d {mt.layer = 0 : i64}
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return %o : tensor<16x8xf32>
}
// CHECK: mt.param @"e.*.gate" : tensor<4x6x8xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\[\], \["etp"\], \[\]\]}}>
// CHECK: mt.param @"e.*.down" : tensor<4x8x6xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\[\], \[\], \["etp"\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK: %[[G:.*]] = mt.weight @"e.*.gate" {{.*}}: tensor<4x3x8xf32>
// CHECK: %[[D:.*]] = mt.weight @"e.*.down" {{.*}}: tensor<4x8x3xf32>
// CHECK: %[[GLOBAL:.*]], %[[ZEROS:.*]], %[[LOCAL:.*]] = mt.moe_gather_counts %{{.*}} {axis = "etp", mt.layer = 0 : i64, same_experts} : (tensor<4xi32>) -> (tensor<2x4xi32>, tensor<2xi32>, tensor<4xi32>)
// CHECK-NEXT: %[[ALL:.*]] = mt.all_gather %{{.*}} {axis = "etp", dim = 0 : i64, mt.layer = 0 : i64} : (tensor<16x8xf32>) -> tensor<32x8xf32>
// CHECK-NEXT: %[[SORTED:.*]] = mt.moe_sort_chunks %[[ALL]], %[[GLOBAL]], %[[ZEROS]] {mt.layer = 0 : i64}
// fc1_output: the gathered rows through this rank's 3 of the 6 ffn columns.
// CHECK-NEXT: %[[OUT:[^ ,]+]], %{{[^ ,]+}} = mt.moe_grouped_mlp %[[SORTED]], %[[LOCAL]], %[[G]], %{{.*}}, %[[D]] {mt.layer = 0 : i64} : (tensor<32x8xf32>, tensor<4xi32>, tensor<4x3x8xf32>, tensor<4x3x8xf32>, tensor<4x8x3xf32>) -> (tensor<32x8xf32>, tensor<2x32x3xf32>)
// CHECK-NEXT: %[[BACK:.*]] = mt.moe_sort_chunks %[[OUT]], %[[GLOBAL]], %[[ZEROS]] {inverse, mt.layer = 0 : i64}
// CHECK-NEXT: %[[MINE:.*]] = mt.reduce_scatter %[[BACK]] {axis = "etp", dim = 0 : i64, mt.layer = 0 : i64{{.*}}} : (tensor<32x8xf32>) -> tensor<16x8xf32>
// CHECK-NEXT: return %[[MINE]]

// -----

// ep 2 x etp 2: the alltoall dispatcher over ep around the etp exchange of
// the local experts' rows; experts split on both.
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x2x2) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%p: tensor<16x8xf32>, %c: tensor<4xi32>) -> tensor<16x8xf32> {
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<4x8x6xf32>
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return %o : tensor<16x8xf32>
}
// CHECK: mt.param @"e.*.gate" : tensor<4x6x8xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\["ep"\], \["etp"\], \[\]\]}}>
// CHECK: mt.param @"e.*.down" : tensor<4x8x6xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\["ep"\], \[\], \["etp"\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK: mt.moe_exchange_counts {{.*}}axis = "ep"
// CHECK-NEXT: mt.all_to_all_v {{.*}} -> tensor<32x8xf32>
// CHECK-NEXT: mt.moe_sort_chunks
// CHECK-NEXT: mt.moe_gather_counts {{.*}}axis = "etp"{{.*}}same_experts{{.*}} : (tensor<2xi32>) -> (tensor<2x2xi32>, tensor<2xi32>, tensor<2xi32>)
// CHECK-NEXT: mt.all_gather {{.*}}axis = "etp"{{.*}} : (tensor<32x8xf32>) -> tensor<64x8xf32>
// CHECK-NEXT: mt.moe_sort_chunks
// CHECK-NEXT: mt.moe_grouped_mlp {{.*}} : (tensor<64x8xf32>, tensor<2xi32>, tensor<2x3x8xf32>, tensor<2x3x8xf32>, tensor<2x8x3xf32>) -> (tensor<64x8xf32>, tensor<2x64x3xf32>)
// CHECK-NEXT: mt.moe_sort_chunks {{.*}}inverse
// CHECK-NEXT: mt.reduce_scatter {{.*}}axis = "etp"{{.*}} : (tensor<64x8xf32>) -> tensor<32x8xf32>
// CHECK-NEXT: mt.moe_sort_chunks {{.*}}inverse
// CHECK-NEXT: mt.all_to_all_v {{.*}} -> tensor<16x8xf32>

// -----

// ffn columns that etp does not divide are refused, naming the parameter.
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x1x4) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%p: tensor<16x8xf32>, %c: tensor<4xi32>) -> tensor<16x8xf32> {
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<4x8x6xf32>
  // expected-error @+1 {{'mt.moe_grouped_mlp' op cannot split the 6 ffn columns (moe_intermediate_size) of @"e.*.gate" over etp = 4}}
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return %o : tensor<16x8xf32>
}
