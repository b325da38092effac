// RUN: mtc-opt %s -split-input-file -verify-diagnostics

func.func @embedding_ids_rank(%ids: tensor<8xi32>, %t: tensor<16x4xf32>) {
  // expected-error @+1 {{'mt.embedding' op expects ids of rank 2, got [8]}}
  %0 = mt.embedding %ids, %t : (tensor<8xi32>, tensor<16x4xf32>) -> tensor<8x4xf32>
  return
}

// -----

func.func @embedding_shape(%ids: tensor<2x8xi32>, %t: tensor<16x4xf32>) {
  // expected-error @+1 {{'mt.embedding' op expects result of shape [2, 8, 4], got [2, 8, 5]}}
  %0 = mt.embedding %ids, %t : (tensor<2x8xi32>, tensor<16x4xf32>) -> tensor<2x8x5xf32>
  return
}

// -----

func.func @embedding_type(%ids: tensor<2x8xi32>, %t: tensor<16x4xf32>) {
  // expected-error @+1 {{'mt.embedding' op expects result element type 'f32' (the table's), got 'bf16'}}
  %0 = mt.embedding %ids, %t : (tensor<2x8xi32>, tensor<16x4xf32>) -> tensor<2x8x4xbf16>
  return
}

// -----

func.func @embedding_table_rank(%ids: tensor<2x8xi32>, %t: tensor<16xf32>) {
  // expected-error @+1 {{'mt.embedding' op expects table of rank 2, got [16]}}
  %0 = mt.embedding %ids, %t : (tensor<2x8xi32>, tensor<16xf32>) -> tensor<2x8x4xf32>
  return
}

// -----

func.func @linear_in(%x: tensor<2x8x64xf32>, %w: tensor<96x32xf32>) {
  // expected-error @+1 {{'mt.linear' op expects weight [out, in] with in = 64 (the last axis of input [2, 8, 64]), got [96, 32]}}
  %0 = mt.linear %x, %w : (tensor<2x8x64xf32>, tensor<96x32xf32>) -> tensor<2x8x96xf32>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'mt.linear' op expects weight of rank 2, got [64]}}
  %0 = mt.linear %x, %w : (tensor<2x8x64xf32>, tensor<64xf32>) -> tensor<2x8x96xf32>
  return
}

// -----

func.func @linear_input_rank(%x: tensor<f32>, %w: tensor<4x1xf32>) {
  // expected-error @+1 {{'mt.linear' op expects input of rank >= 1}}
  %0 = mt.linear %x, %w : (tensor<f32>, tensor<4x1xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @linear_types(%x: tensor<2x8x64xbf16>, %w: tensor<96x64xf32>) {
  // expected-error @+1 {{'mt.linear' op expects input and weight to have one element type, got 'bf16' and 'f32'}}
  %0 = mt.linear %x, %w : (tensor<2x8x64xbf16>, tensor<96x64xf32>) -> tensor<2x8x96xbf16>
  return
}

// -----

func.func @linear_bias(%x: tensor<2x8x64xf32>, %w: tensor<96x64xf32>, %b: tensor<64xf32>) {
  // expected-error @+1 {{'mt.linear' op expects bias of shape [96], got [64]}}
  %0 = mt.linear %x, %w, %b : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<64xf32>) -> tensor<2x8x96xf32>
  return
}

// -----

func.func @linear_bias_type(%x: tensor<2x8x64xf32>, %w: tensor<96x64xf32>, %b: tensor<96xbf16>) {
  // expected-error @+1 {{'mt.linear' op expects input and bias to have one element type, got 'f32' and 'bf16'}}
  %0 = mt.linear %x, %w, %b : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<96xbf16>) -> tensor<2x8x96xf32>
  return
}

// -----

func.func @linear_result(%x: tensor<2x8x64xf32>, %w: tensor<96x64xf32>) {
  // expected-error @+1 {{'mt.linear' op expects result of shape [2, 8, 96], got [2, 8, 64]}}
  %0 = mt.linear %x, %w : (tensor<2x8x64xf32>, tensor<96x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @linear_result_type(%x: tensor<2x8x64xf32>, %w: tensor<96x64xf32>) {
  // expected-error @+1 {{'mt.linear' op expects input and result to have one element type, got 'f32' and 'bf16'}}
  %0 = mt.linear %x, %w : (tensor<2x8x64xf32>, tensor<96x64xf32>) -> tensor<2x8x96xbf16>
  return
}

// -----

func.func @reshape_count(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.reshape' op expects the element count to be kept, got [2, 8, 64] (1024) -> [2, 8, 4, 8] (512)}}
  %0 = mt.reshape %x : tensor<2x8x64xf32> -> tensor<2x8x4x8xf32>
  return
}

// -----

func.func @reshape_type(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.reshape' op expects input and result to have one element type, got 'f32' and 'bf16'}}
  %0 = mt.reshape %x : tensor<2x8x64xf32> -> tensor<2x8x4x16xbf16>
  return
}

// -----

func.func @add_types(%x: tensor<4xf32>, %y: tensor<8xf32>) {
  // expected-error @+1 {{'mt.add' op requires the same type for all operands and results}}
  %0 = "mt.add"(%x, %y) : (tensor<4xf32>, tensor<8xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @swiglu_types(%x: tensor<4xf32>, %y: tensor<4xbf16>) {
  // expected-error @+1 {{'mt.swiglu' op requires the same type for all operands and results}}
  %0 = "mt.swiglu"(%x, %y) : (tensor<4xf32>, tensor<4xbf16>) -> tensor<4xf32>
  return
}

// -----

func.func @ids_type(%ids: tensor<2x8xf32>, %t: tensor<16x4xf32>) {
  // expected-error @+1 {{'mt.embedding' op operand #0 must be ranked tensor of 32-bit signless integer or 64-bit signless integer values}}
  %0 = "mt.embedding"(%ids, %t) : (tensor<2x8xf32>, tensor<16x4xf32>) -> tensor<2x8x4xf32>
  return
}

// -----

func.func @bias_add_rank(%x: tensor<f32>, %b: tensor<1xf32>) {
  // expected-error @+1 {{'mt.bias_add' op expects input of rank >= 1}}
  %0 = mt.bias_add %x, %b : (tensor<f32>, tensor<1xf32>) -> tensor<f32>
  return
}

// -----

func.func @bias_add_size(%x: tensor<2x8x96xf32>, %b: tensor<64xf32>) {
  // expected-error @+1 {{'mt.bias_add' op expects bias of size 96 (the last axis of input [2, 8, 96]), got [64]}}
  %0 = mt.bias_add %x, %b : (tensor<2x8x96xf32>, tensor<64xf32>) -> tensor<2x8x96xf32>
  return
}

// -----

func.func @bias_add_result(%x: tensor<2x8x96xf32>, %b: tensor<96xf32>) {
  // expected-error @+1 {{'mt.bias_add' op expects result of type 'tensor<2x8x96xf32>', got 'tensor<2x8x96xbf16>'}}
  %0 = mt.bias_add %x, %b : (tensor<2x8x96xf32>, tensor<96xf32>) -> tensor<2x8x96xbf16>
  return
}
