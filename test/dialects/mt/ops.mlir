// RUN: mtc-opt %s | FileCheck %s
// RUN: mtc-opt %s | mtc-opt | FileCheck %s
// RUN: mtc-opt %s -mlir-print-op-generic | mtc-opt | FileCheck %s

// Every op of the mt dialect survives a print/parse round trip.

// CHECK: mt.param @model.embed_tokens.weight : tensor<256x64xf32> init(normal, std = 2.000000e-02)
mt.param @model.embed_tokens.weight : tensor<256x64xf32> init(normal, std = 2.0e-02)
// CHECK: mt.param @model.norm.weight : tensor<64xbf16> init(ones)
mt.param @model.norm.weight : tensor<64xbf16> init(ones)
// CHECK: mt.param @q.bias : tensor<64xf32> init(zeros)
mt.param @q.bias : tensor<64xf32> init(zeros)
// CHECK: mt.param @"model.layers.0.mlp.experts.*.up_proj.weight" : tensor<8x96x64xf32> init(normal, std = 2.000000e-02) {grouped_experts}
mt.param @"model.layers.0.mlp.experts.*.up_proj.weight" : tensor<8x96x64xf32> init(normal, std = 2.0e-02) {grouped_experts}

// CHECK-LABEL: func.func @weights
func.func @weights() -> (tensor<256x64xf32>, tensor<64xbf16>) {
  // CHECK: mt.weight @model.embed_tokens.weight : tensor<256x64xf32>
  %0 = mt.weight @model.embed_tokens.weight : tensor<256x64xf32>
  // CHECK: mt.weight @model.norm.weight : tensor<64xbf16>
  %1 = mt.weight @model.norm.weight : tensor<64xbf16>
  return %0, %1 : tensor<256x64xf32>, tensor<64xbf16>
}

// CHECK-LABEL: func.func @dense
func.func @dense(%ids: tensor<2x8xi32>, %table: tensor<256x64xf32>, %w: tensor<96x64xf32>,
                 %b: tensor<96xf32>, %x: tensor<2x8x64xf32>) -> (tensor<2x8x96xf32>, tensor<2x8x96xf32>) {
  // CHECK: mt.embedding %{{.*}}, %{{.*}} : (tensor<2x8xi32>, tensor<256x64xf32>) -> tensor<2x8x64xf32>
  %e = mt.embedding %ids, %table : (tensor<2x8xi32>, tensor<256x64xf32>) -> tensor<2x8x64xf32>
  // CHECK: mt.linear %{{.*}}, %{{.*}} : (tensor<2x8x64xf32>, tensor<96x64xf32>) -> tensor<2x8x96xf32>
  %y = mt.linear %e, %w : (tensor<2x8x64xf32>, tensor<96x64xf32>) -> tensor<2x8x96xf32>
  // CHECK: mt.linear %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  %yb = mt.linear %x, %w, %b : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  // CHECK: mt.add %{{.*}}, %{{.*}} : tensor<2x8x96xf32>
  %s = mt.add %y, %yb : tensor<2x8x96xf32>
  // CHECK: mt.swiglu %{{.*}}, %{{.*}} : tensor<2x8x96xf32>
  %g = mt.swiglu %s, %y : tensor<2x8x96xf32>
  // CHECK: mt.gelu %{{.*}} : tensor<2x8x96xf32>
  %a = mt.gelu %g : tensor<2x8x96xf32>
  // CHECK: mt.gelu %{{.*}} {approximate_tanh} : tensor<2x8x96xf32>
  %t = mt.gelu %a {approximate_tanh} : tensor<2x8x96xf32>
  return %a, %t : tensor<2x8x96xf32>, tensor<2x8x96xf32>
}

