// RUN: mtc-opt %s -mt-partition-tp=sequence-parallel -verify-diagnostics | FileCheck %s

// Sequence parallelism (Megatron-Core's layout with tp = 2): outside the
// tensor-parallel regions activations are split along the sequence; the
// embedding's and row-parallel outputs are reduce-scattered, the inputs of
// column-parallel linears all-gathered, norms run on sequence shards.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @norm : tensor<8xf32> init(ones)
mt.param @up : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @down : tensor<8x16xf32> init(normal, std = 0.02)
mt.param @downb : tensor<8xf32> init(zeros)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  %wn = mt.weight @norm : tensor<8xf32>
  %n = mt.rmsnorm %x, %wn {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %wu = mt.weight @up : tensor<16x8xf32>
  %u = mt.linear %n, %wu : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %wd = mt.weight @down : tensor<8x16xf32>
  %bd = mt.weight @downb : tensor<8xf32>
  %d = mt.linear %u, %wd, %bd : (tensor<2x4x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %h = mt.add %n, %d : tensor<2x4x8xf32>
  %l = mt.linear %h, %e : (tensor<2x4x8xf32>, tensor<32x8xf32>) -> tensor<2x4x32xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x32xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward
// CHECK: %[[E:.*]] = mt.embedding %arg0, %{{.*}} {vocab_parallel_axis = "tp"} : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[X:.*]] = mt.reduce_scatter %[[E]] {axis = "tp", dim = 1 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
// The norm on sequence shards: its weight's gradient is partial over tp.
// CHECK: %[[NW:.*]] = mt.tp_copy %{{.*}} {axis = "tp"} : tensor<8xf32>
// CHECK-NEXT: %[[N:.*]] = mt.rmsnorm %[[X]], %[[NW]] {{.*}} : (tensor<2x2x8xf32>, tensor<8xf32>) -> tensor<2x2x8xf32>
// CHECK-NEXT: %[[G:.*]] = mt.all_gather %[[N]] {axis = "tp", dim = 1 : i64} : (tensor<2x2x8xf32>) -> tensor<2x4x8xf32>
// CHECK: %[[U:.*]] = mt.linear %[[G]], %{{.*}} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK: %[[D:.*]] = mt.linear %[[U]], %{{[0-9]+}} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[RS:.*]] = mt.reduce_scatter %[[D]] {axis = "tp", dim = 1 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
// CHECK-NEXT: %[[B:.*]] = mt.tp_copy %{{.*}} {axis = "tp"} : tensor<8xf32>
// CHECK-NEXT: %[[DB:.*]] = mt.bias_add %[[RS]], %[[B]] : (tensor<2x2x8xf32>, tensor<8xf32>) -> tensor<2x2x8xf32>
// CHECK-NEXT: %[[H:.*]] = mt.add %[[N]], %[[DB]] : tensor<2x2x8xf32>
// CHECK-NEXT: %[[HG:.*]] = mt.all_gather %[[H]] {axis = "tp", dim = 1 : i64} : (tensor<2x2x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[L:.*]] = mt.linear %[[HG]], %{{.*}} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
// CHECK-NEXT: mt.cross_entropy %[[L]], %arg1, %arg2 {vocab_parallel_axis = "tp"}
