// RUN: mtc-opt %s -split-input-file -mt-per-token-loss -verify-diagnostics | FileCheck %s
// RUN: mtc-opt %s -split-input-file -mt-per-token-loss -mt-autodiff -verify-diagnostics | FileCheck %s --check-prefix=GRAD

// The loss becomes the sum of the token losses: the cross-entropy's mean
// times the micro-batch's loss tokens (Σ mask), right after it.
mt.param @head : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %h = mt.weight @head : tensor<16x8xf32>
  %l = mt.linear %x, %h : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %loss = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward(
// CHECK-SAME: %{{[^:]*}}: tensor<2x4x8xf32>, %{{[^:]*}}: tensor<2x4xi32>, %[[MASK:[^:]*]]: tensor<2x4xf32>)
// CHECK: %[[MEAN:.*]] = mt.cross_entropy
// CHECK-NEXT: %[[N:.*]] = mt.num_tokens %[[MASK]] : (tensor<2x4xf32>) -> tensor<f32>
// CHECK-NEXT: %[[SUM:.*]] = mt.scale_by %[[MEAN]], %[[N]] : tensor<f32>, tensor<f32>
// CHECK-NEXT: return %[[SUM]]

// The backward starts from the seed times the tokens: the gradient of the sum.
// GRAD-LABEL: func.func @forward_backward(
// GRAD-SAME: %[[SEED:[^:]*]]: tensor<f32> {mt.input = "loss_scale"}
// GRAD: %[[N:.*]] = mt.num_tokens
// GRAD: %[[DMEAN:.*]] = mt.scale_by %[[SEED]], %[[N]] {mt.backward} : tensor<f32>, tensor<f32>
// GRAD: mt.cross_entropy_grad %{{.*}}, %{{.*}}, %{{.*}}, %[[DMEAN]] {mt.backward}

// -----

// A mixture-of-experts loss (the cross-entropy plus the routers' aux
// losses): the cross-entropy's mean becomes its sum, and each router's
// load-balancing and z-loss coefficients are multiplied by its B·S = 8
// tokens (Megatron-Core's `aux_loss * activation.shape[0]`), so its aux
// loss and that loss's gradient are 8 times the default's.
mt.param @router : tensor<4x8xf32> init(normal, std = 0.02)
mt.param @head : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %wr = mt.weight @router : tensor<4x8xf32>
  %w, %i, %aux, %z = mt.moe_router %x, %wr {top_k = 2 : i64, norm_topk_prob, aux_loss_coeff = 1.0e-01 : f64, z_loss_coeff = 1.0e-03 : f64}
      : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> (tensor<2x4x2xf32>, tensor<2x4x2xi32>, tensor<f32>, tensor<f32>)
  %h = mt.weight @head : tensor<16x8xf32>
  %l = mt.linear %x, %h : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %ce = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  %lb = mt.add %ce, %aux : tensor<f32>
  %loss = mt.add %lb, %z : tensor<f32>
  return %loss : tensor<f32>
}
// CHECK-LABEL: func.func @forward(
// CHECK-SAME: %{{[^:]*}}: tensor<2x4x8xf32>, %{{[^:]*}}: tensor<2x4xi32>, %[[MASK:[^:]*]]: tensor<2x4xf32>)
// CHECK: %{{.*}}, %{{.*}}, %[[AUX:.*]], %[[Z:.*]] = mt.moe_router %{{.*}} {aux_loss_coeff = 8.000000e-01 : f64, norm_topk_prob, top_k = 2 : i64, z_loss_coeff = 8.000000e-03 : f64}
// CHECK: %[[MEAN:.*]] = mt.cross_entropy
// CHECK-NEXT: %[[N:.*]] = mt.num_tokens %[[MASK]] : (tensor<2x4xf32>) -> tensor<f32>
// CHECK-NEXT: %[[SUM:.*]] = mt.scale_by %[[MEAN]], %[[N]] : tensor<f32>, tensor<f32>
// CHECK-NEXT: %[[LB:.*]] = mt.add %[[SUM]], %[[AUX]] : tensor<f32>
// CHECK-NEXT: %[[LOSS:.*]] = mt.add %[[LB]], %[[Z]] : tensor<f32>
// CHECK-NEXT: return %[[LOSS]]

// The load-balancing and z-losses' gradients are the seed itself (their
// coefficients carry the tokens); the cross-entropy's the seed times the
// loss tokens.
// GRAD-LABEL: func.func @forward_backward(
// GRAD-SAME: %[[SEED:[^:]*]]: tensor<f32> {mt.input = "loss_scale"}
// GRAD: mt.scale_by %[[SEED]], %{{.*}} {mt.backward}
// GRAD: mt.moe_router_grad %{{.*}}, %{{.*}}, %{{.*}}, %[[SEED]], %[[SEED]] {aux_loss_coeff = 8.000000e-01 : f64, mt.backward, norm_topk_prob, top_k = 2 : i64, z_loss_coeff = 8.000000e-03 : f64}

// -----

// Only the cross-entropy's token losses are summed: a loss that is not the
// cross-entropy's (plus aux losses) is refused.
mt.param @w : tensor<4xf32> init(ones)
func.func @forward(%x: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %z = mt.zeros : tensor<f32>
  // expected-error @+1 {{'func.return' op returns a loss that is not an mt.cross_entropy (plus routers' auxiliary losses): mt-per-token-loss sums the token losses of one cross-entropy}}
  return %z : tensor<f32>
}

// -----

// A term that is neither the cross-entropy nor a router's aux loss is
// refused too: it would not be normalized.
mt.param @head : tensor<16x8xf32> init(normal, std = 0.02)
func.func @forward(%x: tensor<2x4x8xf32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %h = mt.weight @head : tensor<16x8xf32>
  %l = mt.linear %x, %h : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %ce = mt.cross_entropy %l, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  %z = mt.zeros : tensor<f32>
  %loss = mt.add %ce, %z : tensor<f32>
  // expected-error @+1 {{'func.return' op returns a loss that is not an mt.cross_entropy (plus routers' auxiliary losses)}}
  return %loss : tensor<f32>
}
