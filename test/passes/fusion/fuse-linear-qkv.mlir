// RUN: mtc-opt %s -split-input-file '-mt-fuse=rotary-qkv=false' | FileCheck %s
// RUN: mtc-opt %s -split-input-file '-mt-fuse=linear-qkv=false' | FileCheck %s --check-prefix=OFF
// (rotary-qkv, which would fold the rotaries below into the split: fuse-rotary-qkv.mlir)

// An attention's q, k and v projections with biases (Qwen2), forward and
// backward: one linear over the weights and biases read as one matrix,
// split into q, k and v; backward the three output gradients packed and one
// GEMM per gradient, the weight and bias gradients split rows. The weights
// read after the first projection move up to it.
// CHECK-LABEL: func.func @attention
// CHECK-DAG: %[[WQ:.*]] = mt.weight @q_w
// CHECK-DAG: %[[BQ:.*]] = mt.weight @q_b
// CHECK-DAG: %[[WK:.*]] = mt.weight @k_w
// CHECK-DAG: %[[BK:.*]] = mt.weight @k_b
// CHECK-DAG: %[[WV:.*]] = mt.weight @v_w
// CHECK-DAG: %[[BV:.*]] = mt.weight @v_b
// CHECK: %[[W:.*]] = mt.concat_rows %[[WQ]], %[[WK]], %[[WV]] {mt.layer = 0 : i64} : (tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<64x64xf32>
// CHECK: %[[B:.*]] = mt.concat_rows %[[BQ]], %[[BK]], %[[BV]] {mt.layer = 0 : i64} : (tensor<32xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<64xf32>
// CHECK: %[[QKV:.*]] = mt.linear %arg0, %[[W]], %[[B]] {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<64x64xf32>, tensor<64xf32>) -> tensor<2x4x64xf32>
// CHECK: %[[Q:.*]], %[[K:.*]], %[[V:.*]] = mt.split_qkv %[[QKV]] {mt.layer = 0 : i64} : (tensor<2x4x64xf32>) -> (tensor<2x4x32xf32>, tensor<2x4x16xf32>, tensor<2x4x16xf32>)
// CHECK: mt.reshape %[[Q]]
// CHECK: mt.reshape %[[K]]
// CHECK: mt.reshape %[[V]]
// CHECK: mt.attention_grad
// CHECK: %[[DQ:.*]] = mt.reshape %{{.*}} {mt.backward, mt.layer = 0 : i64} : tensor<2x4x2x16xf32> -> tensor<2x4x32xf32>
// CHECK: %[[DQKV:.*]] = mt.concat_qkv %[[DQ]], %{{.*}}, %{{.*}} {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x32xf32>, tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x64xf32>
// CHECK: %[[DW:.*]] = mt.linear_grad_weight %arg0, %[[DQKV]] {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x64xf32>) -> tensor<64x64xf32>
// CHECK: %[[DWS:.*]]:3 = mt.split_rows %[[DW]] {mt.backward, mt.layer = 0 : i64} : (tensor<64x64xf32>) -> (tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>)
// CHECK: %[[DB:.*]] = mt.bias_grad %[[DQKV]] {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>) -> tensor<64xf32>
// CHECK: %[[DBS:.*]]:3 = mt.split_rows %[[DB]]
// CHECK: %[[DX:.*]] = mt.linear_grad_input %[[DQKV]], %[[W]] {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<64x64xf32>) -> tensor<2x4x64xf32>
// CHECK-NOT: mt.add
// CHECK: return %{{.*}}, %[[DX]], %[[DWS]]#0, %[[DWS]]#1, %[[DWS]]#2, %[[DBS]]#0, %[[DBS]]#1, %[[DBS]]#2
// OFF-LABEL: func.func @attention
// OFF-NOT: mt.split_qkv
// OFF-NOT: mt.concat_qkv
// OFF: mt.add
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @q_b : tensor<32xf32> init(zeros)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @k_b : tensor<16xf32> init(zeros)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_b : tensor<16xf32> init(zeros)
func.func @attention(%x: tensor<2x4x64xf32>, %do: tensor<2x4x2x16xf32>)
    -> (tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>,
        tensor<16x64xf32>, tensor<32xf32>, tensor<16xf32>, tensor<16xf32>) {
  %wq = mt.weight @q_w {mt.layer = 0 : i64} : tensor<32x64xf32>
  %bq = mt.weight @q_b {mt.layer = 0 : i64} : tensor<32xf32>
  %q = mt.linear %x, %wq, %bq {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<32xf32>) -> tensor<2x4x32xf32>
  %q4 = mt.reshape %q {mt.layer = 0 : i64} : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %wk = mt.weight @k_w {mt.layer = 0 : i64} : tensor<16x64xf32>
  %bk = mt.weight @k_b {mt.layer = 0 : i64} : tensor<16xf32>
  %k = mt.linear %x, %wk, %bk {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<16x64xf32>, tensor<16xf32>) -> tensor<2x4x16xf32>
  %k4 = mt.reshape %k {mt.layer = 0 : i64} : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %wv = mt.weight @v_w {mt.layer = 0 : i64} : tensor<16x64xf32>
  %bv = mt.weight @v_b {mt.layer = 0 : i64} : tensor<16xf32>
  %v = mt.linear %x, %wv, %bv {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<16x64xf32>, tensor<16xf32>) -> tensor<2x4x16xf32>
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
  %dbv = mt.bias_grad %dv3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x16xf32>) -> tensor<16xf32>
  %dk3 = mt.reshape %dkr {mt.backward, mt.layer = 0 : i64} : tensor<2x4x1x16xf32> -> tensor<2x4x16xf32>
  %dxk = mt.linear_grad_input %dk3, %wk {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x16xf32>, tensor<16x64xf32>) -> tensor<2x4x64xf32>
  %dwk = mt.linear_grad_weight %x, %dk3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x16xf32>) -> tensor<16x64xf32>
  %dbk = mt.bias_grad %dk3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x16xf32>) -> tensor<16xf32>
  %s1 = mt.add %dxv, %dxk {mt.backward, mt.layer = 0 : i64} : tensor<2x4x64xf32>
  %dq3 = mt.reshape %dqr {mt.backward, mt.layer = 0 : i64} : tensor<2x4x2x16xf32> -> tensor<2x4x32xf32>
  %dxq = mt.linear_grad_input %dq3, %wq {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x32xf32>, tensor<32x64xf32>) -> tensor<2x4x64xf32>
  %dwq = mt.linear_grad_weight %x, %dq3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x32xf32>) -> tensor<32x64xf32>
  %dbq = mt.bias_grad %dq3 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x32xf32>) -> tensor<32xf32>
  %dx = mt.add %s1, %dxq {mt.backward, mt.layer = 0 : i64} : tensor<2x4x64xf32>
  return %o, %dx, %dwq, %dwk, %dwv, %dbq, %dbk, %dbv : tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>, tensor<32xf32>, tensor<16xf32>, tensor<16xf32>
}

