// RUN: mtc-opt %s -split-input-file -verify-diagnostics

func.func @concat_one(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{'mt.concat_rows' op expects two or more inputs, got 1}}
  %0 = mt.concat_rows %a : (tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @concat_columns(%a: tensor<4x8xf32>, %b: tensor<2x6xf32>) {
  // expected-error @+1 {{'mt.concat_rows' op expects inputs #1 of shape [N, 8] and element type 'f32' (as result [6, 8] but for the first axis), got [2, 6] 'f32'}}
  %0 = mt.concat_rows %a, %b : (tensor<4x8xf32>, tensor<2x6xf32>) -> tensor<6x8xf32>
  return
}

// -----

func.func @concat_rows(%a: tensor<4x8xf32>, %b: tensor<2x8xf32>) {
  // expected-error @+1 {{'mt.concat_rows' op expects result with 6 rows (the sum of the inputs'), got [7, 8]}}
  %0 = mt.concat_rows %a, %b : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<7x8xf32>
  return
}

// -----

func.func @split_rows(%a: tensor<6x8xf32>) {
  // expected-error @+1 {{'mt.split_rows' op expects input with 5 rows (the sum of the results'), got [6, 8]}}
  %0:2 = mt.split_rows %a : (tensor<6x8xf32>) -> (tensor<4x8xf32>, tensor<1x8xf32>)
  return
}

// -----

func.func @split_scalar(%a: tensor<f32>) {
  // expected-error @+1 {{'mt.split_rows' op expects input of rank >= 1}}
  %0:2 = mt.split_rows %a : (tensor<f32>) -> (tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @swiglu_odd(%x: tensor<2x4x7xf32>) {
  // expected-error @+1 {{'mt.chunked_swiglu' op expects input [..., 2F] with an even last axis, got [2, 4, 7]}}
  %0 = mt.chunked_swiglu %x : (tensor<2x4x7xf32>) -> tensor<2x4x3xf32>
  return
}

// -----

func.func @swiglu_half(%x: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'mt.chunked_swiglu' op expects result of shape [2, 4, 4], got [2, 4, 8]}}
  %0 = mt.chunked_swiglu %x : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----

func.func @swiglu_type(%x: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'mt.chunked_swiglu' op expects input and result to have one element type, got 'f32' and 'bf16'}}
  %0 = mt.chunked_swiglu %x : (tensor<2x4x8xf32>) -> tensor<2x4x4xbf16>
  return
}

// -----

func.func @swiglu_grad_dy(%x: tensor<2x4x8xf32>, %dy: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'mt.chunked_swiglu_grad' op expects dy of shape [2, 4, 4], got [2, 4, 8]}}
  %0 = mt.chunked_swiglu_grad %x, %dy : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----

