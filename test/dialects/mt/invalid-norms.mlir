// RUN: mtc-opt %s -split-input-file -verify-diagnostics

func.func @rms_weight(%x: tensor<2x8x64xf32>, %w: tensor<32xf32>) {
  // expected-error @+1 {{'mt.rmsnorm' op expects weight of size 64 (the last axis of input [2, 8, 64]), got [32]}}
  %0 = mt.rmsnorm %x, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<32xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @rms_weight_rank(%x: tensor<2x8x64xf32>, %w: tensor<1x64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm' op expects weight of rank 1, got [1, 64]}}
  %0 = mt.rmsnorm %x, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<1x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @rms_eps(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm' op expects eps > 0, got 0.000000e+00}}
  %0 = mt.rmsnorm %x, %w {eps = 0.0 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @rms_type(%x: tensor<2x8x64xf32>, %w: tensor<64xbf16>) {
  // expected-error @+1 {{'mt.rmsnorm' op expects input and weight to have one element type, got 'f32' and 'bf16'}}
  %0 = mt.rmsnorm %x, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<64xbf16>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @rms_result(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'mt.rmsnorm' op expects result type 'tensor<2x8x64xf32>', got 'tensor<2x8x32xf32>'}}
  %0 = mt.rmsnorm %x, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>) -> tensor<2x8x32xf32>
  return
}

// -----

func.func @rms_rank(%x: tensor<f32>, %w: tensor<1xf32>) {
  // expected-error @+1 {{'mt.rmsnorm' op expects input of rank >= 1}}
  %0 = mt.rmsnorm %x, %w {eps = 1.0e-5 : f64} : (tensor<f32>, tensor<1xf32>) -> tensor<f32>
  return
}

// -----

func.func @layernorm_bias(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>, %b: tensor<63xf32>) {
  // expected-error @+1 {{'mt.layernorm' op expects bias of size 64 (the last axis of input [2, 8, 64]), got [63]}}
  %0 = mt.layernorm %x, %w, %b {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<63xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @layernorm_weight(%x: tensor<2x8x64xf32>, %w: tensor<65xf32>, %b: tensor<64xf32>) {
  // expected-error @+1 {{'mt.layernorm' op expects weight of size 64 (the last axis of input [2, 8, 64]), got [65]}}
  %0 = mt.layernorm %x, %w, %b {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<65xf32>, tensor<64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @add_rms_weight(%x: tensor<2x8x64xf32>, %r: tensor<2x8x64xf32>, %w: tensor<32xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm' op expects weight of size 64 (the last axis of input [2, 8, 64]), got [32]}}
  %0:2 = mt.add_rmsnorm %x, %r, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<32xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>)
  return
}

// -----

func.func @add_rms_residual(%x: tensor<2x8x64xf32>, %r: tensor<16x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm' op expects residual of type 'tensor<2x8x64xf32>', got 'tensor<16x64xf32>'}}
  %0:2 = mt.add_rmsnorm %x, %r, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<16x64xf32>, tensor<64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>)
  return
}

// -----

func.func @add_rms_sum(%x: tensor<2x8x64xf32>, %r: tensor<2x8x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm' op expects sum of type 'tensor<2x8x64xf32>', got 'tensor<2x8x64xbf16>'}}
  %0:2 = mt.add_rmsnorm %x, %r, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<64xf32>) -> (tensor<2x8x64xbf16>, tensor<2x8x64xf32>)
  return
}

// -----

func.func @add_rms_result(%x: tensor<2x8x64xf32>, %r: tensor<2x8x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm' op expects result type 'tensor<2x8x64xf32>', got 'tensor<2x8x32xf32>'}}
  %0:2 = mt.add_rmsnorm %x, %r, %w {eps = 1.0e-5 : f64} : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x32xf32>)
  return
}

// -----

func.func @add_rms_eps(%x: tensor<2x8x64xf32>, %r: tensor<2x8x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'mt.add_rmsnorm' op expects eps > 0, got 0.000000e+00}}
  %0:2 = mt.add_rmsnorm %x, %r, %w {eps = 0.0 : f64} : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>)
  return
}
