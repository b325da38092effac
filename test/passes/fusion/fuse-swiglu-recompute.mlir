// RUN: mtc-opt %s -split-input-file -mt-fuse | FileCheck %s
// RUN: mtc-opt %s -split-input-file '-mt-fuse=swiglu-recompute=false' | FileCheck %s --check-prefix=OFF

// The packed SwiGLU's output, read backward only by the down projection's
// weight gradient: the gradient recomputes it, and the weight gradient
// moves after the gradient to read the recomputed copy. The forward's
// output is then read by the forward alone.
// CHECK-LABEL: func.func @mlp
// CHECK: %[[A:.*]] = mt.chunked_swiglu %arg0 {mt.layer = 0 : i64}
// CHECK: %[[Y:.*]] = mt.linear %[[A]], %[[WD:.*]] {mt.layer = 0 : i64}
// CHECK: %[[DA:.*]] = mt.linear_grad_input %arg1, %[[WD]]
// CHECK-NOT: mt.linear_grad_weight
// CHECK: %[[DGU:.*]], %[[A2:.*]] = mt.chunked_swiglu_recompute_grad %arg0, %[[DA]] {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<2x4x128xf32>) -> (tensor<2x4x256xf32>, tensor<2x4x128xf32>)
// CHECK-NEXT: %[[DW:.*]] = mt.linear_grad_weight %[[A2]], %arg1 {mt.backward, mt.layer = 0 : i64}
// CHECK-NOT: mt.chunked_swiglu_grad
// CHECK: return %[[Y]], %[[DGU]], %[[DW]]
// OFF-LABEL: func.func @mlp
// OFF: %[[A:.*]] = mt.chunked_swiglu %arg0
// OFF: mt.linear_grad_weight %[[A]], %arg1
// OFF-NEXT: mt.chunked_swiglu_grad %arg0
// OFF-NOT: recompute_grad
mt.param @down_w : tensor<64x128xf32> init(normal, std = 2.0e-02)
func.func @mlp(%gu: tensor<2x4x256xf32>, %dy: tensor<2x4x64xf32>)
    -> (tensor<2x4x64xf32>, tensor<2x4x256xf32>, tensor<64x128xf32>) {
  %a = mt.chunked_swiglu %gu {mt.layer = 0 : i64} : (tensor<2x4x256xf32>) -> tensor<2x4x128xf32>
  %wd = mt.weight @down_w {mt.layer = 0 : i64} : tensor<64x128xf32>
  %y = mt.linear %a, %wd {mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<64x128xf32>) -> tensor<2x4x64xf32>
  %da = mt.linear_grad_input %dy, %wd {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<64x128xf32>) -> tensor<2x4x128xf32>
  %dw = mt.linear_grad_weight %a, %dy {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<2x4x64xf32>) -> tensor<64x128xf32>
  %dgu = mt.chunked_swiglu_grad %gu, %da {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<2x4x128xf32>) -> tensor<2x4x256xf32>
  return %y, %dgu, %dw : tensor<2x4x64xf32>, tensor<2x4x256xf32>, tensor<64x128xf32>
}

// -----

// Another backward reader of the output keeps it alive anyway: unchanged.
// CHECK-LABEL: func.func @other_reader
// CHECK: mt.linear_grad_weight %[[A:.*]], %arg1
// CHECK: mt.chunked_swiglu_grad
// CHECK-NOT: recompute_grad
mt.param @down_w : tensor<64x128xf32> init(normal, std = 2.0e-02)
func.func @other_reader(%gu: tensor<2x4x256xf32>, %dy: tensor<2x4x64xf32>)
    -> (tensor<2x4x256xf32>, tensor<64x128xf32>, tensor<2x4x128xf32>) {
  %a = mt.chunked_swiglu %gu {mt.layer = 0 : i64} : (tensor<2x4x256xf32>) -> tensor<2x4x128xf32>
  %wd = mt.weight @down_w {mt.layer = 0 : i64} : tensor<64x128xf32>
  %da = mt.linear_grad_input %dy, %wd {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<64x128xf32>) -> tensor<2x4x128xf32>
  %dw = mt.linear_grad_weight %a, %dy {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<2x4x64xf32>) -> tensor<64x128xf32>
  %dgu = mt.chunked_swiglu_grad %gu, %da {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<2x4x128xf32>) -> tensor<2x4x256xf32>
  %s = mt.add %a, %da {mt.backward} : tensor<2x4x128xf32>
  return %dgu, %dw, %s : tensor<2x4x256xf32>, tensor<64x128xf32>, tensor<2x4x128xf32>
}