// -----

// Forward only, with Qwen3's per-head q/k norms between the projections and
// the rotary embeddings: the projections are still found and fused.
// CHECK-LABEL: func.func @forward_norms
// CHECK: %[[W:.*]] = mt.concat_rows %{{.*}}, %{{.*}}, %{{.*}} : (tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<64x64xf32>
// CHECK: %[[QKV:.*]] = mt.linear %arg0, %[[W]] : (tensor<2x4x64xf32>, tensor<64x64xf32>) -> tensor<2x4x64xf32>
// CHECK: mt.split_qkv %[[QKV]]
// CHECK: mt.rmsnorm
// CHECK: mt.attention
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @qn : tensor<16xf32> init(ones)
mt.param @kn : tensor<16xf32> init(ones)
func.func @forward_norms(%x: tensor<2x4x64xf32>) -> tensor<2x4x2x16xf32> {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %k = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %wqn = mt.weight @qn : tensor<16xf32>
  %qn = mt.rmsnorm %q4, %wqn {eps = 1.0e-06 : f64} : (tensor<2x4x2x16xf32>, tensor<16xf32>) -> tensor<2x4x2x16xf32>
  %wkn = mt.weight @kn : tensor<16xf32>
  %kn = mt.rmsnorm %k4, %wkn {eps = 1.0e-06 : f64} : (tensor<2x4x1x16xf32>, tensor<16xf32>) -> tensor<2x4x1x16xf32>
  %qr = mt.rotary %qn {theta = 1.000000e+06 : f64} : tensor<2x4x2x16xf32>
  %kr = mt.rotary %kn {theta = 1.000000e+06 : f64} : tensor<2x4x1x16xf32>
  %o = mt.attention %qr, %kr, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  return %o : tensor<2x4x2x16xf32>
}

