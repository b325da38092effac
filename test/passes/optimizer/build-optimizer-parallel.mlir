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