func.func @swiglu_grad_dx(%x: tensor<2x4x8xf32>, %dy: tensor<2x4x4xf32>) {
  // expected-error @+1 {{'mt.chunked_swiglu_grad' op expects dx of type 'tensor<2x4x8xf32>', got 'tensor<2x4x4xf32>'}}
  %0 = mt.chunked_swiglu_grad %x, %dy : (tensor<2x4x8xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  return
}

// -----

func.func @swiglu_recompute_grad_output(%x: tensor<2x4x8xf32>, %dy: tensor<2x4x4xf32>) {
  // expected-error @+1 {{'mt.chunked_swiglu_recompute_grad' op expects output of type 'tensor<2x4x4xf32>', got 'tensor<2x4x8xf32>'}}
  %0:2 = mt.chunked_swiglu_recompute_grad %x, %dy : (tensor<2x4x8xf32>, tensor<2x4x4xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  return
}

// -----

func.func @swiglu_recompute_grad_dy(%x: tensor<2x4x8xf32>, %dy: tensor<2x4x3xf32>) {
  // expected-error @+1 {{'mt.chunked_swiglu_recompute_grad' op expects dy of shape [2, 4, 4], got [2, 4, 3]}}
  %0:2 = mt.chunked_swiglu_recompute_grad %x, %dy : (tensor<2x4x8xf32>, tensor<2x4x3xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x3xf32>)
  return
}

// -----

func.func @split_qkv_rank(%x: tensor<f32>) {
  // expected-error @+1 {{'mt.split_qkv' op expects input of rank >= 1}}
  %q, %k, %v = mt.split_qkv %x : (tensor<f32>) -> (tensor<f32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @split_qkv_type(%x: tensor<2x4x16xf32>) {
  // expected-error @+1 {{'mt.split_qkv' op expects input and q to have one element type, got 'f32' and 'bf16'}}
  %q, %k, %v = mt.split_qkv %x : (tensor<2x4x16xf32>) -> (tensor<2x4x8xbf16>, tensor<2x4x4xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @split_qkv_rows(%x: tensor<2x4x16xf32>) {
  // expected-error @+1 {{'mt.split_qkv' op expects k with the leading axes of input [2, 4, 16], got [2, 3, 4]}}
  %q, %k, %v = mt.split_qkv %x : (tensor<2x4x16xf32>) -> (tensor<2x4x8xf32>, tensor<2x3x4xf32>, tensor<2x4x4xf32>)
  return
}

// -----

func.func @split_qkv_kv_widths(%x: tensor<2x4x16xf32>) {
  // expected-error @+1 {{'mt.split_qkv' op expects k and v of one width, got [2, 4, 5] and [2, 4, 3]}}
  %q, %k, %v = mt.split_qkv %x : (tensor<2x4x16xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x5xf32>, tensor<2x4x3xf32>)
  return
}

// -----

func.func @concat_qkv_columns(%dq: tensor<2x4x8xf32>, %dk: tensor<2x4x4xf32>, %dv: tensor<2x4x4xf32>) {
  // expected-error @+1 {{'mt.concat_qkv' op expects result with 16 columns (the sum of the parts'), got [2, 4, 17]}}
  %0 = mt.concat_qkv %dq, %dk, %dv : (tensor<2x4x8xf32>, tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x17xf32>
  return
}

// -----

func.func @split_qkv_rotary_columns(%x: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.split_qkv_rotary' op expects input with 80 columns ((q heads + 2 x kv heads) x head_dim), got [2, 4, 64]}}
  %q, %k, %v = mt.split_qkv_rotary %x {theta = 1.0e+04 : f64} : (tensor<2x4x64xf32>) -> (tensor<2x4x3x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>)
  return
}

// -----

func.func @split_qkv_rotary_head_dim(%x: tensor<2x4x20xf32>) {
  // expected-error @+1 {{'mt.split_qkv_rotary' op expects an even head_dim, got 5}}
  %q, %k, %v = mt.split_qkv_rotary %x {theta = 1.0e+04 : f64} : (tensor<2x4x20xf32>) -> (tensor<2x4x2x5xf32>, tensor<2x4x1x5xf32>, tensor<2x4x1x5xf32>)
  return
}

// -----

func.func @rotary_concat_qkv_scaling(%dq: tensor<2x4x2x16xf32>, %dk: tensor<2x4x1x16xf32>) {
  // expected-error @+1 {{'mt.rotary_concat_qkv' op expects all or none of scaling_factor, low_freq_factor, high_freq_factor, original_max_position (llama3 rope scaling), got 1 of 4}}
  %p = mt.rotary_concat_qkv %dq, %dk, %dk {theta = 1.0e+04 : f64, scaling_factor = 8.0 : f64} : tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32> -> tensor<2x4x64xf32>
  return
}

// -----

func.func @rotary_concat_qkv_positions(%dq: tensor<2x4x2x16xf32>, %dk: tensor<2x4x1x16xf32>, %pos: tensor<2x5xi32>) {
  // expected-error @+1 {{position_ids}}
  %p = mt.rotary_concat_qkv %dq, %dk, %dk positions %pos : tensor<2x5xi32> {theta = 1.0e+04 : f64} : tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32> -> tensor<2x4x64xf32>
  return
}
