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

// Only the cross-entropy's token losses are summed: a loss that is not the
// cross-entropy's is refused.
mt.param @w : tensor<4xf32> init(ones)
func.func @forward(%x: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %z = mt.zeros : tensor<f32>
  // expected-error @+1 {{'func.return' op returns a loss that is not an mt.cross_entropy: mt-per-token-loss sums the token losses of the cross-entropy alone}}
  return %z : tensor<f32>
}
