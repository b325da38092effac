// RUN: mtc-opt %s -split-input-file -mt-partition-ep -verify-diagnostics | FileCheck %s

// A MoE layer over ep = 2 (4 experts, 2 per rank), Megatron-Core's alltoall
// dispatcher: the grouped expert weights split on their experts, the
// permuted rows [16, 8] exchanged into buffers of 2 x 16 rows.
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
// CHECK: mt.param @"e.*.down" : tensor<4x8x6xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\["ep"\], \[\], \[\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK: %[[G:.*]] = mt.weight @"e.*.gate" {{.*}}: tensor<2x6x8xf32>
// CHECK: %[[D:.*]] = mt.weight @"e.*.down" {{.*}}: tensor<2x8x6xf32>
// CHECK: %[[P:.*]], %[[C:.*]], %[[R:.*]] = mt.moe_permute
// CHECK-NEXT: %[[SEND:.*]], %[[RECV:.*]], %[[GLOBAL:.*]], %[[LOCAL:.*]] = mt.moe_exchange_counts %[[C]] {axis = "ep", mt.layer = 0 : i64} : (tensor<4xi32>) -> (tensor<2xi32>, tensor<2xi32>, tensor<2x2xi32>, tensor<2xi32>)
// CHECK-NEXT: %[[IN:.*]] = mt.all_to_all_v %[[P]], %[[SEND]], %[[RECV]] {axis = "ep", mt.layer = 0 : i64} : (tensor<16x8xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<32x8xf32>
// CHECK-NEXT: %[[SORTED:.*]] = mt.moe_sort_chunks %[[IN]], %[[GLOBAL]] {mt.layer = 0 : i64} : (tensor<32x8xf32>, tensor<2x2xi32>) -> tensor<32x8xf32>
// The local experts' fc1_output holds the received rows (32), as the input.
// CHECK-NEXT: %[[OUT:[^ ,]+]], %{{[^ ,]+}} = mt.moe_grouped_mlp %[[SORTED]], %[[LOCAL]], %[[G]], %{{.*}}, %[[D]] {mt.layer = 0 : i64} : (tensor<32x8xf32>, tensor<2xi32>, tensor<2x6x8xf32>, tensor<2x6x8xf32>, tensor<2x8x6xf32>) -> (tensor<32x8xf32>, tensor<2x32x6xf32>)
// CHECK-NEXT: %[[BACK:.*]] = mt.moe_sort_chunks %[[OUT]], %[[GLOBAL]] {inverse, mt.layer = 0 : i64}
// CHECK-NEXT: %[[HOME:.*]] = mt.all_to_all_v %[[BACK]], %[[RECV]], %[[SEND]] {axis = "ep", mt.layer = 0 : i64} : (tensor<32x8xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<16x8xf32>
// CHECK-NEXT: mt.moe_unpermute %[[HOME]], %{{.*}}, %[[R]]

// -----

// ep = 1: nothing changes.
shard.grid @mesh(shape = 1x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x1x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%p: tensor<16x8xf32>, %c: tensor<4xi32>, %d: tensor<4x8x6xf32>) -> tensor<16x8xf32> {
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return %o : tensor<16x8xf32>
}
// CHECK-LABEL: func.func @forward
// CHECK-NOT: mt.all_to_all_v
// CHECK: mt.moe_grouped_mlp {{.*}} -> (tensor<16x8xf32>, tensor<2x16x6xf32>)

// -----

// Experts that ep does not divide are refused, naming the parameter.
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x4x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<6x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<6x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%p: tensor<16x8xf32>, %c: tensor<6xi32>) -> tensor<16x8xf32> {
  %g = mt.weight @"e.*.gate" : tensor<6x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<6x8x6xf32>
  // expected-error @+1 {{'mt.moe_grouped_mlp' op cannot split the 6 experts of @"e.*.gate" over ep = 4}}
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<6xi32>, tensor<6x6x8xf32>, tensor<6x6x8xf32>, tensor<6x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return %o : tensor<16x8xf32>
}

// -----

// fc1_output is the gradient's alone (built after this pass): a reader in
// the forward is refused.
shard.grid @mesh(shape = 1x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%p: tensor<16x8xf32>, %c: tensor<4xi32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>) {
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<4x8x6xf32>
  // expected-error @+1 {{'mt.moe_grouped_mlp' op has readers of its fc1_output before mt-autodiff: mt-partition-ep replaces the op and cannot keep them}}
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return %o, %o_fc1 : tensor<16x8xf32>, tensor<2x16x6xf32>
}

// -----

// expected-error @+1 {{mt-partition-ep expects a mesh 'shard.grid @expert_mesh' with axes 'ep' and 'etp' in 'mt.axes'}}
module {
  shard.grid @mesh(shape = 1x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
  func.func @forward() {
    return
  }
}

// -----

// ep = etp = 1 under tp = 2 (MoE parallel folding, edp 2): the whole
// experts go on @expert_mesh, unsplit, so that mt-build-optimizer sums
// their gradients over edp (and the distributed optimizer shards them
// there); the layer's ops stay as they are.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x2x1x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.up" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%p: tensor<8x8xf32>, %c: tensor<4xi32>) -> tensor<8x8xf32> {
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %u = mt.weight @"e.*.up" : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<4x8x6xf32>
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %u, %d
      : (tensor<8x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<8x8xf32>, tensor<2x8x6xf32>)
  return %o : tensor<8x8xf32>
}
// CHECK: mt.param @"e.*.gate" : tensor<4x6x8xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\[\], \[\], \[\]\]}}>
// CHECK: mt.param @"e.*.down" : tensor<4x8x6xf32> {{.*}}sharding = #mt.sharding<@expert_mesh, {{\[\[\], \[\], \[\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK-NOT: mt.all_to_all_v
// CHECK: mt.moe_grouped_mlp %{{.*}} : (tensor<8x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<8x8xf32>, tensor<2x8x6xf32>)
// CHECK-NEXT: return