// -----

// A recomputed SwiGLU (mt-recompute's clone) is the recompute already.
// CHECK-LABEL: func.func @recomputed
// CHECK: mt.chunked_swiglu %arg0 {mt.layer = 0 : i64, mt.recompute}
// CHECK: mt.chunked_swiglu_grad
// CHECK-NOT: recompute_grad
mt.param @down_w : tensor<64x128xf32> init(normal, std = 2.0e-02)
func.func @recomputed(%gu: tensor<2x4x256xf32>, %dy: tensor<2x4x64xf32>, %da: tensor<2x4x128xf32>)
    -> (tensor<2x4x256xf32>, tensor<64x128xf32>) {
  %a = mt.chunked_swiglu %gu {mt.layer = 0 : i64, mt.recompute} : (tensor<2x4x256xf32>) -> tensor<2x4x128xf32>
  %dw = mt.linear_grad_weight %a, %dy {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<2x4x64xf32>) -> tensor<64x128xf32>
  %dgu = mt.chunked_swiglu_grad %gu, %da {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<2x4x128xf32>) -> tensor<2x4x256xf32>
  return %dgu, %dw : tensor<2x4x256xf32>, tensor<64x128xf32>
}

// -----

// The weight gradient is read before the gradient (by an add of its
// terms): moving it down would break that reader, so nothing changes.
// CHECK-LABEL: func.func @read_early
// CHECK: mt.linear_grad_weight
// CHECK: mt.add
// CHECK: mt.chunked_swiglu_grad
// CHECK-NOT: recompute_grad
mt.param @down_w : tensor<64x128xf32> init(normal, std = 2.0e-02)
func.func @read_early(%gu: tensor<2x4x256xf32>, %dy: tensor<2x4x64xf32>, %da: tensor<2x4x128xf32>,
                      %dw0: tensor<64x128xf32>)
    -> (tensor<2x4x256xf32>, tensor<64x128xf32>) {
  %a = mt.chunked_swiglu %gu {mt.layer = 0 : i64} : (tensor<2x4x256xf32>) -> tensor<2x4x128xf32>
  %dw = mt.linear_grad_weight %a, %dy {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<2x4x64xf32>) -> tensor<64x128xf32>
  %sum = mt.add %dw, %dw0 {mt.backward} : tensor<64x128xf32>
  %dgu = mt.chunked_swiglu_grad %gu, %da {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<2x4x128xf32>) -> tensor<2x4x256xf32>
  return %dgu, %sum : tensor<2x4x256xf32>, tensor<64x128xf32>
}

// -----

// A weight gradient after the gradient stays where it is and reads the
// recomputed output (its dy may be made between the two).
// CHECK-LABEL: func.func @after
// CHECK: %[[DGU:.*]], %[[A2:.*]] = mt.chunked_swiglu_recompute_grad %arg0, %arg2
// CHECK-NEXT: %[[DY:.*]] = mt.scale %arg1
// CHECK-NEXT: mt.linear_grad_weight %[[A2]], %[[DY]]
mt.param @down_w : tensor<64x128xf32> init(normal, std = 2.0e-02)
func.func @after(%gu: tensor<2x4x256xf32>, %dy0: tensor<2x4x64xf32>, %da: tensor<2x4x128xf32>)
    -> (tensor<2x4x256xf32>, tensor<64x128xf32>) {
  %a = mt.chunked_swiglu %gu {mt.layer = 0 : i64} : (tensor<2x4x256xf32>) -> tensor<2x4x128xf32>
  %dgu = mt.chunked_swiglu_grad %gu, %da {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x256xf32>, tensor<2x4x128xf32>) -> tensor<2x4x256xf32>
  %dy = mt.scale %dy0 {factor = 2.0 : f64, mt.backward} : tensor<2x4x64xf32>
  %dw = mt.linear_grad_weight %a, %dy {mt.backward, mt.layer = 0 : i64} : (tensor<2x4x128xf32>, tensor<2x4x64xf32>) -> tensor<64x128xf32>
  return %dgu, %dw : tensor<2x4x256xf32>, tensor<64x128xf32>
}