// -----

// The key projection reads another input, or only the query projection has
// a bias: no GEMM computes all three, nothing is fused.
// CHECK-LABEL: func.func @not_siblings
// CHECK-NOT: mt.concat_rows
// CHECK-NOT: mt.split_qkv
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @q_b : tensor<32xf32> init(zeros)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
func.func @not_siblings(%x: tensor<2x4x64xf32>, %y: tensor<2x4x64xf32>)
    -> (tensor<2x4x2x16xf32>, tensor<2x4x2x16xf32>) {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %k = mt.linear %y, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %o = mt.attention %q4, %k4, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  %bq = mt.weight @q_b : tensor<32xf32>
  %q2 = mt.linear %x, %wq, %bq : (tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<32xf32>) -> tensor<2x4x32xf32>
  %k2 = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %q24 = mt.reshape %q2 : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %k24 = mt.reshape %k2 : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %o2 = mt.attention %q24, %k24, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  return %o, %o2 : tensor<2x4x2x16xf32>, tensor<2x4x2x16xf32>
}

// -----

// The query projection's input gradient is returned, not summed with the
// others': the backward cannot be one GEMM, so nothing is fused, forward
// neither.
// CHECK-LABEL: func.func @unsummed_input_grads
// CHECK-NOT: mt.split_qkv
// CHECK: mt.add
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
func.func @unsummed_input_grads(%x: tensor<2x4x64xf32>, %do: tensor<2x4x2x16xf32>)
    -> (tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %k = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %o = mt.attention %q4, %k4, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  %dq, %dk, %dv = mt.attention_grad %q4, %k4, %v4, %o, %do {head_dim = 16 : i64, mt.backward, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x2x16xf32>, tensor<2x4x2x16xf32>) -> (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>)
  %dq3 = mt.reshape %dq {mt.backward} : tensor<2x4x2x16xf32> -> tensor<2x4x32xf32>
  %dk3 = mt.reshape %dk {mt.backward} : tensor<2x4x1x16xf32> -> tensor<2x4x16xf32>
  %dv3 = mt.reshape %dv {mt.backward} : tensor<2x4x1x16xf32> -> tensor<2x4x16xf32>
  %dxq = mt.linear_grad_input %dq3, %wq {mt.backward} : (tensor<2x4x32xf32>, tensor<32x64xf32>) -> tensor<2x4x64xf32>
  %dwq = mt.linear_grad_weight %x, %dq3 {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x32xf32>) -> tensor<32x64xf32>
  %dxk = mt.linear_grad_input %dk3, %wk {mt.backward} : (tensor<2x4x16xf32>, tensor<16x64xf32>) -> tensor<2x4x64xf32>
  %dwk = mt.linear_grad_weight %x, %dk3 {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x16xf32>) -> tensor<16x64xf32>
  %dxv = mt.linear_grad_input %dv3, %wv {mt.backward} : (tensor<2x4x16xf32>, tensor<16x64xf32>) -> tensor<2x4x64xf32>
  %dwv = mt.linear_grad_weight %x, %dv3 {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x16xf32>) -> tensor<16x64xf32>
  %s = mt.add %dxk, %dxv {mt.backward} : tensor<2x4x64xf32>
  return %o, %s, %dxq, %dwq, %dwk, %dwv : tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>
}

// -----

