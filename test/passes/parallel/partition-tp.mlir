// RUN: mtc-opt %s -split-input-file -mt-partition-tp -verify-diagnostics | FileCheck %s

// tp = 2: the size of axis tp of @mesh.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}

// A decoder layer: vocab-parallel embedding, column-parallel q/k/v and
// gate/up, row-parallel o/down, local heads, a per-head norm, and a
// vocab-parallel cross-entropy with a tied head.
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @q : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @qb : tensor<8xf32> init(zeros)
mt.param @kv : tensor<4x8xf32> init(normal, std = 0.02)
mt.param @qn : tensor<2xf32> init(ones)
mt.param @o : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @up : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @down : tensor<8x16xf32> init(normal, std = 0.02)
// CHECK-DAG: mt.param @emb : tensor<32x8xf32> init(normal, std = 2.000000e-02) {sharding = #mt.sharding<@mesh, {{\[\["tp"\], \[\]\]}}>}
// CHECK-DAG: mt.param @q : tensor<8x8xf32> {{.*}}{sharding = #mt.sharding<@mesh, {{\[\["tp"\], \[\]\]}}>}
// CHECK-DAG: mt.param @qb : tensor<8xf32> init(zeros) {sharding = #mt.sharding<@mesh, {{\[\["tp"\]\]}}>}
// CHECK-DAG: mt.param @qn : tensor<2xf32> init(ones){{$}}
// CHECK-DAG: mt.param @o : tensor<8x8xf32> {{.*}}{sharding = #mt.sharding<@mesh, {{\[\[\], \["tp"\]\]}}>}
// CHECK-DAG: mt.param @down : tensor<8x16xf32> {{.*}}{sharding = #mt.sharding<@mesh, {{\[\[\], \["tp"\]\]}}>}
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  %wq = mt.weight @q : tensor<8x8xf32>
  %bq = mt.weight @qb : tensor<8xf32>
  %q = mt.linear %x, %wq, %bq : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %wkv = mt.weight @kv : tensor<4x8xf32>
  %k = mt.linear %x, %wkv : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4x4xf32>
  %q4 = mt.reshape %q : tensor<2x4x8xf32> -> tensor<2x4x4x2xf32>
  %k4 = mt.reshape %k : tensor<2x4x4xf32> -> tensor<2x4x2x2xf32>
  %wqn = mt.weight @qn : tensor<2xf32>
  %qn = mt.rmsnorm %q4, %wqn {eps = 1.0e-6 : f64} : (tensor<2x4x4x2xf32>, tensor<2xf32>) -> tensor<2x4x4x2xf32>
  %qr = mt.rotary %qn {theta = 1.0e4 : f64} : tensor<2x4x4x2xf32>
  %a = mt.attention %qr, %k4, %k4 {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 2 : i64, scale = 0.7 : f64}
      : (tensor<2x4x4x2xf32>, tensor<2x4x2x2xf32>, tensor<2x4x2x2xf32>) -> tensor<2x4x4x2xf32>
  %a3 = mt.reshape %a : tensor<2x4x4x2xf32> -> tensor<2x4x8xf32>
  %wo = mt.weight @o : tensor<8x8xf32>
  %o = mt.linear %a3, %wo : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %h = mt.add %x, %o : tensor<2x4x8xf32>
  %wu = mt.weight @up : tensor<16x8xf32>
  %u = mt.linear %h, %wu : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %g = mt.swiglu %u, %u : tensor<2x4x16xf32>
  %wd = mt.weight @down : tensor<8x16xf32>
  %d = mt.linear %g, %wd : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %logits = mt.linear %d, %e : (tensor<2x4x8xf32>, tensor<32x8xf32>) -> tensor<2x4x32xf32>
  %loss = mt.cross_entropy %logits, %labels, %mask : (tensor<2x4x32xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward
// CHECK: %[[EMB:.*]] = mt.embedding %{{.*}} {vocab_parallel_axis = "tp"} : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[X:.*]] = mt.all_reduce %[[EMB]] {axis = "tp"} : tensor<2x4x8xf32>
// One copy of %x serves both column-parallel linears.
// CHECK: %[[XC:.*]] = mt.tp_copy %[[X]] {axis = "tp"} : tensor<2x4x8xf32>
// CHECK-NOT: mt.tp_copy %[[X]]
// CHECK: mt.linear %[[XC]], %{{.*}}, %{{.*}} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<2x4x4xf32>
// CHECK: mt.linear %[[XC]], %{{.*}} : (tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x2xf32>
// CHECK: mt.reshape %{{.*}} : tensor<2x4x4xf32> -> tensor<2x4x2x2xf32>
// CHECK: mt.reshape %{{.*}} : tensor<2x4x2xf32> -> tensor<2x4x1x2xf32>
// The norm over local heads sums its weight's gradient over tp.
// CHECK: %[[QNW:.*]] = mt.tp_copy %{{.*}} {axis = "tp"} : tensor<2xf32>
// CHECK: mt.rmsnorm %{{.*}}, %[[QNW]]
// CHECK: mt.attention {{.*}} {head_dim = 2 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, {{.*}}} : (tensor<2x4x2x2xf32>, tensor<2x4x1x2xf32>, tensor<2x4x1x2xf32>) -> tensor<2x4x2x2xf32>
// CHECK: %[[O:.*]] = mt.linear %{{.*}}, %{{.*}} : (tensor<2x4x4xf32>, tensor<8x4xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: mt.all_reduce %[[O]] {axis = "tp"}
// CHECK: mt.swiglu %{{.*}} : tensor<2x4x8xf32>
// CHECK: %[[D:.*]] = mt.linear %{{.*}}, %{{.*}} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: mt.all_reduce %[[D]] {axis = "tp"}
// CHECK: mt.linear %{{.*}}, %{{.*}} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
// CHECK: mt.cross_entropy %{{.*}} {vocab_parallel_axis = "tp"} : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// A row-parallel bias is added once, after the sum over ranks.
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @w : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @w2 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @b : tensor<8xf32> init(zeros)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  %w = mt.weight @w : tensor<8x8xf32>
  %y = mt.linear %x, %w : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %b = mt.weight @b : tensor<8xf32>
  %w2 = mt.weight @w2 : tensor<8x8xf32>
  %z = mt.linear %y, %w2, %b : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %l = mt.linear %z, %e : (tensor<2x4x8xf32>, tensor<32x8xf32>) -> tensor<2x4x32xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x32xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: mt.param @emb
// CHECK: mt.param @b : tensor<8xf32> init(zeros){{$}}
// CHECK: %[[B:.*]] = mt.weight @b : tensor<8xf32>
// CHECK: %[[Z:.*]] = mt.linear %{{[0-9a-z_]+}}, %{{[0-9a-z_]+}} : (tensor<2x4x4xf32>, tensor<8x4xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: %[[S:.*]] = mt.all_reduce %[[Z]] {axis = "tp"}
// CHECK-NEXT: mt.bias_add %[[S]], %[[B]] : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @w : tensor<3x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  %w = mt.weight @w : tensor<3x8xf32>
  // expected-error @+1 {{'mt.linear' op cannot split dimension 0 of parameter @w over tp = 2}}
  %y = mt.linear %x, %w : (tensor<2x4x8xf32>, tensor<3x8xf32>) -> tensor<2x4x3xf32>
  %z = mt.swiglu %y, %y : tensor<2x4x3xf32>
  %loss = mt.cross_entropy %z, %labels, %mask : (tensor<2x4x3xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// A vocabulary of 31 is padded to 32 rows for tp 2: the embedding and the
// untied head get hf_rows = 31 and the cross-entropy ignores column 31.
mt.param @emb : tensor<31x8xf32> init(normal, std = 0.02)
mt.param @head : tensor<31x8xf32> init(normal, std = 0.02)
// CHECK-LABEL: mt.param @emb : tensor<32x8xf32> {{.*}}{hf_rows = 31 : i64, sharding = #mt.sharding<@mesh, {{\[\["tp"\], \[\]\]}}>}
// CHECK: mt.param @head : tensor<32x8xf32> {{.*}}{hf_rows = 31 : i64, sharding = #mt.sharding<@mesh, {{\[\["tp"\], \[\]\]}}>}
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<31x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<31x8xf32>) -> tensor<2x4x8xf32>
  %h = mt.weight @head : tensor<31x8xf32>
  %l = mt.linear %x, %h : (tensor<2x4x8xf32>, tensor<31x8xf32>) -> tensor<2x4x31xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x31xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK: mt.embedding %{{.*}} {vocab_parallel_axis = "tp"} : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
// CHECK: mt.linear %{{.*}}, %{{.*}} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
// CHECK: mt.cross_entropy %{{.*}} {valid_vocab = 31 : i64, vocab_parallel_axis = "tp"} : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
