// RUN: mtc-opt %s -split-input-file -verify-diagnostics

func.func @rotary_rank(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.rotary' op expects input [B, S, heads, head_dim] of rank 4, got [2, 8, 64]}}
  %0 = mt.rotary %x {theta = 1.0e4 : f64} : tensor<2x8x64xf32>
  return
}

// -----

func.func @rotary_odd(%x: tensor<2x8x4x15xf32>) {
  // expected-error @+1 {{'mt.rotary' op expects an even head_dim, got 15}}
  %0 = mt.rotary %x {theta = 1.0e4 : f64} : tensor<2x8x4x15xf32>
  return
}

// -----

func.func @rotary_theta(%x: tensor<2x8x4x16xf32>) {
  // expected-error @+1 {{'mt.rotary' op expects theta > 0, got -1.000000e+00}}
  %0 = mt.rotary %x {theta = -1.0 : f64} : tensor<2x8x4x16xf32>
  return
}

// -----

func.func @rotary_partial_scaling(%x: tensor<2x8x4x16xf32>) {
  // expected-error @+1 {{'mt.rotary' op expects all or none of scaling_factor, low_freq_factor, high_freq_factor, original_max_position (llama3 rope scaling), got 2 of 4}}
  %0 = mt.rotary %x {theta = 1.0e4 : f64, scaling_factor = 8.0 : f64, low_freq_factor = 1.0 : f64} : tensor<2x8x4x16xf32>
  return
}

// -----

func.func @rotary_freq_order(%x: tensor<2x8x4x16xf32>) {
  // expected-error @+1 {{'mt.rotary' op expects high_freq_factor (1.000000e+00) > low_freq_factor (4.000000e+00)}}
  %0 = mt.rotary %x {theta = 1.0e4 : f64, scaling_factor = 8.0 : f64, low_freq_factor = 4.0 : f64,
                     high_freq_factor = 1.0 : f64, original_max_position = 8192 : i64} : tensor<2x8x4x16xf32>
  return
}

// -----

func.func @gqa_divisible(%q: tensor<2x8x32x16xf32>, %k: tensor<2x8x6x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects num_heads (32) divisible by num_kv_heads (6)}}
  %0 = mt.attention %q, %k, %k {num_heads = 32 : i64, num_kv_heads = 6 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x32x16xf32>, tensor<2x8x6x16xf32>, tensor<2x8x6x16xf32>) -> tensor<2x8x32x16xf32>
  return
}

// -----

func.func @heads_positive(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects positive num_heads (4), num_kv_heads (0) and head_dim (16)}}
  %0 = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 0 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @query_shape(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects query of shape [2, 8, 8, 16], got [2, 8, 4, 16]}}
  %0 = mt.attention %q, %k, %k {num_heads = 8 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @query_rank(%q: tensor<2x8x64xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects query of rank 4, got [2, 8, 64]}}
  %0 = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x64xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @key_shape(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x4x16xf32>, %v: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects key of shape [2, 8, 2, 16], got [2, 8, 4, 16]}}
  %0 = mt.attention %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @value_shape(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %v: tensor<2x4x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects value of shape [2, 8, 2, 16], got [2, 4, 2, 16]}}
  %0 = mt.attention %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x4x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @kv_type(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xbf16>) {
  // expected-error @+1 {{'mt.attention' op expects query and key to have one element type, got 'f32' and 'bf16'}}
  %0 = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xbf16>, tensor<2x8x2x16xbf16>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @scale(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects scale > 0, got 0.000000e+00}}
  %0 = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.0 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @attention_result(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects result type 'tensor<2x8x4x16xf32>', got 'tensor<2x8x64xf32>'}}
  %0 = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @rotary_positions_shape(%x: tensor<2x8x4x16xf32>, %pos: tensor<2x7xi32>) {
  // expected-error @+1 {{'mt.rotary' op expects position_ids of shape [2, 8], got [2, 7]}}
  %0 = mt.rotary %x positions %pos : tensor<2x7xi32> {theta = 1.0e4 : f64} : tensor<2x8x4x16xf32>
  return
}

