// RUN: mtc-opt %s -split-input-file -mt-build-step-loss="micro-batches=4" -verify-diagnostics | FileCheck %s
// RUN: mtc-opt %s -split-input-file -mt-build-step-loss="micro-batches=4 per-token-loss=true" -verify-diagnostics | FileCheck %s --check-prefix=TOKEN

// Megatron-Core's default on pp 2 x dp 2 x cp 2: the mean of the
// micro-batches' means, summed over pp (only the last stage has it) and cp
// (each rank's share of the tokens), averaged over dp; seed 1/4.
shard.grid @mesh(shape = 2x2x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK-LABEL: func.func @step_loss(
// CHECK-SAME: %[[LOSS:[^:]*]]: tensor<f32> {mt.role = "loss"}) -> tensor<f32>
// CHECK-SAME: attributes {mt.loss_scale = 2.500000e-01 : f64}
// CHECK-NEXT: %[[W:.*]] = mt.scale %[[LOSS]] {factor = 2.500000e-01 : f64} : tensor<f32>
// CHECK-NEXT: %[[PP:.*]] = mt.all_reduce %[[W]] {axis = "pp"} : tensor<f32>
// CHECK-NEXT: %[[CP:.*]] = mt.all_reduce %[[PP]] {axis = "cp"} : tensor<f32>
// CHECK-NEXT: %[[DP:.*]] = mt.all_reduce %[[CP]] {axis = "dp", reduce = "mean"} : tensor<f32>
// CHECK-NEXT: return %[[DP]]

// calculate_per_token_loss: the loss sums and the loss tokens summed alike
// over every rank, then divided; seed 1.
// TOKEN-LABEL: func.func @step_loss(
// TOKEN-SAME: %[[LOSS:[^:]*]]: tensor<f32> {mt.role = "loss"}, %[[N:[^:]*]]: tensor<f32> {mt.role = "num_tokens"}) -> tensor<f32>
// TOKEN-SAME: attributes {mt.loss_scale = 1.000000e+00 : f64}
// TOKEN-NOT: mt.scale %
// TOKEN: %[[L1:.*]] = mt.all_reduce %[[LOSS]] {axis = "pp"}
// TOKEN-NEXT: %[[L2:.*]] = mt.all_reduce %[[L1]] {axis = "cp"}
// TOKEN-NEXT: %[[L3:.*]] = mt.all_reduce %[[L2]] {axis = "dp"}
// TOKEN-NEXT: %[[N1:.*]] = mt.all_reduce %[[N]] {axis = "pp"}
// TOKEN-NEXT: %[[N2:.*]] = mt.all_reduce %[[N1]] {axis = "cp"}
// TOKEN-NEXT: %[[N3:.*]] = mt.all_reduce %[[N2]] {axis = "dp"}
// TOKEN-NEXT: %[[R:.*]] = mt.scale_by %[[L3]], %[[N3]] {inverse}
// TOKEN-NEXT: return %[[R]]

// -----

// One rank: no reductions.
shard.grid @mesh(shape = 1x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK-LABEL: func.func @step_loss(
// CHECK-NEXT: mt.scale
// CHECK-NOT: mt.all_reduce
// CHECK: return
// TOKEN-LABEL: func.func @step_loss(
// TOKEN-NOT: mt.all_reduce
// TOKEN: mt.scale_by
// TOKEN-NEXT: return
