// RUN: mtc-opt %s -split-input-file -mt-autodiff -mt-build-optimizer -mt-expose-collectives -mt-pipeline-split="chunk-layers=1,1" -verify-diagnostics | FileCheck %s
// RUN: mtc-opt %s -split-input-file -mt-autodiff -mt-build-optimizer=distributed-optimizer=true -mt-expose-collectives -mt-pipeline-split="chunk-layers=1,1" -verify-diagnostics | FileCheck %s --check-prefix=BUCKET

// Tied embeddings on pp = 2, dp = 2: the first and the last stage each hold
// one term of @emb's gradient, and @optimizer_step sums the two over the
// embedding group (pp_tied) before anything reads it: the dp mean (or, with
// the distributed optimizer, the bucket's reduce-scatter) then reduces the
// sum. No other gradient is summed over pp_tied. Each per-parameter op
// runs where its parameter is held (mt.pipeline_stage, and mt.tied_stage
// for @emb's); the norm, clipping and schedule on every stage. Each
// stage's share of the gradient norm (mt.sum_squares `stages`) is the
// gradients of the parameters it owns: the tied @emb counts once, on
// stage 0.
shard.grid @mesh(shape = 2x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @w0 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @w1 : tensor<8x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  %a = mt.weight @w0 : tensor<8x8xf32>
  %y0 = mt.linear %x, %a {mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %b = mt.weight @w1 : tensor<8x8xf32>
  %y1 = mt.linear %y0, %b {mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %l = mt.linear %y1, %e : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[EG:arg[0-9]+]]: tensor<16x8xf32> {mt.param = @emb, mt.role = "grad"}
// CHECK-NEXT: %[[SUM:.*]] = mt.all_reduce %[[EG]] {axis = "pp_tied", mt.pipeline_stage = 0 : i64, mt.tied_stage = 1 : i64} : tensor<16x8xf32>
// CHECK-NOT: pp_tied
// CHECK: %[[MEAN:.*]] = mt.all_reduce %[[SUM]] {axis = "dp", mt.pipeline_stage = 0 : i64, mt.tied_stage = 1 : i64, reduce = "mean"}
// CHECK-NOT: pp_tied
// CHECK: mt.all_reduce %{{.*}} {axis = "dp", mt.pipeline_stage = 1 : i64, reduce = "mean"} : tensor<8x8xf32>
// CHECK: mt.sum_squares %[[MEAN]], %{{.*}}, %{{.*}} {stages = array<i64: 0, 0, 1>}
// CHECK-NEXT: mt.all_reduce %{{.*}} {axis = "pp"} : tensor<f32>
// CHECK-NEXT: mt.sqrt %{{[0-9]+}} : tensor<f32>
// CHECK-NOT: pp_tied
// CHECK: mt.adamw %{{.*}}, %[[MEAN]], {{.*}}mt.pipeline_stage = 0 : i64, mt.tied_stage = 1 : i64, weight_decay
// CHECK-NOT: pp_tied
// CHECK: return

// BUCKET-LABEL: func.func @optimizer_step(
// BUCKET-SAME: %[[EG:arg[0-9]+]]: tensor<128xf32> {mt.bucket = 2 : i64, mt.param = @emb, mt.role = "grad"}
// BUCKET-NEXT: %[[SUM:.*]] = mt.all_reduce %[[EG]] {axis = "pp_tied", mt.pipeline_stage = 0 : i64, mt.tied_stage = 1 : i64} : tensor<128xf32>
// BUCKET-NOT: pp_tied
// BUCKET: %[[SHARD:.*]] = mt.reduce_scatter %[[SUM]] {axis = "dp", dim = 0 : i64, mt.pipeline_stage = 0 : i64, mt.tied_stage = 1 : i64, reduce = "mean"}
// BUCKET-NOT: pp_tied
// BUCKET: mt.sum_squares %{{.*}}, %{{.*}}, %[[SHARD]] {stages = array<i64: 1, 0, 0>}
// BUCKET-NOT: pp_tied
// BUCKET: mt.all_slice %{{.*}} {axis = "dp", dim = 0 : i64, mt.pipeline_stage = 1 : i64}
// BUCKET: mt.all_gather %{{.*}} {axis = "dp", dim = 0 : i64, mt.pipeline_stage = 0 : i64, mt.tied_stage = 1 : i64}
// BUCKET: return

// -----

// Untied: nothing is summed over pp_tied; stage 1 owns @w1 and @head.
shard.grid @mesh(shape = 2x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @w0 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @w1 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @head : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  %a = mt.weight @w0 : tensor<8x8xf32>
  %y0 = mt.linear %x, %a {mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %b = mt.weight @w1 : tensor<8x8xf32>
  %y1 = mt.linear %y0, %b {mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %h = mt.weight @head : tensor<16x8xf32>
  %l = mt.linear %y1, %h : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @optimizer_step(
// CHECK-NOT: pp_tied
// CHECK: mt.sum_squares {{.*}} {stages = array<i64: 0, 0, 1, 1>}
// CHECK-NOT: pp_tied
// CHECK: return
// BUCKET-LABEL: func.func @optimizer_step(
// BUCKET-NOT: pp_tied
// BUCKET: return
