// RUN: mtc-opt %s -mt-autodiff -mt-pipeline-split="chunk-layers=1,1,1" -verify-diagnostics | FileCheck %s

// A value of stage 0 read on stage 2 (a MoE model's aux-loss sum past a
// stage of dense layers): it is passed on one stage at a time, 0 -> 1 ->
// 2; the nearer reader on stage 1 takes the first transfer of the chain.
// Its gradient comes back 2 -> 1, where autodiff's add sums it with stage
// 1's term, and that sum 1 -> 0.
shard.grid @mesh(shape = 3x1x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @w0 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @w1 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @w2 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @head : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  %a = mt.weight @w0 : tensor<8x8xf32>
  %y0 = mt.linear %x, %a {mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %b = mt.weight @w1 : tensor<8x8xf32>
  %y1 = mt.linear %y0, %b {mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %c = mt.weight @w2 : tensor<8x8xf32>
  %z = mt.linear %y1, %c {mt.layer = 2 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %y2 = mt.add %z, %y0 {mt.layer = 2 : i64} : tensor<2x4x8xf32>
  %h = mt.weight @head : tensor<16x8xf32>
  %l = mt.linear %y2, %h : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward_backward(
// CHECK: %[[Y0:.*]] = mt.linear %{{.*}} {mt.layer = 0 : i64, mt.virtual_stage = 0 : i64}
// CHECK-NEXT: %[[Y0AT1:.*]] = mt.stage_transfer %[[Y0]] {from = 0 : i64, mt.virtual_stage = 1 : i64, to = 1 : i64}
// CHECK-NEXT: %[[Y0AT2:.*]] = mt.stage_transfer %[[Y0AT1]] {from = 1 : i64, mt.virtual_stage = 2 : i64, to = 2 : i64}
// CHECK: mt.linear %[[Y0AT1]], %{{.*}} {mt.layer = 1 : i64, mt.virtual_stage = 1 : i64}
// CHECK: mt.add %{{.*}}, %[[Y0AT2]] {mt.layer = 2 : i64, mt.virtual_stage = 2 : i64}
// CHECK: %[[DY0AT1:.*]] = mt.stage_transfer {{.*}} {from = 2 : i64, mt.backward, mt.virtual_stage = 1 : i64, to = 1 : i64}
// CHECK: %[[SUM:.*]] = mt.add %[[DY0AT1]], %{{.*}} {mt.backward, mt.layer = 1 : i64, mt.virtual_stage = 1 : i64}
// CHECK-NEXT: mt.stage_transfer %[[SUM]] {from = 1 : i64, mt.backward, mt.virtual_stage = 0 : i64, to = 0 : i64}
// CHECK: return