// -----

func.func @attention_positions_shape(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %pos: tensor<8x2xi32>) {
  // expected-error @+1 {{'mt.attention' op expects position_ids of shape [2, 8], got [8, 2]}}
  %o = mt.attention %q, %k, %k, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<8x2xi32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @attention_grad_positions_shape(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %pos: tensor<2x9xi32>) {
  // expected-error @+1 {{'mt.attention_grad' op expects position_ids of shape [2, 8], got [2, 9]}}
  %dq, %dk, %dv = mt.attention_grad %q, %k, %k, %q, %q, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>, tensor<2x9xi32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  return
}

// -----

func.func @attention_positions_type(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %pos: tensor<2x8xi64>) {
  // expected-error @+1 {{operand #3 must be ranked tensor of 32-bit signless integer values, but got 'tensor<2x8xi64>'}}
  %o = mt.attention %q, %k, %k, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8xi64>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @attention_cp_key_sequence(%q: tensor<2x8x4x16xf32>, %k: tensor<2x12x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects the key sequence (12) to be a multiple of the query sequence (8), which is even (two chunks) under context_parallel_axis 'cp'}}
  %o = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp"}
      : (tensor<2x8x4x16xf32>, tensor<2x12x2x16xf32>, tensor<2x12x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @attention_key_sequence_without_cp(%q: tensor<2x8x4x16xf32>, %k: tensor<2x16x2x16xf32>) {
  // expected-error @+1 {{'mt.attention' op expects key of shape [2, 8, 2, 16], got [2, 16, 2, 16]}}
  %o = mt.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x2x16xf32>) -> tensor<2x8x4x16xf32>
  return
}

// -----

func.func @rotary_cp_odd_sequence(%x: tensor<2x7x4x16xf32>) {
  // expected-error @+1 {{'mt.rotary' op expects an even sequence (7, two chunks) and no position_ids with context_parallel_axis 'cp'}}
  %0 = mt.rotary %x {theta = 1.0e4 : f64, context_parallel_axis = "cp"} : tensor<2x7x4x16xf32>
  return
}

// -----

func.func @attention_block_lse_shape(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>) {
  // expected-error @+1 {{'mt.attention_block' op expects lse of shape [2, 4, 8], got [2, 8, 4]}}
  %o, %l = mt.attention_block %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp", step = 0 : i64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x4xf32>)
  return
}

// -----

func.func @attention_block_odd_sequence(%q: tensor<2x7x4x16xf32>, %k: tensor<2x7x2x16xf32>) {
  // expected-error @+1 {{'mt.attention_block' op expects an even sequence (7, two chunks) and a step >= 0, got 0}}
  %o, %l = mt.attention_block %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp", step = 0 : i64}
      : (tensor<2x7x4x16xf32>, tensor<2x7x2x16xf32>, tensor<2x7x2x16xf32>) -> (tensor<2x7x4x16xf32>, tensor<2x4x7xf32>)
  return
}

// -----

func.func @attention_block_positions_shape(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %pos: tensor<2x16xi32>) {
  // expected-error @+1 {{'mt.attention_block' op expects position_ids of shape [2, 8], got [2, 16]}}
  %o, %l = mt.attention_block %q, %k, %k, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp", step = 1 : i64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x16xi32>) -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  return
}

// -----

func.func @attention_merge_lse(%o: tensor<2x8x4x16xf32>, %l: tensor<2x4x8xf32>, %bad: tensor<2x8x4xf32>) {
  // expected-error @+1 {{'mt.attention_merge' op expects lse_b of type 'tensor<2x4x8xf32>', got 'tensor<2x8x4xf32>'}}
  %m, %ml = mt.attention_merge %o, %l, %o, %bad
      : (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  return
}
