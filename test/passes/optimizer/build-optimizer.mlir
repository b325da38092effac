// RUN: mtc-opt %s -mt-build-optimizer="lr=1.0e-3 min-lr=1.0e-4 warmup-steps=10 decay-steps=100 decay-style=linear weight-decay=0.1 beta2=0.95 clip-grad=0.5" | FileCheck %s

// One AdamW update per trainable parameter, after the global norm, the NaN
// check, clipping and the schedule; no weight decay on rank-1 parameters;
// none for a frozen one.
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02)
mt.param @norm : tensor<4xf32> init(ones)
mt.param @frozen : tensor<4xf32> init(ones) {frozen}

// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[STEP:[^:]*]]: tensor<i64> {mt.role = "step"}
// CHECK-SAME: %[[W:[^:]*]]: tensor<8x4xf32> {mt.param = @w, mt.role = "param"}
// CHECK-SAME: %[[GW:[^:]*]]: tensor<8x4xf32> {mt.param = @w, mt.role = "grad"}
// CHECK-SAME: {mt.param = @w, mt.role = "exp_avg"}
// CHECK-SAME: {mt.param = @w, mt.role = "exp_avg_sq"}
// CHECK-SAME: %[[GN:[^:]*]]: tensor<4xf32> {mt.param = @norm, mt.role = "grad"}
// CHECK-NOT: @frozen
// CHECK: %[[NORM:.*]] = mt.global_norm %[[GW]], %[[GN]]
// CHECK-NEXT: mt.check_finite %[[NORM]]
// CHECK-NEXT: %[[SCALE:.*]] = mt.clip_coefficient %[[NORM]] {max_norm = 5.000000e-01 : f64}
// CHECK-NEXT: %[[LR:.*]] = mt.lr_schedule %[[STEP]] {decay_steps = 100 : i64, max_lr = 1.000000e-03 : f64, min_lr = 1.000000e-04 : f64, style = "linear", warmup_steps = 10 : i64}
// CHECK-NEXT: mt.adamw %[[W]], %[[GW]], %{{.*}}, %{{.*}}, %[[LR]], %[[STEP]], %[[SCALE]] {beta1 = 9.000000e-01 : f64, beta2 = 0.94999999999999996 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-01 : f64}
// CHECK-NEXT: mt.adamw {{.*}} weight_decay = 0.000000e+00 : f64
// CHECK-NEXT: return
