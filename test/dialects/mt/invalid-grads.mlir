// RUN: mtc-opt %s -split-input-file -verify-diagnostics
// Verifier errors of the gradient ops (dialects/mt/MtGradOps.cpp): one case
// per check, each naming the operand or result and the shape or type it needs.

func.func @embedding_grad_ids_rank(%i: tensor<16xi32>, %dy: tensor<16x64xf32>) {
  // expected-error @+1 {{'mt.embedding_grad' op expects ids of rank 2, got [16]}}
  %0 = mt.embedding_grad %i, %dy : (tensor<16xi32>, tensor<16x64xf32>) -> tensor<256x64xf32>
  return
}

// -----

func.func @embedding_grad_table_rank(%i: tensor<2x8xi32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.embedding_grad' op expects dtable of rank 2, got [256, 64, 1]}}
  %0 = mt.embedding_grad %i, %dy : (tensor<2x8xi32>, tensor<2x8x64xf32>) -> tensor<256x64x1xf32>
  return
}

// -----

func.func @embedding_grad_type(%i: tensor<2x8xi32>, %dy: tensor<2x8x64xbf16>) {
  // expected-error @+1 {{'mt.embedding_grad' op expects dy and dtable to have one element type, got 'bf16' and 'f32'}}
  %0 = mt.embedding_grad %i, %dy : (tensor<2x8xi32>, tensor<2x8x64xbf16>) -> tensor<256x64xf32>
  return
}

// -----

func.func @embedding_grad_dy(%i: tensor<2x8xi32>, %dy: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.embedding_grad' op expects dy of shape [2, 8, 64], got [2, 4, 64]}}
  %0 = mt.embedding_grad %i, %dy : (tensor<2x8xi32>, tensor<2x4x64xf32>) -> tensor<256x64xf32>
  return
}

// -----

