// RUN: mtc-opt %s -split-input-file -mt-autodiff -mt-pipeline-split="chunk-layers=1,1" -verify-diagnostics | FileCheck %s
// RUN: not mtc-opt %s -split-input-file -mt-autodiff -mt-pipeline-split="chunk-layers=1,1,1" 2>&1 | FileCheck %s --check-prefix=LAYOUT

// Two layers on pp = 2: the embedding and layer 0 run on virtual stage 0,
// layer 1, the head and the loss on 1, and the backward the other way. The
// residual stream crosses once each way through mt.stage_transfer: the
// activation forward (layer 1's weight gradient reads it too, as received),
// its gradient back. Each parameter is held by the stage that reads it.
shard.grid @mesh(shape = 2x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK: mt.param @emb {{.*}} {mt.pipeline_stage = 0 : i64}
// CHECK: mt.param @w0 {{.*}} {mt.pipeline_stage = 0 : i64}
// CHECK: mt.param @w1 {{.*}} {mt.pipeline_stage = 1 : i64}
// CHECK: mt.param @head {{.*}} {mt.pipeline_stage = 1 : i64}
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
// CHECK-LABEL: func.func @forward_backward(
// CHECK: %[[X:.*]] = mt.embedding {{.*}} {mt.virtual_stage = 0 : i64}
// CHECK: %[[Y0:.*]] = mt.linear %[[X]], %{{.*}} {mt.layer = 0 : i64, mt.virtual_stage = 0 : i64}
// CHECK-NEXT: %[[Y0R:.*]] = mt.stage_transfer %[[Y0]] {from = 0 : i64, mt.virtual_stage = 1 : i64, to = 1 : i64} : tensor<2x4x8xf32>
// CHECK: %[[Y1:.*]] = mt.linear %[[Y0R]], %{{.*}} {mt.layer = 1 : i64, mt.virtual_stage = 1 : i64}
// CHECK: mt.linear %[[Y1]], %{{.*}} {mt.virtual_stage = 1 : i64}
// CHECK: mt.cross_entropy {{.*}} {mt.virtual_stage = 1 : i64}
// CHECK: mt.cross_entropy_grad {{.*}} {mt.backward, mt.virtual_stage = 1 : i64}
// CHECK: %[[DY0:.*]] = mt.linear_grad_input %{{.*}}, %{{.*}} {mt.backward, mt.layer = 1 : i64, mt.virtual_stage = 1 : i64}
// CHECK-NEXT: %[[DY0R:.*]] = mt.stage_transfer %[[DY0]] {from = 1 : i64, mt.backward, mt.virtual_stage = 0 : i64, to = 0 : i64}
// CHECK-NEXT: mt.linear_grad_weight %[[Y0R]], %{{.*}} {mt.backward, mt.layer = 1 : i64, mt.virtual_stage = 1 : i64}
// CHECK-DAG: mt.linear_grad_input %[[DY0R]], %{{.*}} {mt.backward, mt.layer = 0 : i64, mt.virtual_stage = 0 : i64}
// CHECK-DAG: mt.linear_grad_weight %[[X]], %[[DY0R]] {mt.backward, mt.layer = 0 : i64, mt.virtual_stage = 0 : i64}
// CHECK: mt.embedding_grad {{.*}} {mt.backward, mt.virtual_stage = 0 : i64}
// CHECK-NOT: mt.stage_transfer
// CHECK: return

// LAYOUT: error: mt-pipeline-split: chunk-layers gives 3 virtual stages, expected a positive multiple of pp = 2

// -----

// Tied embeddings: the head reads the embedding on the last stage, so the
// first stage owns it and the last keeps a copy. The two gradient terms
// are not moved between stages: each stage adds its own into the
// parameter's gradient buffer, and @optimizer_step sums the two over
// pp_tied (pipeline-split-tied.mlir).
shard.grid @mesh(shape = 2x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK: mt.param @emb {{.*}} {mt.pipeline_stage = 0 : i64, mt.tied_stage = 1 : i64}
// CHECK: %[[HEAD:.*]] = mt.linear_grad_weight {{.*}}mt.virtual_stage = 1 : i64
// CHECK: %[[LOOKUP:.*]] = mt.embedding_grad {{.*}}mt.virtual_stage = 0 : i64
// CHECK-NEXT: mt.add %[[HEAD]], %[[LOOKUP]] {mt.backward, mt.virtual_stage = 0 : i64}
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

// -----

// A layer the layout does not have.
shard.grid @mesh(shape = 2x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  // expected-error @+1 {{'mt.linear' op belongs to layer 2 beyond the 2 layers of the pipeline layout}}
  %l = mt.linear %x, %e {mt.layer = 2 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
