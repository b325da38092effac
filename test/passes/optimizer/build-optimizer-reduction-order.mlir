// RUN: mtc-opt %s -split-input-file -mt-build-optimizer | FileCheck %s
// RUN: mtc-opt %s -split-input-file -mt-build-optimizer="distributed-optimizer" | FileCheck %s --check-prefix=DISTOPT

// The order of @optimizer_step's gradient reductions: every one before the
// first scale, one axis after another. The backends start the leading run
// of one axis' reductions while backward still runs (overlap_grad_reduce),
// so a scale of an expert gradient between two dense all-reduces would
// leave every dense reduction after it to the optimizer.

// dp 2 = edp 1 x ep 2: the expert (between two dense parameters) is only
// scaled by 1 / dp; both dense gradients are averaged over dp first.
shard.grid @mesh(shape = 1x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @a : tensor<4xf32> init(ones)
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], [], []]>}
mt.param @b : tensor<8x4xf32> init(normal, std = 0.02)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GA:[^:]*]]: tensor<4xf32> {mt.param = @a, mt.role = "grad"}
// CHECK-SAME: %[[GE:[^:]*]]: tensor<2x8x4xf32> {mt.param = @"e.*.up", mt.role = "grad"}
// CHECK-SAME: %[[GB:[^:]*]]: tensor<8x4xf32> {mt.param = @b, mt.role = "grad"}
// CHECK-NEXT: %[[A:.*]] = mt.all_reduce %[[GA]] {axis = "dp", reduce = "mean"}
// CHECK-NEXT: %[[B:.*]] = mt.all_reduce %[[GB]] {axis = "dp", reduce = "mean"}
// CHECK-NEXT: %[[E:.*]] = mt.scale %[[GE]] {factor = 5.000000e-01 : f64}
// CHECK-NEXT: mt.global_norm %[[A]], %[[E]], %[[B]]

// The distributed optimizer: one bucket each (no layers), in reverse.
// DISTOPT-LABEL: func.func @optimizer_step(
// DISTOPT-NEXT: mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<32xf32>) -> tensor<16xf32>
// DISTOPT-NEXT: mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<32xf32>) -> tensor<16xf32>
// DISTOPT-NEXT: mt.scale %{{.*}} {factor = 5.000000e-01 : f64} : tensor<64xf32>
// DISTOPT-NEXT: mt.global_norm

// -----

// dp 4 = edp 2 x ep 2: the dense all-reduces over dp, then the expert's
// over edp, then its scale.
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x2x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @a : tensor<4xf32> init(ones)
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], [], []]>}
mt.param @b : tensor<8x4xf32> init(normal, std = 0.02)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GA:[^:]*]]: tensor<4xf32> {mt.param = @a, mt.role = "grad"}
// CHECK-SAME: %[[GE:[^:]*]]: tensor<2x8x4xf32> {mt.param = @"e.*.up", mt.role = "grad"}
// CHECK-SAME: %[[GB:[^:]*]]: tensor<8x4xf32> {mt.param = @b, mt.role = "grad"}
// CHECK-NEXT: mt.all_reduce %[[GA]] {axis = "dp", reduce = "mean"}
// CHECK-NEXT: mt.all_reduce %[[GB]] {axis = "dp", reduce = "mean"}
// CHECK-NEXT: %[[SE:.*]] = mt.all_reduce %[[GE]] {axis = "edp"}
// CHECK-NEXT: mt.scale %[[SE]] {factor = 2.500000e-01 : f64}
// CHECK-NEXT: mt.global_norm

// DISTOPT-LABEL: func.func @optimizer_step(
// DISTOPT-NEXT: mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<64xf32>) -> tensor<16xf32>
// DISTOPT-NEXT: mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<64xf32>) -> tensor<16xf32>
// DISTOPT-NEXT: %[[SE:.*]] = mt.reduce_scatter %{{.*}} {axis = "edp", dim = 0 : i64} : (tensor<64xf32>) -> tensor<32xf32>
// DISTOPT-NEXT: mt.scale %[[SE]] {factor = 2.500000e-01 : f64} : tensor<32xf32>
// DISTOPT-NEXT: mt.global_norm

// -----

// cp 2 x dp 2: every gradient's sum over cp, then every one's mean over dp.
shard.grid @mesh(shape = 1x2x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @a : tensor<4xf32> init(ones)
mt.param @b : tensor<8x4xf32> init(normal, std = 0.02)

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GA:[^:]*]]: tensor<4xf32> {mt.param = @a, mt.role = "grad"}
// CHECK-SAME: %[[GB:[^:]*]]: tensor<8x4xf32> {mt.param = @b, mt.role = "grad"}
// CHECK-NEXT: %[[CA:.*]] = mt.all_reduce %[[GA]] {axis = "cp"}
// CHECK-NEXT: %[[CB:.*]] = mt.all_reduce %[[GB]] {axis = "cp"}
// CHECK-NEXT: mt.all_reduce %[[CA]] {axis = "dp", reduce = "mean"}
// CHECK-NEXT: mt.all_reduce %[[CB]] {axis = "dp", reduce = "mean"}
// CHECK-NEXT: mt.global_norm

// DISTOPT-LABEL: func.func @optimizer_step(
// DISTOPT-NEXT: %[[CB:.*]] = mt.all_reduce %{{.*}} {axis = "cp"}
// DISTOPT-NEXT: %[[CA:.*]] = mt.all_reduce %{{.*}} {axis = "cp"}
// DISTOPT-NEXT: mt.reduce_scatter %[[CB]] {axis = "dp", dim = 0 : i64, reduce = "mean"}
// DISTOPT-NEXT: mt.reduce_scatter %[[CA]] {axis = "dp", dim = 0 : i64, reduce = "mean"}
// DISTOPT-NEXT: mt.global_norm
