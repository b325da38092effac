// RUN: mtc-opt %s -split-input-file -mt-partition-tp -verify-diagnostics | FileCheck %s

// The partition rule of each op (PartitionableOpInterface, in
// dialects/mt/MtPartitionRules.cpp), one case per op, on @mesh with tp = 2.

// Embedding: vocab-parallel, the lookups summed over tp.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>) -> tensor<2x4x8xf32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  return %x : tensor<2x4x8xf32>
}
// CHECK: mt.param @emb {{.*}}sharding = #mt.sharding<@mesh, {{\[\["tp"\], \[\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK: %[[E:.*]] = mt.embedding %{{.*}} {vocab_parallel_axis = "tp"} : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[S:.*]] = mt.all_reduce %[[E]] {axis = "tp"} : tensor<2x4x8xf32>
// CHECK-NEXT: return %[[S]]

// -----

// Linear: column-parallel on a replicated input (weight and bias split on
// their output rows), row-parallel on a feature-split input; swiglu and gelu
// are local on split features.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @gate : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @up : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @upb : tensor<16xf32> init(zeros)
mt.param @down : tensor<8x16xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %wg = mt.weight @gate : tensor<16x8xf32>
  %g = mt.linear %x, %wg : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %wu = mt.weight @up : tensor<16x8xf32>
  %bu = mt.weight @upb : tensor<16xf32>
  %u = mt.linear %x, %wu, %bu : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<2x4x16xf32>
  %s = mt.swiglu %g, %u : tensor<2x4x16xf32>
  %a = mt.gelu %s : tensor<2x4x16xf32>
  %wd = mt.weight @down : tensor<8x16xf32>
  %d = mt.linear %a, %wd : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  return %d : tensor<2x4x8xf32>
}
// CHECK: mt.param @gate {{.*}}sharding = #mt.sharding<@mesh, {{\[\["tp"\], \[\]\]}}>
// CHECK: mt.param @up {{.*}}sharding = #mt.sharding<@mesh, {{\[\["tp"\], \[\]\]}}>
// CHECK: mt.param @upb {{.*}}sharding = #mt.sharding<@mesh, {{\[\["tp"\]\]}}>
// CHECK: mt.param @down {{.*}}sharding = #mt.sharding<@mesh, {{\[\[\], \["tp"\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK: %[[X:.*]] = mt.tp_copy %arg0 {axis = "tp"} : tensor<2x4x8xf32>
// CHECK: %[[G:.*]] = mt.linear %[[X]], %{{.*}} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK: %[[U:.*]] = mt.linear %[[X]], %{{.*}}, %{{.*}} : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
// CHECK: %[[S:.*]] = mt.swiglu %[[G]], %[[U]] : tensor<2x4x8xf32>
// CHECK: %[[A:.*]] = mt.gelu %[[S]] : tensor<2x4x8xf32>
// CHECK: %[[D:.*]] = mt.linear %[[A]], %{{.*}} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[R:.*]] = mt.all_reduce %[[D]] {axis = "tp"} : tensor<2x4x8xf32>
// CHECK-NEXT: return %[[R]]

// -----

// Attention: heads split by the reshapes around it (features <-> heads),
// rotary local on them, num_heads and num_kv_heads divided by tp.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @q : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @kv : tensor<4x8xf32> init(normal, std = 0.02)
mt.param @o : tensor<8x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %wq = mt.weight @q : tensor<8x8xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %wkv = mt.weight @kv : tensor<4x8xf32>
  %k = mt.linear %x, %wkv : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4x4xf32>
  %q4 = mt.reshape %q : tensor<2x4x8xf32> -> tensor<2x4x4x2xf32>
  %k4 = mt.reshape %k : tensor<2x4x4xf32> -> tensor<2x4x2x2xf32>
  %qr = mt.rotary %q4 {theta = 1.0e4 : f64} : tensor<2x4x4x2xf32>
  %a = mt.attention %qr, %k4, %k4 {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 2 : i64, scale = 0.7 : f64}
      : (tensor<2x4x4x2xf32>, tensor<2x4x2x2xf32>, tensor<2x4x2x2xf32>) -> tensor<2x4x4x2xf32>
  %a3 = mt.reshape %a : tensor<2x4x4x2xf32> -> tensor<2x4x8xf32>
  %wo = mt.weight @o : tensor<8x8xf32>
  %o = mt.linear %a3, %wo : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  return %o : tensor<2x4x8xf32>
}
// CHECK: mt.param @o {{.*}}sharding = #mt.sharding<@mesh, {{\[\[\], \["tp"\]\]}}>
// CHECK-LABEL: func.func @forward
// CHECK: %[[Q:.*]] = mt.reshape %{{.*}} : tensor<2x4x4xf32> -> tensor<2x4x2x2xf32>
// CHECK: %[[K:.*]] = mt.reshape %{{.*}} : tensor<2x4x2xf32> -> tensor<2x4x1x2xf32>
// CHECK: %[[QR:.*]] = mt.rotary %[[Q]] {{.*}} : tensor<2x4x2x2xf32>
// CHECK: %[[A:.*]] = mt.attention %[[QR]], %[[K]], %[[K]] {head_dim = 2 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, {{.*}}} : (tensor<2x4x2x2xf32>, tensor<2x4x1x2xf32>, tensor<2x4x1x2xf32>) -> tensor<2x4x2x2xf32>
// CHECK: mt.reshape %[[A]] : tensor<2x4x2x2xf32> -> tensor<2x4x4xf32>
// CHECK: mt.all_reduce

