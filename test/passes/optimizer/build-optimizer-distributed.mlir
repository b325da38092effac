// RUN: mtc-opt %s -split-input-file -mt-build-optimizer="distributed-optimizer weight-decay=0.1" | FileCheck %s
// RUN: mtc-opt %s -split-input-file -mt-build-optimizer="distributed-optimizer bucket-elements=16" | FileCheck %s --check-prefix=SMALL
// RUN: mtc-opt %s -split-input-file -mt-build-optimizer="distributed-optimizer overlap-param-gather" | FileCheck %s --check-prefix=OVERLAP

// Megatron's distributed optimizer: parameters in buckets (reverse order,
// never across layers, weight decay or tp replication), each padded to a
// multiple of 16 x dp; per bucket a reduce-scatter (mean) over dp, the
// global norm summing the shards over dp, AdamW on the rank's slice and
// an all-gather of the updated slices.
shard.grid @mesh(shape = 1x2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @e : tensor<6x4xf32> init(normal, std = 0.02)
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02) {sharding = #mt.sharding<@mesh, [["tp"], []]>}
mt.param @norm : tensor<4xf32> init(ones)
mt.param @w2 : tensor<8x4xf32> init(normal, std = 0.02) {sharding = #mt.sharding<@mesh, [["tp"], []]>}
func.func @forward_backward() -> (tensor<6x4xf32>, tensor<4x4xf32>, tensor<4xf32>, tensor<4x4xf32>) {
  %e = mt.weight @e : tensor<6x4xf32>
  %w = mt.weight @w {mt.layer = 0 : i64} : tensor<4x4xf32>
  %n = mt.weight @norm {mt.layer = 0 : i64} : tensor<4xf32>
  %w2 = mt.weight @w2 {mt.layer = 0 : i64} : tensor<4x4xf32>
  return %e, %w, %n, %w2 : tensor<6x4xf32>, tensor<4x4xf32>, tensor<4xf32>, tensor<4x4xf32>
}

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[P0:[^:]*]]: tensor<32xf32> {mt.bucket = 0 : i64, mt.param = @w2, mt.role = "param"}
// CHECK-SAME: %[[G0:[^:]*]]: tensor<32xf32> {mt.bucket = 0 : i64, mt.param = @w2, mt.role = "grad"}
// CHECK-SAME: %[[M0:[^:]*]]: tensor<16xf32> {mt.bucket = 0 : i64, mt.param = @w2, mt.role = "exp_avg", mt.sharding = #mt.sharding<@mesh, {{\[\["dp"\]\]}}>}
// CHECK-SAME: tensor<32xf32> {mt.bucket = 1 : i64, mt.param = @norm, mt.role = "grad"}
// CHECK-SAME: tensor<32xf32> {mt.bucket = 2 : i64, mt.param = @e, mt.role = "grad"}
// CHECK-SAME: mt.buckets = [{axis = "dp", offsets = array<i64: 0, 16>, params = [@w2, @w]}, {axis = "dp", offsets = array<i64: 0>, params = [@norm]}, {axis = "dp", offsets = array<i64: 0>, params = [@e]}]
// CHECK: %[[S0:.*]] = mt.reduce_scatter %[[G0]] {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<32xf32>) -> tensor<16xf32>
// CHECK: %[[S1:.*]] = mt.reduce_scatter
// CHECK: %[[S2:.*]] = mt.reduce_scatter
// CHECK: mt.global_norm %[[S0]], %[[S1]], %[[S2]] {partial_axis = "dp", replicated = array<i1: false, true, true>, sharded_axis = "tp"}
// CHECK: %[[MINE:.*]] = mt.all_slice %[[P0]] {axis = "dp", dim = 0 : i64} : (tensor<32xf32>) -> tensor<16xf32>
// CHECK: %[[NEW:[^,]*]], %[[NEWM:[^,]*]], %[[NEWV:[^ ]*]] = mt.adamw %[[MINE]], %[[S0]], %[[M0]], {{.*}}weight_decay = 1.000000e-01
// CHECK: %[[ALL:.*]] = mt.all_gather %[[NEW]] {axis = "dp", dim = 0 : i64} : (tensor<16xf32>) -> tensor<32xf32>
// CHECK-NOT: deferred
// CHECK: mt.adamw {{.*}}weight_decay = 0.000000e+00
// CHECK: return %[[ALL]], %[[NEWM]], %[[NEWV]],

// overlap_param_gather: every bucket's all-gather is deferred (behind the
// next forward), nothing else changes.
// OVERLAP-COUNT-3: mt.all_gather {{.*}} {axis = "dp", deferred, dim = 0 : i64} : (tensor<{{[0-9]+}}xf32>) -> tensor<32xf32>
// OVERLAP-NOT: mt.all_gather

// A bucket closes once it holds bucket-elements.
// SMALL: mt.buckets = [{axis = "dp", offsets = array<i64: 0>, params = [@w2]}, {axis = "dp", offsets = array<i64: 0>, params = [@norm]}, {axis = "dp", offsets = array<i64: 0>, params = [@w]}, {axis = "dp", offsets = array<i64: 0>, params = [@e]}]
