// RUN: mtc-opt %s -split-input-file -mt-fuse | FileCheck %s
// RUN: mtc-opt %s -split-input-file '-mt-fuse=rotary-qkv=false' | FileCheck %s --check-prefix=OFF

// Llama's attention inputs: the packed qkv GEMM's output split (linear-qkv),
// q and k rotated. rotary-qkv rotates them as they are split, and backward
// packs dq and dk rotated back with dv; no mt.rotary, mt.rotary_grad or
// reshape of q, k, v is left, and the attention reads the fused results.
// CHECK-LABEL: func.func @attention
// CHECK: %[[QKV:.*]] = mt.linear %arg0
// CHECK-NEXT: %[[Q:.*]], %[[K:.*]], %[[V:.*]] = mt.split_qkv_rotary %[[QKV]] {mt.layer = 0 : i64, theta = 1.000000e+06 : f64} : (tensor<2x4x64xf32>) -> (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>)
// CHECK-NOT: mt.rotary
// CHECK: %[[O:.*]] = mt.attention %[[Q]], %[[K]], %[[V]]
// CHECK: %[[DQ:.*]], %[[DK:.*]], %[[DV:.*]] = mt.attention_grad %[[Q]], %[[K]], %[[V]], %[[O]]
// CHECK-NOT: mt.rotary_grad
// CHECK: %[[DQKV:.*]] = mt.rotary_concat_qkv %[[DQ]], %[[DK]], %[[DV]] {mt.backward, mt.layer = 0 : i64, theta = 1.000000e+06 : f64} : tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32> -> tensor<2x4x64xf32>
// CHECK: mt.linear_grad_weight %arg0, %[[DQKV]]
// CHECK: mt.linear_grad_input %[[DQKV]]
// CHECK-NOT: mt.reshape
// CHECK: return
// OFF-LABEL: func.func @attention
// OFF: mt.split_qkv
// OFF-NEXT: mt.reshape
// OFF: mt.rotary
// OFF: mt.rotary
// OFF: mt.rotary_grad
// OFF: mt.concat_qkv
// OFF-NOT: _rotary
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
func.func @attention(%x: tensor<2x4x64xf32>, %do: tensor<2x4x2x16xf32>)
    -> (tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>,
        tensor<16x64xf32>) {
  %wq = mt.weight @q_w {mt.layer = 0 : i64} : tensor<32x64xf32>
  %q = mt.linear %x, %wq {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %q4 = mt.reshape %q {mt.layer = 0 : i64} : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %wk = mt.weight @k_w {mt.layer = 0 : i64} : tensor<16x64xf32>
  %k = mt.linear %x, %wk {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %k4 = mt.reshape %k {mt.layer = 0 : i64} : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %wv = mt.weight @v_w {mt.layer = 0 : i64} : tensor<16x64xf32>
  %v = mt.linear %x, %wv {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v4 = mt.reshape %v {mt.layer = 0 : i64} : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %qr = mt.rotary %q4 {mt.layer = 0 : i64, theta = 1.000000e+06 : f64} : tensor<2x4x2x16xf32>
  %kr = mt.rotary %k4 {mt.layer = 0 : i64, theta = 1.000000e+06 : f64} : tensor<2x4x1x16xf32>
  %o = mt.attention %qr, %kr, %v4 {head_dim = 16 : i64, mt.layer = 0 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  %dq, %dk, %dv = mt.attention_grad %qr, %kr, %v4, %o, %do {head_dim = 16 : i64, mt.backward, mt.layer = 0 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x2x16xf32>, tensor<2x4x2x16xf32>) -> (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>)
  %dkr = mt.rotary_grad %dk {mt.backward, mt.layer = 0 : i64, theta = 1.000000e+06 : f64} : (tensor<2x4x1x16xf32>) -> tensor<2x4x1x16xf32>
  %dqr = mt.rotary_grad %dq {mt.backward, mt.layer = 0 : i64, theta = 1.000000e+06 : f64} : (tensor<2x4x2x16xf32>) -> tensor<2x4x2x16xf32>
  %dv3 = mt.reshape %dv {mt.backward, mt.layer = 0 : i64} : tensor<2x4x1x16xf32> -> tensor<2x4x16xf32>
  %dxv = mt.linear_grad_input %dv3, %wv {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x16xf32>, tensor<16x64xf32>) -> tensor<2x4x64xf32>
  %dwv = mt.linear_grad_weight %x, %dv3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x16xf32>) -> tensor<16x64xf32>
  %dk3 = mt.reshape %dkr {mt.backward, mt.layer = 0 : i64} : tensor<2x4x1x16xf32> -> tensor<2x4x16xf32>
  %dxk = mt.linear_grad_input %dk3, %wk {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x16xf32>, tensor<16x64xf32>) -> tensor<2x4x64xf32>
  %dwk = mt.linear_grad_weight %x, %dk3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x16xf32>) -> tensor<16x64xf32>
  %s1 = mt.add %dxv, %dxk {mt.backward, mt.layer = 0 : i64} : tensor<2x4x64xf32>
  %dq3 = mt.reshape %dqr {mt.backward, mt.layer = 0 : i64} : tensor<2x4x2x16xf32> -> tensor<2x4x32xf32>
  %dxq = mt.linear_grad_input %dq3, %wq {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x32xf32>, tensor<32x64xf32>) -> tensor<2x4x64xf32>
  %dwq = mt.linear_grad_weight %x, %dq3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x32xf32>) -> tensor<32x64xf32>
  %dx = mt.add %s1, %dxq {mt.backward, mt.layer = 0 : i64} : tensor<2x4x64xf32>
  return %o, %dx, %dwq, %dwk, %dwv : tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>
}

// -----

// Packed documents: both rotaries read the same position ids, and so does
// the fused op. The scaled rotary's attributes come along.
// CHECK-LABEL: func.func @positions
// CHECK: mt.split_qkv_rotary %{{.*}} positions %arg1 : tensor<2x4xi32> {high_freq_factor = 4.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, original_max_position = 8192 : i64, scaling_factor = 3.200000e+01 : f64, theta = 5.000000e+05 : f64}
// CHECK-NOT: mt.rotary
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
func.func @positions(%x: tensor<2x4x64xf32>, %pos: tensor<2x4xi32>) -> tensor<2x4x2x16xf32> {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %k = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %qr = mt.rotary %q4 positions %pos : tensor<2x4xi32> {theta = 5.000000e+05 : f64, scaling_factor = 3.200000e+01 : f64, low_freq_factor = 1.000000e+00 : f64, high_freq_factor = 4.000000e+00 : f64, original_max_position = 8192 : i64} : tensor<2x4x2x16xf32>
  %kr = mt.rotary %k4 positions %pos : tensor<2x4xi32> {theta = 5.000000e+05 : f64, scaling_factor = 3.200000e+01 : f64, low_freq_factor = 1.000000e+00 : f64, high_freq_factor = 4.000000e+00 : f64, original_max_position = 8192 : i64} : tensor<2x4x1x16xf32>
  %o = mt.attention %qr, %kr, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  return %o : tensor<2x4x2x16xf32>
}

// -----

// q and k rotated unlike (another theta), or the unrotated k read elsewhere
// too: the split stays, and so do the rotaries.
// CHECK-LABEL: func.func @unlike
// CHECK: mt.split_qkv %
// CHECK-COUNT-2: mt.rotary %
// CHECK-LABEL: func.func @k_read_twice
// CHECK: mt.split_qkv %
// CHECK-COUNT-2: mt.rotary %
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
func.func @unlike(%x: tensor<2x4x64xf32>) -> tensor<2x4x2x16xf32> {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %k = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %qr = mt.rotary %q4 {theta = 1.000000e+06 : f64} : tensor<2x4x2x16xf32>
  %kr = mt.rotary %k4 {theta = 1.000000e+04 : f64} : tensor<2x4x1x16xf32>
  %o = mt.attention %qr, %kr, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  return %o : tensor<2x4x2x16xf32>
}
func.func @k_read_twice(%x: tensor<2x4x64xf32>) -> (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>) {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %k = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %qr = mt.rotary %q4 {theta = 1.000000e+06 : f64} : tensor<2x4x2x16xf32>
  %kr = mt.rotary %k4 {theta = 1.000000e+06 : f64} : tensor<2x4x1x16xf32>
  %o = mt.attention %qr, %kr, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  return %o, %k4 : tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>
}