// -----

// Residual add and norms on replicated values stay whole; cross-entropy on
// replicated logits is not vocab-parallel.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @n : tensor<8xf32> init(ones)
mt.param @ln : tensor<8xf32> init(ones)
mt.param @lb : tensor<8xf32> init(zeros)
func.func @forward(%x: tensor<2x4x8xf32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %wn = mt.weight @n : tensor<8xf32>
  %n = mt.rmsnorm %x, %wn {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %w = mt.weight @ln : tensor<8xf32>
  %b = mt.weight @lb : tensor<8xf32>
  %l = mt.layernorm %n, %w, %b {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %h = mt.add %x, %l : tensor<2x4x8xf32>
  %loss = mt.cross_entropy %h, %labels, %mask : (tensor<2x4x8xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK: mt.param @n : tensor<8xf32> init(ones){{$}}
// CHECK: mt.param @ln : tensor<8xf32> init(ones){{$}}
// CHECK: mt.param @lb : tensor<8xf32> init(zeros){{$}}
// CHECK-LABEL: func.func @forward
// CHECK-NOT: mt.tp_copy
// CHECK-NOT: mt.all_reduce
// CHECK: mt.rmsnorm %arg0, %{{.*}} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
// CHECK: mt.layernorm
// CHECK: mt.add %arg0, %{{.*}} : tensor<2x4x8xf32>
// CHECK: mt.cross_entropy %{{[0-9]+}}, %arg1, %arg2 : (tensor<2x4x8xf32>

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @q : tensor<8x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<2x32xf32> {
  %wq = mt.weight @q : tensor<8x8xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  // expected-error @+1 {{'mt.reshape' op reshapes a value split on dimension 2 in a way tensor parallelism does not support}}
  %f = mt.reshape %q : tensor<2x4x8xf32> -> tensor<2x32xf32>
  return %f : tensor<2x32xf32>
}

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @q : tensor<8x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %wq = mt.weight @q : tensor<8x8xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  // expected-error @+1 {{'mt.add' op has operands laid out differently over tp}}
  %h = mt.add %x, %q : tensor<2x4x8xf32>
  return %h : tensor<2x4x8xf32>
}

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @q : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @ln : tensor<8xf32> init(ones)
mt.param @lb : tensor<8xf32> init(zeros)
func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %wq = mt.weight @q : tensor<8x8xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %w = mt.weight @ln : tensor<8xf32>
  %b = mt.weight @lb : tensor<8xf32>
  // expected-error @+1 {{'mt.layernorm' op normalizes over a dimension split over tp (sequence/feature-split norms are not supported)}}
  %n = mt.layernorm %q, %w, %b {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  return %n : tensor<2x4x8xf32>
}

// -----

// A parameter used column- and then row-parallel has no one layout.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @w : tensor<8x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %w = mt.weight @w : tensor<8x8xf32>
  %y = mt.linear %x, %w : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  // expected-error @+1 {{'mt.linear' op needs parameter @w split differently from an earlier use (tied weights must share one layout)}}
  %z = mt.linear %y, %w : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  return %z : tensor<2x4x8xf32>
}

// -----

// An op without a partition rule accepts only replicated operands.
shard.grid @mesh(shape = 1x2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @q : tensor<8x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %wq = mt.weight @q : tensor<8x8xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  // expected-error @+1 {{'mt.all_reduce' op has no tensor-parallel rule}}
  %s = mt.all_reduce %q {axis = "dp"} : tensor<2x4x8xf32>
  return %s : tensor<2x4x8xf32>
}

// -----

// expected-error @+1 {{mt-partition-tp expects a mesh 'shard.grid @mesh' with axis 'tp' in 'mt.axes'}}
module {
  mt.param @w : tensor<8x8xf32> init(normal, std = 0.02)
}
