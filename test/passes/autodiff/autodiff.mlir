// RUN: mtc-opt %s -split-input-file -mt-autodiff -allow-unregistered-dialect -verify-diagnostics | FileCheck %s

// An embedding, a linear head, the loss: the loss gradient is seeded with the
// loss_scale argument and flows back to both parameters; the token ids get
// no gradient.
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @head : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  %h = mt.weight @head : tensor<16x8xf32>
  %l = mt.linear %x, %h {mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-NOT: func.func @forward(
// CHECK-LABEL: func.func @forward_backward(
// CHECK-SAME: %[[IDS:[^:]*]]: tensor<2x4xi32> {mt.input = "input_ids"}
// CHECK-SAME: %[[SCALE:[^:]*]]: tensor<f32> {mt.input = "loss_scale"}
// CHECK-SAME: -> (tensor<f32>, tensor<16x8xf32> {mt.grad_of = @emb}, tensor<16x8xf32> {mt.grad_of = @head})
// CHECK: %[[X:.*]] = mt.embedding
// CHECK: %[[LOGITS:.*]] = mt.linear
// CHECK: %[[LOSS:.*]] = mt.cross_entropy
// Every op the pass creates is marked as the backward pass.
// CHECK: %[[DL:.*]] = mt.cross_entropy_grad %[[LOGITS]], %{{.*}}, %{{.*}}, %[[SCALE]] {mt.backward}
// Gradient ops keep the layer of the op they differentiate.
// CHECK-DAG: %[[DX:.*]] = mt.linear_grad_input %[[DL]], %{{.*}} {mt.backward, mt.layer = 0 : i64}
// CHECK-DAG: %[[DH:.*]] = mt.linear_grad_weight %[[X]], %[[DL]] {mt.backward, mt.layer = 0 : i64}
// CHECK: %[[DE:.*]] = mt.embedding_grad %[[IDS]], %[[DX]]
// CHECK: return %[[LOSS]], %[[DE]], %[[DH]]

// -----

// A tied head: one parameter read twice, its two gradients summed. A frozen
// parameter gets none, and nothing is computed for it.
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @norm : tensor<8xf32> init(ones) {frozen}
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  %n = mt.weight @norm : tensor<8xf32>
  %y = mt.rmsnorm %x, %n {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %l = mt.linear %y, %e : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward_backward(
// CHECK-SAME: -> (tensor<f32>, tensor<16x8xf32> {mt.grad_of = @emb})
// CHECK: %[[DW:.*]] = mt.linear_grad_weight
// CHECK: %[[DX:.*]], %{{.*}} = mt.rmsnorm_grad
// CHECK: %[[DE:.*]] = mt.embedding_grad %{{.*}}, %[[DX]]
// CHECK: %[[SUM:.*]] = mt.add %[[DW]], %[[DE]] {mt.backward} : tensor<16x8xf32>
// CHECK: return %{{.*}}, %[[SUM]]

// -----

// A residual: the gradient of %x is the sum of the two paths.
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @w : tensor<8x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  %w = mt.weight @w : tensor<8x8xf32>
  %y = mt.linear %x, %w : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %r = mt.add %x, %y : tensor<2x4x8xf32>
  %l = mt.linear %r, %e : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward_backward(
// CHECK: %[[DR:.*]] = mt.linear_grad_input
// CHECK: %[[DY:.*]] = mt.linear_grad_input %[[DR]]
// CHECK: %[[DX:.*]] = mt.add %[[DR]], %[[DY]]
// CHECK: mt.embedding_grad %{{.*}}, %[[DX]]

// -----

// An op on the path to the loss without a gradient is an error.
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  // expected-error @+1 {{'test.opaque' op is on the path from a parameter to the loss but has no gradient}}
  %y = "test.opaque"(%x) : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %l = mt.linear %y, %e : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

// A maximum over ranks has no gradient (it only feeds values treated as
// constants, as the vocab-parallel cross-entropy's row maximum).
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>
  // expected-error @+1 {{'mt.all_reduce' op has no gradient: a maximum over 'tp' feeds only values treated as constants}}
  %y = mt.all_reduce %x {axis = "tp", reduce = "max"} : tensor<2x4x8xf32>
  %l = mt.linear %y, %e : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

// expected-error @+1 {{mt-autodiff expects 'func.func @forward(input_ids, labels, loss_mask[, position_ids]) -> loss'}}
module {
  func.func @main() {
    return
  }
}

// -----

// Packed documents: position_ids is the fourth input, loss_scale comes after
// it, and the rotary and attention gradients take the forward's position ids.
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<1x4xi32>, %labels: tensor<1x4xi32>, %mask: tensor<1x4xf32>, %pos: tensor<1x4xi32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<1x4xi32>, tensor<16x8xf32>) -> tensor<1x4x8xf32>
  %q = mt.reshape %x : tensor<1x4x8xf32> -> tensor<1x4x2x4xf32>
  %r = mt.rotary %q positions %pos : tensor<1x4xi32> {theta = 1.0e+04 : f64} : tensor<1x4x2x4xf32>
  %a = mt.attention %r, %r, %q, %pos {num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64, scale = 0.5 : f64}
      : (tensor<1x4x2x4xf32>, tensor<1x4x2x4xf32>, tensor<1x4x2x4xf32>, tensor<1x4xi32>) -> tensor<1x4x2x4xf32>
  %y = mt.reshape %a : tensor<1x4x2x4xf32> -> tensor<1x4x8xf32>
  %l = mt.linear %y, %e : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<1x4x16xf32>, tensor<1x4xi32>, tensor<1x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward_backward(
// CHECK-SAME: {mt.input = "loss_mask"}, %[[POS:[^:]*]]: tensor<1x4xi32> {mt.input = "position_ids"}, %{{[^:]*}}: tensor<f32> {mt.input = "loss_scale"}
// CHECK: mt.attention_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[POS]] {
// CHECK: mt.rotary_grad %{{.*}}, %[[POS]] {

// -----

// Packed documents in a ring-attention block (cp_comm_type p2p): its
// gradient takes the forward's position ids.
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<1x4xi32>, %labels: tensor<1x4xi32>, %mask: tensor<1x4xf32>, %pos: tensor<1x4xi32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<1x4xi32>, tensor<16x8xf32>) -> tensor<1x4x8xf32>
  %q = mt.reshape %x : tensor<1x4x8xf32> -> tensor<1x4x2x4xf32>
  %a, %lse = mt.attention_block %q, %q, %q, %pos {num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64, scale = 0.5 : f64, context_parallel_axis = "cp", step = 0 : i64}
      : (tensor<1x4x2x4xf32>, tensor<1x4x2x4xf32>, tensor<1x4x2x4xf32>, tensor<1x4xi32>) -> (tensor<1x4x2x4xf32>, tensor<1x2x4xf32>)
  %y = mt.reshape %a : tensor<1x4x2x4xf32> -> tensor<1x4x8xf32>
  %l = mt.linear %y, %e : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<1x4x16xf32>, tensor<1x4xi32>, tensor<1x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward_backward(
// CHECK-SAME: {mt.input = "loss_mask"}, %[[POS:[^:]*]]: tensor<1x4xi32> {mt.input = "position_ids"}
// CHECK: mt.attention_block_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[POS]] {

// -----

// A load-balanced all_gather moves position ids only: on the path from a
// parameter to the loss it is refused.
mt.param @emb : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<1x4xi32>, %labels: tensor<1x8xi32>, %mask: tensor<1x8xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<16x8xf32>
  %x = mt.embedding %ids, %e : (tensor<1x4xi32>, tensor<16x8xf32>) -> tensor<1x4x8xf32>
  // expected-error @+1 {{'mt.all_gather' op with load_balanced has no gradient}}
  %g = mt.all_gather %x {axis = "cp", dim = 1 : i64, load_balanced} : (tensor<1x4x8xf32>) -> tensor<1x8x8xf32>
  %l = mt.linear %g, %e : (tensor<1x8x8xf32>, tensor<16x8xf32>) -> tensor<1x8x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<1x8x16xf32>, tensor<1x8xi32>, tensor<1x8xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
