// RUN: mtc-opt %s -split-input-file -mt-build-optimizer="distributed-optimizer" | FileCheck %s

// The distributed optimizer with expert parallelism (dp 4 = edp 2 x ep 2):
// expert buckets are reduce-scattered over edp (a sum, scaled by
// 1 / dp, at cp 1 Megatron-Core's expert_gradient_scaling_factor), their
// AdamW state sharded over edp; dense buckets over dp. The norm sums the
// dense shards over dp and the expert shards over ep and edp (disjoint over
// both), apart.
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x2x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], [], []]>}
mt.param @norm : tensor<4xf32> init(ones)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: tensor<64xf32> {mt.bucket = 0 : i64, mt.param = @norm, mt.role = "grad"}
// CHECK-SAME: tensor<16xf32> {mt.bucket = 0 : i64, mt.param = @norm, mt.role = "exp_avg", mt.sharding = #mt.sharding<@mesh, {{.}}{{.}}"dp"{{[^}]*}}}
// CHECK-SAME: tensor<64xf32> {mt.bucket = 1 : i64, mt.param = @"e.*.up", mt.role = "grad"}
// CHECK-SAME: tensor<32xf32> {mt.bucket = 1 : i64, mt.param = @"e.*.up", mt.role = "exp_avg", mt.sharding = #mt.sharding<@expert_mesh, {{.}}{{.}}"edp"{{[^}]*}}}
// CHECK: %[[D:.*]] = mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<64xf32>) -> tensor<16xf32>
// CHECK-NEXT: %[[E:.*]] = mt.reduce_scatter %{{.*}} {axis = "edp", dim = 0 : i64} : (tensor<64xf32>) -> tensor<32xf32>
// CHECK-NEXT: %[[S:.*]] = mt.scale %[[E]] {factor = 2.500000e-01 : f64} : tensor<32xf32>
// CHECK-NEXT: mt.global_norm %[[D]], %[[S]] {expert_axes = ["ep", "edp"], experts = array<i1: false, true>, partial_axis = "dp"}
// CHECK: mt.all_slice %{{.*}} {axis = "edp", dim = 0 : i64}
// CHECK: mt.all_gather %{{.*}} {axis = "edp", dim = 0 : i64}

// -----

// Experts split over ep and etp, dense parameters over tp (dp 4 x tp 2 =
// edp 2 x ep 2 x etp 2): each etp shard of an expert weight is a bucket
// member reduce-scattered over edp, as with etp 1 (Megatron-Core shards
// expert parameters over the expert data-parallel group whatever etp is);
// the norm sums the dense shards over tp and dp, the experts' over ep, etp
// and edp.
shard.grid @mesh(shape = 1x4x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x2x2x2) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], ["etp"], []]>}
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02) {sharding = #mt.sharding<@mesh, [["tp"], []]>}

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: tensor<64xf32> {mt.bucket = 0 : i64, mt.param = @w, mt.role = "grad"}
// CHECK-SAME: tensor<16xf32> {mt.bucket = 0 : i64, mt.param = @w, mt.role = "exp_avg", mt.sharding = #mt.sharding<@mesh, {{.}}{{.}}"dp"{{[^}]*}}}
// CHECK-SAME: tensor<32xf32> {mt.bucket = 1 : i64, mt.param = @"e.*.up", mt.role = "grad"}
// CHECK-SAME: tensor<16xf32> {mt.bucket = 1 : i64, mt.param = @"e.*.up", mt.role = "exp_avg", mt.sharding = #mt.sharding<@expert_mesh, {{.}}{{.}}"edp"{{[^}]*}}}
// CHECK: %[[D:.*]] = mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<64xf32>) -> tensor<16xf32>
// CHECK-NEXT: %[[E:.*]] = mt.reduce_scatter %{{.*}} {axis = "edp", dim = 0 : i64} : (tensor<32xf32>) -> tensor<16xf32>
// CHECK-NEXT: %[[S:.*]] = mt.scale %[[E]] {factor = 2.500000e-01 : f64} : tensor<16xf32>
// CHECK-NEXT: mt.global_norm %[[D]], %[[S]] {expert_axes = ["ep", "etp", "edp"], experts = array<i1: false, true>, partial_axis = "dp", replicated = array<i1: false, false>, sharded_axis = "tp"}
// CHECK: mt.all_slice %{{.*}} {axis = "edp", dim = 0 : i64}
// CHECK: mt.all_gather %{{.*}} {axis = "edp", dim = 0 : i64}