// The key projection's input gradient is summed with the others' and also
// returned: the three input-gradient GEMMs cannot go, nothing is fused.
// CHECK-LABEL: func.func @input_grad_read_twice
// CHECK-NOT: mt.split_qkv
// CHECK: mt.add
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
func.func @input_grad_read_twice(%x: tensor<2x4x64xf32>, %do: tensor<2x4x2x16xf32>)
    -> (tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %k = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %o = mt.attention %q4, %k4, %v4 {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> tensor<2x4x2x16xf32>
  %dq, %dk, %dv = mt.attention_grad %q4, %k4, %v4, %o, %do {head_dim = 16 : i64, mt.backward, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x2x16xf32>, tensor<2x4x2x16xf32>) -> (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>)
  %dq3 = mt.reshape %dq {mt.backward} : tensor<2x4x2x16xf32> -> tensor<2x4x32xf32>
  %dk3 = mt.reshape %dk {mt.backward} : tensor<2x4x1x16xf32> -> tensor<2x4x16xf32>
  %dv3 = mt.reshape %dv {mt.backward} : tensor<2x4x1x16xf32> -> tensor<2x4x16xf32>
  %dxq = mt.linear_grad_input %dq3, %wq {mt.backward} : (tensor<2x4x32xf32>, tensor<32x64xf32>) -> tensor<2x4x64xf32>
  %dwq = mt.linear_grad_weight %x, %dq3 {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x32xf32>) -> tensor<32x64xf32>
  %dxk = mt.linear_grad_input %dk3, %wk {mt.backward} : (tensor<2x4x16xf32>, tensor<16x64xf32>) -> tensor<2x4x64xf32>
  %dwk = mt.linear_grad_weight %x, %dk3 {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x16xf32>) -> tensor<16x64xf32>
  %dxv = mt.linear_grad_input %dv3, %wv {mt.backward} : (tensor<2x4x16xf32>, tensor<16x64xf32>) -> tensor<2x4x64xf32>
  %dwv = mt.linear_grad_weight %x, %dv3 {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x16xf32>) -> tensor<16x64xf32>
  %s = mt.add %dxk, %dxv {mt.backward} : tensor<2x4x64xf32>
  %dx = mt.add %s, %dxq {mt.backward} : tensor<2x4x64xf32>
  return %o, %dx, %dxk, %dwq, %dwk, %dwv : tensor<2x4x2x16xf32>, tensor<2x4x64xf32>, tensor<2x4x64xf32>, tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>
}

// -----

// Ring attention (context parallelism, cp_comm_type p2p): the projections
// are found from the first block's operands too.
// CHECK-LABEL: func.func @ring_block
// CHECK: %[[W:.*]] = mt.concat_rows %{{.*}}, %{{.*}}, %{{.*}} : (tensor<32x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<64x64xf32>
// CHECK: %[[QKV:.*]] = mt.linear %arg0, %[[W]]
// CHECK: mt.split_qkv %[[QKV]]
// CHECK: mt.attention_block
// OFF-LABEL: func.func @ring_block
// OFF-NOT: mt.split_qkv
mt.param @q_w : tensor<32x64xf32> init(normal, std = 2.0e-02)
mt.param @k_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
mt.param @v_w : tensor<16x64xf32> init(normal, std = 2.0e-02)
func.func @ring_block(%x: tensor<2x4x64xf32>) -> (tensor<2x4x2x16xf32>, tensor<2x2x4xf32>) {
  %wq = mt.weight @q_w : tensor<32x64xf32>
  %wk = mt.weight @k_w : tensor<16x64xf32>
  %wv = mt.weight @v_w : tensor<16x64xf32>
  %q = mt.linear %x, %wq : (tensor<2x4x64xf32>, tensor<32x64xf32>) -> tensor<2x4x32xf32>
  %k = mt.linear %x, %wk : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %v = mt.linear %x, %wv : (tensor<2x4x64xf32>, tensor<16x64xf32>) -> tensor<2x4x16xf32>
  %q4 = mt.reshape %q : tensor<2x4x32xf32> -> tensor<2x4x2x16xf32>
  %k4 = mt.reshape %k : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %v4 = mt.reshape %v : tensor<2x4x16xf32> -> tensor<2x4x1x16xf32>
  %o, %lse = mt.attention_block %q4, %k4, %v4 {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 2.5e-01 : f64, context_parallel_axis = "cp", step = 0 : i64} : (tensor<2x4x2x16xf32>, tensor<2x4x1x16xf32>, tensor<2x4x1x16xf32>) -> (tensor<2x4x2x16xf32>, tensor<2x2x4xf32>)
  return %o, %lse : tensor<2x4x2x16xf32>, tensor<2x2x4xf32>
}
