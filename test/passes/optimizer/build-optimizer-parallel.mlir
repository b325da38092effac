// RUN: mtc-opt %s -mt-build-optimizer="dp=2" | FileCheck %s

// Data parallelism averages each gradient over dp before anything reads it;
// a parameter split over tp counts its shards once in the global norm.
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02) {shard_dim = 0 : i64, shards = 2 : i64}
mt.param @norm : tensor<4xf32> init(ones)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[W:[^:]*]]: tensor<4x4xf32> {mt.param = @w, mt.role = "param"}
// CHECK-SAME: %[[GW:[^:]*]]: tensor<4x4xf32> {mt.param = @w, mt.role = "grad"}
// CHECK: %[[AW:.*]] = mt.all_reduce %[[GW]] {axis = "dp", reduce = "mean"} : tensor<4x4xf32>
// CHECK: %[[AN:.*]] = mt.all_reduce %{{.*}} {axis = "dp", reduce = "mean"} : tensor<4xf32>
// CHECK: mt.global_norm %[[AW]], %[[AN]] {replicated = array<i1: false, true>, sharded_axis = "tp"}
// CHECK: mt.adamw %[[W]], %[[AW]]
