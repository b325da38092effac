// RUN: mtc-opt %s -mt-partition-cp=per-token-loss | FileCheck %s

// With calculate_per_token_loss the rank's loss stays the mean over its
// tokens: mt-per-token-loss makes it their sum, and the step divides by the
// tokens summed over cp (mt-build-step-loss), so no share is taken here.
shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
// CHECK-LABEL: func.func @forward
func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %labels: tensor<2x8xi32> {mt.input = "labels"},
                   %mask: tensor<2x8xf32> {mt.input = "loss_mask"}, %logits: tensor<2x8x16xf32>) -> tensor<f32> {
  // CHECK: %[[LOSS:.*]] = mt.cross_entropy {{.*}} : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  // CHECK-NOT: mt.num_tokens
  // CHECK: return %[[LOSS]] : tensor<f32>
  %loss = mt.cross_entropy %logits, %labels, %mask : (tensor<2x8x16xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
