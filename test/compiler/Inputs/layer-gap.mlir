// Layers 0 and 2 but no layer 1.
module {
  mt.param @q : tensor<1x8x4x16xf32> init(zeros)
  mt.param @k : tensor<1x8x2x16xf32> init(zeros)
  mt.param @logits : tensor<1x8x16xf32> init(zeros)
  func.func @forward(%ids: tensor<1x8xi32>, %labels: tensor<1x8xi32>, %mask: tensor<1x8xf32>) -> tensor<f32> {
    %q = mt.weight @q : tensor<1x8x4x16xf32>
    %k = mt.weight @k : tensor<1x8x2x16xf32>
    %a = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, mt.layer = 0 : i64}
        : (tensor<1x8x4x16xf32>, tensor<1x8x2x16xf32>, tensor<1x8x2x16xf32>) -> tensor<1x8x4x16xf32>
    %b = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, mt.layer = 2 : i64}
        : (tensor<1x8x4x16xf32>, tensor<1x8x2x16xf32>, tensor<1x8x2x16xf32>) -> tensor<1x8x4x16xf32>
    %logits = mt.weight @logits : tensor<1x8x16xf32>
    %l = mt.cross_entropy %logits, %labels, %mask : (tensor<1x8x16xf32>, tensor<1x8xi32>, tensor<1x8xf32>) -> tensor<f32>
    return %l : tensor<f32>
  }
}
