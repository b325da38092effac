// RUN: mtc-opt %s -split-input-file -mt-fuse | FileCheck %s
// RUN: mtc-opt %s -split-input-file '-mt-fuse=linear-fc1=false' | FileCheck %s --check-prefix=OFF

// A SwiGLU MLP's gate and up projections with biases, forward and backward:
// one linear over the weights read as one matrix, the packed SwiGLU, and
// one GEMM per gradient whose weight and bias gradients are split rows.
// CHECK-LABEL: func.func @mlp
// CHECK: %[[WG:.*]] = mt.weight @gate_w
// CHECK: %[[BG:.*]] = mt.weight @gate_b
// CHECK: %[[WU:.*]] = mt.weight @up_w
// CHECK: %[[BU:.*]] = mt.weight @up_b
// CHECK: %[[W:.*]] = mt.concat_rows %[[WG]], %[[WU]] {mt.layer = 0 : i64} : (tensor<128x64xf32>, tensor<128x64xf32>) -> tensor<256x64xf32>
// CHECK: %[[B:.*]] = mt.concat_rows %[[BG]], %[[BU]] {mt.layer = 0 : i64} : (tensor<128xf32>, tensor<128xf32>) -> tensor<256xf32>
// CHECK: %[[GU:.*]] = mt.linear %arg0, %[[W]], %[[B]] {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<256x64xf32>, tensor<256xf32>) -> tensor<2x4x256xf32>
// CHECK: %[[A:.*]] = mt.chunked_swiglu %[[GU]] {mt.layer = 0 : i64} : (tensor<2x4x256xf32>) -> tensor<2x4x128xf32>
// CHECK: %[[DGU:.*]] = mt.chunked_swiglu_grad %[[GU]], %arg1 {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<2x4x128xf32>) -> tensor<2x4x256xf32>
// CHECK-NOT: mt.linear_grad_input
// CHECK: %[[DW:.*]] = mt.linear_grad_weight %arg0, %[[DGU]] {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x256xf32>) -> tensor<256x64xf32>
// CHECK: %[[DWS:.*]]:2 = mt.split_rows %[[DW]] {mt.backward, mt.layer = 0 : i64} : (tensor<256x64xf32>) -> (tensor<128x64xf32>, tensor<128x64xf32>)
// CHECK: %[[DB:.*]] = mt.bias_grad %[[DGU]] {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>) -> tensor<256xf32>
// CHECK: %[[DBS:.*]]:2 = mt.split_rows %[[DB]]
// CHECK: %[[DX:.*]] = mt.linear_grad_input %[[DGU]], %[[W]] {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<256x64xf32>) -> tensor<2x4x64xf32>
// CHECK-NOT: mt.swiglu
// CHECK-NOT: mt.add
// CHECK: return %[[A]], %[[DX]], %[[DWS]]#0, %[[DWS]]#1, %[[DBS]]#0, %[[DBS]]#1
// OFF-LABEL: func.func @mlp
// OFF-NOT: mt.concat_rows
// OFF-NOT: mt.chunked_swiglu
// OFF: mt.swiglu_grad
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @gate_b : tensor<128xf32> init(zeros)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_b : tensor<128xf32> init(zeros)
func.func @mlp(%x: tensor<2x4x64xf32>, %da: tensor<2x4x128xf32>)
    -> (tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>,
        tensor<128xf32>, tensor<128xf32>) {
  %wg = mt.weight @gate_w {mt.layer = 0 : i64} : tensor<128x64xf32>
  %bg = mt.weight @gate_b {mt.layer = 0 : i64} : tensor<128xf32>
  %g = mt.linear %x, %wg, %bg {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128xf32>) -> tensor<2x4x128xf32>
  %wu = mt.weight @up_w {mt.layer = 0 : i64} : tensor<128x64xf32>
  %bu = mt.weight @up_b {mt.layer = 0 : i64} : tensor<128xf32>
  %u = mt.linear %x, %wu, %bu {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u {mt.layer = 0 : i64} : tensor<2x4x128xf32>
  %dg, %du = mt.swiglu_grad %g, %u, %da {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>) -> (tensor<2x4x128xf32>, tensor<2x4x128xf32>)
  %dxu = mt.linear_grad_input %du, %wu {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwu = mt.linear_grad_weight %x, %du {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  %dbu = mt.bias_grad %du {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>) -> tensor<128xf32>
  %dxg = mt.linear_grad_input %dg, %wg {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwg = mt.linear_grad_weight %x, %dg {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  %dbg = mt.bias_grad %dg {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>) -> tensor<128xf32>
  %dx = mt.add %dxu, %dxg {mt.backward, mt.layer = 0 : i64} : tensor<2x4x64xf32>
  return %a, %dx, %dwg, %dwu, %dbg, %dbu : tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>, tensor<128xf32>, tensor<128xf32>
}

// -----

// Forward only (a recomputed MLP's forward copy, whose gradient reads the
// clones): the linear and the SwiGLU are fused, without biases.
// CHECK-LABEL: func.func @forward_only
// CHECK: %[[W:.*]] = mt.concat_rows %{{.*}}, %{{.*}} : (tensor<128x64xf32>, tensor<128x64xf32>) -> tensor<256x64xf32>
// CHECK: %[[GU:.*]] = mt.linear %arg0, %[[W]] : (tensor<2x4x64xf32>, tensor<256x64xf32>) -> tensor<2x4x256xf32>
// CHECK: mt.chunked_swiglu %[[GU]]
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
func.func @forward_only(%x: tensor<2x4x64xf32>) -> tensor<2x4x128xf32> {
  %wg = mt.weight @gate_w : tensor<128x64xf32>
  %wu = mt.weight @up_w : tensor<128x64xf32>
  %g = mt.linear %x, %wg : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %u = mt.linear %x, %wu : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u : tensor<2x4x128xf32>
  return %a : tensor<2x4x128xf32>
}

// -----

// The gate projection's output is read by something else, the two
// projections read different inputs, or only one has a bias: nothing is
// fused.
// CHECK-LABEL: func.func @other_reader
// CHECK-NOT: mt.concat_rows
// CHECK: mt.swiglu %
// CHECK: mt.swiglu %
// CHECK: mt.swiglu %
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_b : tensor<128xf32> init(zeros)
func.func @other_reader(%x: tensor<2x4x64xf32>, %y: tensor<2x4x64xf32>, %b: tensor<128xf32>)
    -> (tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>) {
  %wg = mt.weight @gate_w : tensor<128x64xf32>
  %wu = mt.weight @up_w : tensor<128x64xf32>
  %g = mt.linear %x, %wg : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %u = mt.linear %x, %wu : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u : tensor<2x4x128xf32>
  %g2 = mt.linear %x, %wg : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %u2 = mt.linear %y, %wu : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a2 = mt.swiglu %g2, %u2 : tensor<2x4x128xf32>
  %bw = mt.weight @up_b : tensor<128xf32>
  %g3 = mt.linear %x, %wg : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %u3 = mt.linear %x, %wu, %bw : (tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128xf32>) -> tensor<2x4x128xf32>
  %a3 = mt.swiglu %g3, %u3 : tensor<2x4x128xf32>
  return %a, %g, %a2, %a3 : tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>
}

// -----

// The input gradients are not summed by one add (one is returned as it is):
// the backward cannot be one GEMM, so the pair stays unfused, forward too.
// CHECK-LABEL: func.func @unsummed_input_grads
// CHECK-NOT: mt.concat_rows
// CHECK: mt.swiglu_grad
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
func.func @unsummed_input_grads(%x: tensor<2x4x64xf32>, %da: tensor<2x4x128xf32>)
    -> (tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>) {
  %wg = mt.weight @gate_w : tensor<128x64xf32>
  %wu = mt.weight @up_w : tensor<128x64xf32>
  %g = mt.linear %x, %wg : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %u = mt.linear %x, %wu : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u : tensor<2x4x128xf32>
  %dg, %du = mt.swiglu_grad %g, %u, %da {mt.backward} : (tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>) -> (tensor<2x4x128xf32>, tensor<2x4x128xf32>)
  %dxu = mt.linear_grad_input %du, %wu {mt.backward} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwu = mt.linear_grad_weight %x, %du {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  %dxg = mt.linear_grad_input %dg, %wg {mt.backward} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwg = mt.linear_grad_weight %x, %dg {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  return %a, %dxu, %dxg, %dwg, %dwu : tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>
}

// -----

// The weight gradients read a recomputed copy of the input (selective
// recompute of the norm before the MLP, mt-recompute): still one GEMM, over
// the copy, so that a recompute does not change which GEMMs run.
// CHECK-LABEL: func.func @recomputed_input
// CHECK: mt.chunked_swiglu_grad
// CHECK: mt.linear_grad_weight %arg1, %{{.*}} : (tensor<2x4x64xf32>, tensor<2x4x256xf32>) -> tensor<256x64xf32>
// CHECK-NOT: mt.swiglu_grad
// OFF-LABEL: func.func @recomputed_input
// OFF: mt.swiglu_grad
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
func.func @recomputed_input(%x: tensor<2x4x64xf32>, %xr: tensor<2x4x64xf32>, %da: tensor<2x4x128xf32>)
    -> (tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>) {
  %wg = mt.weight @gate_w : tensor<128x64xf32>
  %g = mt.linear %x, %wg : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %wu = mt.weight @up_w : tensor<128x64xf32>
  %u = mt.linear %x, %wu : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u : tensor<2x4x128xf32>
  %dg, %du = mt.swiglu_grad %g, %u, %da {mt.backward} : (tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>) -> (tensor<2x4x128xf32>, tensor<2x4x128xf32>)
  %dxu = mt.linear_grad_input %du, %wu {mt.backward} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwu = mt.linear_grad_weight %xr, %du {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  %dxg = mt.linear_grad_input %dg, %wg {mt.backward} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwg = mt.linear_grad_weight %xr, %dg {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  %dx = mt.add %dxu, %dxg {mt.backward} : tensor<2x4x64xf32>
  return %a, %dx, %dwg, %dwu : tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>
}

// -----

// The two weight gradients read different inputs: one GEMM cannot compute
// both, nothing is fused.
// CHECK-LABEL: func.func @different_grad_inputs
// CHECK-NOT: mt.chunked_swiglu
// CHECK: mt.swiglu_grad
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
func.func @different_grad_inputs(%x: tensor<2x4x64xf32>, %xr: tensor<2x4x64xf32>, %da: tensor<2x4x128xf32>)
    -> (tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>) {
  %wg = mt.weight @gate_w : tensor<128x64xf32>
  %g = mt.linear %x, %wg : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %wu = mt.weight @up_w : tensor<128x64xf32>
  %u = mt.linear %x, %wu : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u : tensor<2x4x128xf32>
  %dg, %du = mt.swiglu_grad %g, %u, %da {mt.backward} : (tensor<2x4x128xf32>, tensor<2x4x128xf32>, tensor<2x4x128xf32>) -> (tensor<2x4x128xf32>, tensor<2x4x128xf32>)
  %dxu = mt.linear_grad_input %du, %wu {mt.backward} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwu = mt.linear_grad_weight %xr, %du {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  %dxg = mt.linear_grad_input %dg, %wg {mt.backward} : (tensor<2x4x128xf32>, tensor<128x64xf32>) -> tensor<2x4x64xf32>
  %dwg = mt.linear_grad_weight %x, %dg {mt.backward} : (tensor<2x4x64xf32>, tensor<2x4x128xf32>) -> tensor<128x64xf32>
  %dx = mt.add %dxu, %dxg {mt.backward} : tensor<2x4x64xf32>
  return %a, %dx, %dwg, %dwu : tensor<2x4x128xf32>, tensor<2x4x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>
}