// CHECK-LABEL: func.func @norms
func.func @norms(%x: tensor<2x8x64xbf16>, %w: tensor<64xbf16>, %b: tensor<64xbf16>,
                 %q: tensor<2x8x4x16xf32>, %qw: tensor<16xf32>) -> (tensor<2x8x64xbf16>, tensor<2x8x4x16xf32>) {
  // CHECK: mt.rmsnorm %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>) -> tensor<2x8x64xbf16>
  %r = mt.rmsnorm %x, %w {eps = 1.0e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>) -> tensor<2x8x64xbf16>
  // CHECK: mt.layernorm %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64}
  %l = mt.layernorm %r, %w, %b {eps = 1.0e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<64xbf16>) -> tensor<2x8x64xbf16>
  // Per-head q/k norm (Qwen3) is rmsnorm over head_dim of the 4-D view.
  // CHECK: mt.rmsnorm %{{.*}}, %{{.*}} {eps = 9.9999999999999995E-7 : f64} : (tensor<2x8x4x16xf32>, tensor<16xf32>) -> tensor<2x8x4x16xf32>
  %qn = mt.rmsnorm %q, %qw {eps = 1.0e-06 : f64} : (tensor<2x8x4x16xf32>, tensor<16xf32>) -> tensor<2x8x4x16xf32>
  return %l, %qn : tensor<2x8x64xbf16>, tensor<2x8x4x16xf32>
}

// CHECK-LABEL: func.func @attention
func.func @attention(%x: tensor<2x8x64xf32>, %kv: tensor<2x8x32xf32>) -> tensor<2x8x64xf32> {
  // CHECK: mt.reshape %{{.*}} : tensor<2x8x64xf32> -> tensor<2x8x4x16xf32>
  %q = mt.reshape %x : tensor<2x8x64xf32> -> tensor<2x8x4x16xf32>
  %k = mt.reshape %kv : tensor<2x8x32xf32> -> tensor<2x8x2x16xf32>
  // CHECK: mt.rotary %{{.*}} {theta = 1.000000e+04 : f64} : tensor<2x8x4x16xf32>
  %qr = mt.rotary %q {theta = 1.0e+04 : f64} : tensor<2x8x4x16xf32>
  // CHECK: mt.rotary %{{.*}} {high_freq_factor = 4.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, original_max_position = 8192 : i64, scaling_factor = 3.200000e+01 : f64, theta = 5.000000e+05 : f64}
  %kr = mt.rotary %k {theta = 5.0e+05 : f64, scaling_factor = 32.0 : f64, low_freq_factor = 1.0 : f64,
                      high_freq_factor = 4.0 : f64, original_max_position = 8192 : i64} : tensor<2x8x2x16xf32>
  // CHECK: mt.attention %{{.*}}, %{{.*}}, %{{.*}} {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64}
  %o = mt.attention %qr, %kr, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x4x16xf32>
  %r = mt.reshape %o : tensor<2x8x4x16xf32> -> tensor<2x8x64xf32>
  return %r : tensor<2x8x64xf32>
}

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<2x8x64xf32>, %wr: tensor<8x64xf32>, %gate: tensor<8x96x64xf32>,
               %up: tensor<8x96x64xf32>, %down: tensor<8x64x96xf32>) -> (tensor<2x8x64xf32>, tensor<f32>) {
  // CHECK: mt.moe_router %{{.*}}, %{{.*}} {aux_loss_coeff = 1.000000e-02 : f64, norm_topk_prob, top_k = 2 : i64} : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>)
  %w, %i, %aux = mt.moe_router %x, %wr {top_k = 2 : i64, norm_topk_prob, aux_loss_coeff = 1.0e-02 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>)
  // CHECK: mt.expert_ffn %{{.*}} : (tensor<2x8x64xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> tensor<2x8x64xf32>
  %y = mt.expert_ffn %x, %w, %i, %gate, %up, %down
      : (tensor<2x8x64xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> tensor<2x8x64xf32>
  return %y, %aux : tensor<2x8x64xf32>, tensor<f32>
}

// CHECK-LABEL: func.func @loss
func.func @loss(%logits: tensor<2x8x256xf32>, %labels: tensor<2x8xi32>, %mask: tensor<2x8xf32>) -> tensor<f32> {
  // CHECK: mt.cross_entropy %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  %l = mt.cross_entropy %logits, %labels, %mask : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  // CHECK: mt.add %{{.*}}, %{{.*}} {mt.layer = 3 : i64} : tensor<f32>
  %s = mt.add %l, %l {mt.layer = 3 : i64} : tensor<f32>
  return %s : tensor<f32>
}
