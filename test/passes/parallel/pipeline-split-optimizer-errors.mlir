// RUN: mtc-opt %s -split-input-file -mt-autodiff -mt-pipeline-split="chunk-layers=1,1" -verify-diagnostics
// What mt-pipeline-split refuses in @optimizer_step.

// A distributed optimizer's bucket that mixes the tied @emb with @w0: its
// sum over pp_tied would add the last stage's unrelated values.
shard.grid @mesh(shape = 2x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
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
// expected-error @+1 {{'func.func' op bucket 0 mixes tied and untied parameters; a tied parameter's gradient is summed over pp_tied alone}}
func.func @optimizer_step(%step: tensor<i64> {mt.role = "step"},
                          %grad: tensor<192xf32> {mt.bucket = 0 : i64, mt.param = @emb, mt.role = "grad"})
    attributes {mt.buckets = [{axis = "dp", offsets = array<i64: 0, 128>, params = [@emb, @w0]}]} {
  return
}

// -----

// A norm over a value that is no parameter's gradient: no stage owns it.
shard.grid @mesh(shape = 2x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
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
func.func @optimizer_step(%step: tensor<i64> {mt.role = "step"},
                          %x: tensor<f32> {mt.role = "grad", mt.param = @w0}) {
  %s = mt.sqrt %x : tensor<f32>
  // expected-error @+1 {{'mt.sum_squares' op operand 1 is not a parameter's gradient (an argument of @optimizer_step with 'mt.param', or its mt.all_reduce or mt.reduce_scatter), so no pipeline stage owns it}}
  %n = mt.sum_squares %x, %s : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return
}