func.func @linear_grad_input_weight_rank(%dy: tensor<2x8x96xf32>, %w: tensor<96xf32>) {
  // expected-error @+1 {{'mt.linear_grad_input' op expects weight of rank 2, got [96]}}
  %0 = mt.linear_grad_input %dy, %w : (tensor<2x8x96xf32>, tensor<96xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @linear_grad_input_dy(%dy: tensor<2x8x64xf32>, %w: tensor<96x64xf32>) {
  // expected-error @+1 {{'mt.linear_grad_input' op expects dy [..., 96] for weight [96, 64], got [2, 8, 64]}}
  %0 = mt.linear_grad_input %dy, %w : (tensor<2x8x64xf32>, tensor<96x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @linear_grad_input_dx(%dy: tensor<2x8x96xf32>, %w: tensor<96x64xf32>) {
  // expected-error @+1 {{'mt.linear_grad_input' op expects dx of shape [2, 8, 64], got [2, 8, 96]}}
  %0 = mt.linear_grad_input %dy, %w : (tensor<2x8x96xf32>, tensor<96x64xf32>) -> tensor<2x8x96xf32>
  return
}

// -----

func.func @linear_grad_weight_tokens(%x: tensor<2x8x64xf32>, %dy: tensor<2x4x96xf32>) {
  // expected-error @+1 {{'mt.linear_grad_weight' op expects input and dy with the same leading dimensions, got [2, 8, 64] and [2, 4, 96]}}
  %0 = mt.linear_grad_weight %x, %dy : (tensor<2x8x64xf32>, tensor<2x4x96xf32>) -> tensor<96x64xf32>
  return
}

// -----

func.func @linear_grad_weight_shape(%x: tensor<2x8x64xf32>, %dy: tensor<2x8x96xf32>) {
  // expected-error @+1 {{'mt.linear_grad_weight' op expects dweight of shape [96, 64], got [64, 96]}}
  %0 = mt.linear_grad_weight %x, %dy : (tensor<2x8x64xf32>, tensor<2x8x96xf32>) -> tensor<64x96xf32>
  return
}

// -----

func.func @bias_grad_rank(%dy: tensor<f32>) {
  // expected-error @+1 {{'mt.bias_grad' op expects dy of rank >= 1}}
  %0 = mt.bias_grad %dy : (tensor<f32>) -> tensor<1xf32>
  return
}

// -----

func.func @bias_grad_shape(%dy: tensor<2x8x96xf32>) {
  // expected-error @+1 {{'mt.bias_grad' op expects dbias of shape [96], got [64]}}
  %0 = mt.bias_grad %dy : (tensor<2x8x96xf32>) -> tensor<64xf32>
  return
}

// -----

func.func @rmsnorm_grad_dy(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xbf16>) {
  // expected-error @+1 {{'mt.rmsnorm_grad' op expects dy of type 'tensor<2x8x64xf32>', got 'tensor<2x8x64xbf16>'}}
  %0:2 = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xbf16>) -> (tensor<2x8x64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @rmsnorm_grad_dx(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm_grad' op expects dx of type 'tensor<2x8x64xf32>', got 'tensor<16x64xf32>'}}
  %0:2 = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>) -> (tensor<16x64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @rmsnorm_grad_dweight(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm_grad' op expects dweight of type 'tensor<64xf32>', got 'tensor<64xbf16>'}}
  %0:2 = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xbf16>)
  return
}

// -----

func.func @rmsnorm_grad_weight_rank(%x: tensor<2x8x64xf32>, %w: tensor<1x64xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm_grad' op expects weight of rank 1, got [1, 64]}}
  %0:2 = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<1x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<1x64xf32>)
  return
}

// -----

func.func @rmsnorm_grad_weight_size(%x: tensor<2x8x64xf32>, %w: tensor<32xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm_grad' op expects weight of size 64 (the last axis of input [2, 8, 64]), got [32]}}
  %0:2 = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<32xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<32xf32>)
  return
}

// -----

func.func @rmsnorm_grad_weight_type(%x: tensor<2x8x64xf32>, %w: tensor<64xbf16>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm_grad' op expects input and weight to have one element type, got 'f32' and 'bf16'}}
  %0:2 = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xbf16>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xbf16>)
  return
}

// -----

func.func @layernorm_grad_dy(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x32xf32>) {
  // expected-error @+1 {{'mt.layernorm_grad' op expects dy of type 'tensor<2x8x64xf32>', got 'tensor<2x8x32xf32>'}}
  %0:3 = mt.layernorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x32xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @layernorm_grad_dx(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.layernorm_grad' op expects dx of type 'tensor<2x8x64xf32>', got 'tensor<2x8x64xbf16>'}}
  %0:3 = mt.layernorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xbf16>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @layernorm_grad_dweight(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.layernorm_grad' op expects dweight of type 'tensor<64xf32>', got 'tensor<32xf32>'}}
  %0:3 = mt.layernorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<32xf32>, tensor<64xf32>)
  return
}

// -----

func.func @layernorm_grad_dbias(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.layernorm_grad' op expects dbias of type 'tensor<64xf32>', got 'tensor<1xf32>'}}
  %0:3 = mt.layernorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>, tensor<1xf32>)
  return
}

// -----

func.func @layernorm_grad_weight_size(%x: tensor<2x8x64xf32>, %w: tensor<32xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.layernorm_grad' op expects weight of size 64 (the last axis of input [2, 8, 64]), got [32]}}
  %0:3 = mt.layernorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<32xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<32xf32>, tensor<32xf32>)
  return
}

// -----

func.func @rotary_grad_rank(%dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.rotary_grad' op expects dy of rank 4, got [2, 8, 64]}}
  %0 = mt.rotary_grad %dy {theta = 1.0e+04 : f64} : (tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @rotary_grad_dx(%dy: tensor<2x8x4x16xf32>) {
  // expected-error @+1 {{'mt.rotary_grad' op expects dx of type 'tensor<2x8x4x16xf32>', got 'tensor<2x8x4x16xbf16>'}}
  %0 = mt.rotary_grad %dy {theta = 1.0e+04 : f64} : (tensor<2x8x4x16xf32>) -> tensor<2x8x4x16xbf16>
  return
}

// -----

func.func @attention_grad_out(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %o: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention_grad' op expects out of type 'tensor<2x8x4x16xf32>', got 'tensor<2x8x2x16xf32>'}}
  %0:3 = mt.attention_grad %q, %k, %k, %o, %q {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  return
}

// -----

func.func @attention_grad_dout(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %do: tensor<2x8x4x16xbf16>) {
  // expected-error @+1 {{'mt.attention_grad' op expects dout of type 'tensor<2x8x4x16xf32>', got 'tensor<2x8x4x16xbf16>'}}
  %0:3 = mt.attention_grad %q, %k, %k, %q, %do {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xbf16>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  return
}

// -----

func.func @attention_grad_dquery(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention_grad' op expects dquery of type 'tensor<2x8x4x16xf32>', got 'tensor<2x8x2x16xf32>'}}
  %0:3 = mt.attention_grad %q, %k, %k, %q, %q {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>) -> (tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  return
}

// -----

func.func @attention_grad_dkey(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention_grad' op expects dkey of type 'tensor<2x8x2x16xf32>', got 'tensor<2x8x4x16xf32>'}}
  %0:3 = mt.attention_grad %q, %k, %k, %q, %q {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>)
  return
}

// -----

func.func @attention_grad_dvalue(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention_grad' op expects dvalue of type 'tensor<2x8x2x16xf32>', got 'tensor<2x8x2x16xbf16>'}}
  %0:3 = mt.attention_grad %q, %k, %k, %q, %q {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xbf16>)
  return
}

// -----

func.func @attention_grad_heads(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention_grad' op expects query [B, S, 8, 16], got [2, 8, 4, 16]}}
  %0:3 = mt.attention_grad %q, %k, %k, %q, %q {num_heads = 8 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  return
}

// -----

func.func @swiglu_grad_up(%g: tensor<2x8x96xf32>, %u: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.swiglu_grad' op expects up of type 'tensor<2x8x96xf32>', got 'tensor<2x8x64xf32>'}}
  %0:2 = mt.swiglu_grad %g, %u, %g : (tensor<2x8x96xf32>, tensor<2x8x64xf32>, tensor<2x8x96xf32>) -> (tensor<2x8x96xf32>, tensor<2x8x96xf32>)
  return
}

// -----

func.func @swiglu_grad_dy(%g: tensor<2x8x96xf32>, %dy: tensor<2x8x96xbf16>) {
  // expected-error @+1 {{'mt.swiglu_grad' op expects dy of type 'tensor<2x8x96xf32>', got 'tensor<2x8x96xbf16>'}}
  %0:2 = mt.swiglu_grad %g, %g, %dy : (tensor<2x8x96xf32>, tensor<2x8x96xf32>, tensor<2x8x96xbf16>) -> (tensor<2x8x96xf32>, tensor<2x8x96xf32>)
  return
}

// -----

func.func @swiglu_grad_dgate(%g: tensor<2x8x96xf32>) {
  // expected-error @+1 {{'mt.swiglu_grad' op expects dgate of type 'tensor<2x8x96xf32>', got 'tensor<2x8x64xf32>'}}
  %0:2 = mt.swiglu_grad %g, %g, %g : (tensor<2x8x96xf32>, tensor<2x8x96xf32>, tensor<2x8x96xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x96xf32>)
  return
}

// -----

func.func @swiglu_grad_dup(%g: tensor<2x8x96xf32>) {
  // expected-error @+1 {{'mt.swiglu_grad' op expects dup of type 'tensor<2x8x96xf32>', got 'tensor<2x8x64xf32>'}}
  %0:2 = mt.swiglu_grad %g, %g, %g : (tensor<2x8x96xf32>, tensor<2x8x96xf32>, tensor<2x8x96xf32>) -> (tensor<2x8x96xf32>, tensor<2x8x64xf32>)
  return
}

// -----

func.func @gelu_grad_dy(%x: tensor<2x8x96xf32>, %dy: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.gelu_grad' op expects dy of type 'tensor<2x8x96xf32>', got 'tensor<2x8x64xf32>'}}
  %0 = mt.gelu_grad %x, %dy : (tensor<2x8x96xf32>, tensor<2x8x64xf32>) -> tensor<2x8x96xf32>
  return
}

// -----

func.func @gelu_grad_dx(%x: tensor<2x8x96xf32>) {
  // expected-error @+1 {{'mt.gelu_grad' op expects dx of type 'tensor<2x8x96xf32>', got 'tensor<2x8x96xbf16>'}}
  %0 = mt.gelu_grad %x, %x : (tensor<2x8x96xf32>, tensor<2x8x96xf32>) -> tensor<2x8x96xbf16>
  return
}

// -----

func.func @moe_router_grad_dx(%x: tensor<2x8x64xf32>, %wr: tensor<8x64xf32>, %dw: tensor<2x8x2xf32>, %da: tensor<f32>, %dz: tensor<f32>) {
  // expected-error @+1 {{'mt.moe_router_grad' op expects dx of type 'tensor<2x8x64xf32>', got 'tensor<16x64xf32>'}}
  %0:2 = mt.moe_router_grad %x, %wr, %dw, %da, %dz {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64} : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x2xf32>, tensor<f32>, tensor<f32>) -> (tensor<16x64xf32>, tensor<8x64xf32>)
  return
}

// -----

func.func @moe_router_grad_dweight(%x: tensor<2x8x64xf32>, %wr: tensor<8x64xf32>, %dw: tensor<2x8x2xf32>, %da: tensor<f32>, %dz: tensor<f32>) {
  // expected-error @+1 {{'mt.moe_router_grad' op expects dweight of type 'tensor<8x64xf32>', got 'tensor<4x64xf32>'}}
  %0:2 = mt.moe_router_grad %x, %wr, %dw, %da, %dz {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64} : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x2xf32>, tensor<f32>, tensor<f32>) -> (tensor<2x8x64xf32>, tensor<4x64xf32>)
  return
}

// -----

func.func @moe_router_grad_rank(%x: tensor<16x64xf32>, %wr: tensor<8x64xf32>, %dw: tensor<16x2xf32>, %da: tensor<f32>, %dz: tensor<f32>) {
  // expected-error @+1 {{'mt.moe_router_grad' op expects input of rank 3, got [16, 64]}}
  %0:2 = mt.moe_router_grad %x, %wr, %dw, %da, %dz {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64} : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<16x2xf32>, tensor<f32>, tensor<f32>) -> (tensor<16x64xf32>, tensor<8x64xf32>)
  return
}

// -----

func.func @moe_router_grad_dweights(%x: tensor<2x8x64xf32>, %wr: tensor<8x64xf32>, %dw: tensor<2x8x4xf32>, %da: tensor<f32>, %dz: tensor<f32>) {
  // expected-error @+1 {{'mt.moe_router_grad' op expects dweights of shape [2, 8, 2], got [2, 8, 4]}}
  %0:2 = mt.moe_router_grad %x, %wr, %dw, %da, %dz {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64} : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x4xf32>, tensor<f32>, tensor<f32>) -> (tensor<2x8x64xf32>, tensor<8x64xf32>)
  return
}

// -----

func.func @cross_entropy_grad_rank(%l: tensor<16x256xf32>, %t: tensor<2x8xi32>, %m: tensor<2x8xf32>, %s: tensor<f32>) {
  // expected-error @+1 {{'mt.cross_entropy_grad' op expects logits of rank 3, got [16, 256]}}
  %0 = mt.cross_entropy_grad %l, %t, %m, %s : (tensor<16x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<f32>) -> tensor<16x256xf32>
  return
}

// -----

func.func @cross_entropy_grad_dlogits(%l: tensor<2x8x256xf32>, %t: tensor<2x8xi32>, %m: tensor<2x8xf32>, %s: tensor<f32>) {
  // expected-error @+1 {{'mt.cross_entropy_grad' op expects dlogits of type 'tensor<2x8x256xf32>', got 'tensor<2x8x128xf32>'}}
  %0 = mt.cross_entropy_grad %l, %t, %m, %s : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x128xf32>
  return
}

// -----

func.func @cross_entropy_grad_labels(%l: tensor<2x8x256xf32>, %t: tensor<2x4xi32>, %m: tensor<2x8xf32>, %s: tensor<f32>) {
  // expected-error @+1 {{'mt.cross_entropy_grad' op expects labels of shape [2, 8], got [2, 4]}}
  %0 = mt.cross_entropy_grad %l, %t, %m, %s : (tensor<2x8x256xf32>, tensor<2x4xi32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x256xf32>
  return
}

// -----

func.func @cross_entropy_grad_mask(%l: tensor<2x8x256xf32>, %t: tensor<2x8xi32>, %m: tensor<16xf32>, %s: tensor<f32>) {
  // expected-error @+1 {{'mt.cross_entropy_grad' op expects mask of shape [2, 8], got [16]}}
  %0 = mt.cross_entropy_grad %l, %t, %m, %s : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<16xf32>, tensor<f32>) -> tensor<2x8x256xf32>
  return
}

// -----

func.func @vocab_parallel_cross_entropy_grad_dlogits(%l: tensor<2x8x128xf32>, %t: tensor<2x8xi32>, %m: tensor<2x8xf32>, %s: tensor<f32>) {
  // expected-error @+1 {{'mt.vocab_parallel_cross_entropy_grad' op expects dlogits of type 'tensor<2x8x128xf32>', got 'tensor<2x8x256xf32>'}}
  %0 = mt.vocab_parallel_cross_entropy_grad %l, %t, %m, %m, %m, %s {axis = "tp"} : (tensor<2x8x128xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x256xf32>
  return
}

// -----

func.func @vocab_parallel_cross_entropy_grad_rows(%l: tensor<2x8x128xf32>, %t: tensor<2x8xi32>, %m: tensor<2x8xf32>, %r: tensor<16xf32>, %s: tensor<f32>) {
  // expected-error @+1 {{'mt.vocab_parallel_cross_entropy_grad' op expects row_max of shape [2, 8], got [16]}}
  %0 = mt.vocab_parallel_cross_entropy_grad %l, %t, %m, %r, %m, %s {axis = "tp"} : (tensor<2x8x128xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<16xf32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x128xf32>
  return
}

// -----

func.func @vocab_parallel_cross_entropy_grad_axis(%l: tensor<2x8x128xf32>, %t: tensor<2x8xi32>, %m: tensor<2x8xf32>, %s: tensor<f32>) {
  // expected-error @+1 {{'mt.vocab_parallel_cross_entropy_grad' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got ''}}
  %0 = mt.vocab_parallel_cross_entropy_grad %l, %t, %m, %m, %m, %s {axis = ""} : (tensor<2x8x128xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x128xf32>
  return
}

// -----

func.func @add_rmsnorm_grad_dy(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xbf16>, %g: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm_grad' op expects dy of type 'tensor<2x8x64xf32>', got 'tensor<2x8x64xbf16>'}}
  %0:2 = mt.add_rmsnorm_grad %x, %w, %dy, %g {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xbf16>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @add_rmsnorm_grad_dresidual(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>, %g: tensor<16x64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm_grad' op expects dresidual of type 'tensor<2x8x64xf32>', got 'tensor<16x64xf32>'}}
  %0:2 = mt.add_rmsnorm_grad %x, %w, %dy, %g {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>, tensor<16x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @add_rmsnorm_grad_dx(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>, %g: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm_grad' op expects dx of type 'tensor<2x8x64xf32>', got 'tensor<16x64xf32>'}}
  %0:2 = mt.add_rmsnorm_grad %x, %w, %dy, %g {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<16x64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @add_rmsnorm_grad_dweight(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>, %g: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm_grad' op expects dweight of type 'tensor<64xf32>', got 'tensor<64xbf16>'}}
  %0:2 = mt.add_rmsnorm_grad %x, %w, %dy, %g {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xbf16>)
  return
}

// -----

func.func @add_rmsnorm_grad_eps(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %dy: tensor<2x8x64xf32>, %g: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm_grad' op expects eps > 0, got 0.000000e+00}}
  %0:2 = mt.add_rmsnorm_grad %x, %w, %dy, %g {eps = 0.0 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @add_rmsnorm_grad_weight_size(%x: tensor<2x8x64xf32>, %w: tensor<32xf32>, %dy: tensor<2x8x64xf32>, %g: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm_grad' op expects weight of size 64 (the last axis of input [2, 8, 64]), got [32]}}
  %0:2 = mt.add_rmsnorm_grad %x, %w, %dy, %g {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<32xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<32xf32>)
  return
}
