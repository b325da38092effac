// RUN: mtc-opt %s -split-input-file -verify-diagnostics -mt-build-optimizer | FileCheck %s

// Data parallelism (the dp axis of @mesh, size 2) averages each gradient
// over dp before anything reads it; a parameter split over tp counts its
// shards once in the global norm.
shard.grid @mesh(shape = 1x2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02) {sharding = #mt.sharding<@mesh, [["tp"], []]>}
mt.param @norm : tensor<4xf32> init(ones)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[W:[^:]*]]: tensor<4x4xf32> {mt.param = @w, mt.role = "param"}
// CHECK-SAME: %[[GW:[^:]*]]: tensor<4x4xf32> {mt.param = @w, mt.role = "grad"}
// CHECK: %[[AW:.*]] = mt.all_reduce %[[GW]] {axis = "dp", reduce = "mean"} : tensor<4x4xf32>
// CHECK: %[[AN:.*]] = mt.all_reduce %{{.*}} {axis = "dp", reduce = "mean"} : tensor<4xf32>
// CHECK: mt.global_norm %[[AW]], %[[AN]] {replicated = array<i1: false, true>, sharded_axis = "tp"}
// CHECK: mt.adamw %[[W]], %[[AW]]

// -----

// The global norm sums shards over one mesh axis: parameters split over
// different axes are refused rather than summed over the wrong ranks.
shard.grid @mesh(shape = 1x2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02) {sharding = #mt.sharding<@mesh, [["tp"], []]>}
// expected-error @+1 {{'mt.param' op is split over mesh axis 'dp' and another parameter over 'tp': a global norm over several mesh axes is not supported yet}}
mt.param @v : tensor<8x4xf32> init(normal, std = 0.02) {sharding = #mt.sharding<@mesh, [["dp"], []]>}

// -----

// A mesh whose dp axis has size 1: no averaging over dp.
shard.grid @mesh(shape = 2x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-NOT: mt.all_reduce
// CHECK: mt.global_norm
// CHECK-NOT: mt.all_reduce
// CHECK: return

// -----

// The dp size is read from @mesh: a mesh without a dp axis (here the axes
// of an expert mesh) is refused, naming the axes it has.
// expected-error @+1 {{mt-build-optimizer: @mesh has no axis 'dp' (its axes: pp, edp, ep, etp)}}
shard.grid @mesh(shape = 1x2x1x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02)

// -----

// Expert parallelism (MoE parallel folding, dp 4 = edp 2 x ep 2): an
// expert's gradient already sums the tokens of its ep group, so it is
// summed over edp and scaled by 1 / dp (Megatron-Core's
// expert_gradient_scaling_factor); dense gradients are averaged over dp.
// Experts split over ep count their shards once in the norm.
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x2x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], [], []]>}
mt.param @norm : tensor<4xf32> init(ones)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GE:[^:]*]]: tensor<2x8x4xf32> {mt.param = @"e.*.up", mt.role = "grad"}
// CHECK: %[[N:.*]] = mt.all_reduce %{{.*}} {axis = "dp", reduce = "mean"} : tensor<4xf32>
// CHECK-NEXT: %[[SE:.*]] = mt.all_reduce %[[GE]] {axis = "edp"} : tensor<2x8x4xf32>
// CHECK-NEXT: %[[E:.*]] = mt.scale %[[SE]] {factor = 2.500000e-01 : f64} : tensor<2x8x4xf32>
// CHECK: mt.global_norm %[[E]], %[[N]] {replicated = array<i1: false, true>, sharded_axis = "ep"}

// -----

// Expert parallelism folded over cp (ep 2 x edp 2 over dp 2 x cp 2): each cp
// rank's loss is its share of the micro-batch's (mt-partition-cp), so dense
// gradients are summed over cp and averaged over dp, and an expert's
// gradient, which sums its ep group's tokens, is summed over edp and scaled
// by 1 / dp alone (Megatron-Core's 1 / (dp·cp) answers its cp ranks' losses,
// which are cp times their share).
shard.grid @mesh(shape = 1x2x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x2x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], [], []]>}
mt.param @norm : tensor<4xf32> init(ones)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GE:[^:]*]]: tensor<2x8x4xf32> {mt.param = @"e.*.up", mt.role = "grad"}
// CHECK: %[[C:.*]] = mt.all_reduce %{{.*}} {axis = "cp"} : tensor<4xf32>
// CHECK-NEXT: %[[N:.*]] = mt.all_reduce %[[C]] {axis = "dp", reduce = "mean"} : tensor<4xf32>
// CHECK-NEXT: %[[SE:.*]] = mt.all_reduce %[[GE]] {axis = "edp"} : tensor<2x8x4xf32>
// CHECK-NEXT: %[[E:.*]] = mt.scale %[[SE]] {factor = 5.000000e-01 : f64} : tensor<2x8x4xf32>
// CHECK: mt.global_norm %[[E]], %[[N]] {replicated = array<i1: false, true>, sharded_axis = "ep"}

// -----

// Expert tensor parallelism (ep 2 x etp 2 over dp 4): each rank holds its
// shard of its experts' ffn columns; the norm sums the expert shards over
// both axes, apart from the (whole) dense parameters.
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x2x2) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], ["etp"], []]>}
mt.param @norm : tensor<4xf32> init(ones)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GE:[^:]*]]: tensor<2x4x4xf32> {mt.param = @"e.*.up", mt.role = "grad"}
// CHECK: %[[E:.*]] = mt.scale %[[GE]] {factor = 2.500000e-01 : f64} : tensor<2x4x4xf32>
// CHECK: mt.global_norm %[[E]], %{{.*}} {expert_axes = ["ep", "etp"], experts = array<i1: true, false>}
