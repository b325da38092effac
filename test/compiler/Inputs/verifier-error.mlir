// A model whose linear weight does not fit its input.
module {
func.func @forward(%ids: tensor<1x8xi32>, %labels: tensor<1x8xi32>, %mask: tensor<1x8xf32>,
                   %x: tensor<1x8x64xf32>, %w: tensor<96x32xf32>, %l: tensor<f32>) -> tensor<f32> {
  // in (32) != the last axis of x (64)
  %0 = mt.linear %x, %w : (tensor<1x8x64xf32>, tensor<96x32xf32>) -> tensor<1x8x96xf32>
  return %l : tensor<f32>
}
}
