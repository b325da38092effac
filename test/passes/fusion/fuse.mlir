// RUN: mtc-opt %s -split-input-file -mt-fuse | FileCheck %s
// RUN: mtc-opt %s -split-input-file '-mt-fuse=add-rmsnorm=false' | FileCheck %s --check-prefix=NOFWD
// RUN: mtc-opt %s -split-input-file '-mt-fuse=add-rmsnorm-grad=false' | FileCheck %s --check-prefix=NOBWD

// A residual add whose sum is normalized and read again later: one
// add_rmsnorm at the norm, its sum read where the add's was.
// CHECK-LABEL: func.func @add_then_norm
// CHECK-NOT: mt.add {{%}}
// CHECK: %[[H:.*]], %[[Y:.*]] = mt.add_rmsnorm %arg0, %arg1, %arg2 {eps = 1.000000e-05 : f64, mt.layer = 1 : i64}
// CHECK: mt.linear %[[Y]]
// CHECK: mt.add %[[H]], %{{.*}}
// NOFWD-LABEL: func.func @add_then_norm
// NOFWD: mt.add %arg0, %arg1
// NOFWD: mt.rmsnorm
// NOBWD-LABEL: func.func @add_then_norm
// NOBWD: mt.add_rmsnorm
func.func @add_then_norm(%x: tensor<2x4x8xf32>, %r: tensor<2x4x8xf32>, %w: tensor<8xf32>,
                         %wl: tensor<8x8xf32>) -> tensor<2x4x8xf32> {
  %h = mt.add %x, %r {mt.layer = 0 : i64} : tensor<2x4x8xf32>
  %y = mt.rmsnorm %h, %w {eps = 1.0e-5 : f64, mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %l = mt.linear %y, %wl : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %o = mt.add %h, %l : tensor<2x4x8xf32>
  return %o : tensor<2x4x8xf32>
}

// -----

// The sum is read between the add and the norm: a fused op at the norm
// would come too late for that reader.
// CHECK-LABEL: func.func @read_before_norm
// CHECK: mt.add
// CHECK: mt.rmsnorm
// CHECK-NOT: mt.add_rmsnorm
func.func @read_before_norm(%x: tensor<2x4x8xf32>, %r: tensor<2x4x8xf32>, %w: tensor<8xf32>,
                            %wl: tensor<8x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %h = mt.add %x, %r : tensor<2x4x8xf32>
  %l = mt.linear %h, %wl : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %y = mt.rmsnorm %h, %w {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  return %l, %y : tensor<2x4x8xf32>, tensor<2x4x8xf32>
}

// -----

// Different virtual stages, or a recomputed norm over a forward add: each
// stays as it is.
// CHECK-LABEL: func.func @other_place
// CHECK-NOT: mt.add_rmsnorm
func.func @other_place(%x: tensor<2x4x8xf32>, %r: tensor<2x4x8xf32>, %w: tensor<8xf32>)
    -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %h = mt.add %x, %r {mt.virtual_stage = 0 : i64} : tensor<2x4x8xf32>
  %y = mt.rmsnorm %h, %w {eps = 1.0e-5 : f64, mt.virtual_stage = 1 : i64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %h2 = mt.add %x, %r : tensor<2x4x8xf32>
  %y2 = mt.rmsnorm %h2, %w {eps = 1.0e-5 : f64, mt.backward, mt.recompute} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  return %y, %y2 : tensor<2x4x8xf32>, tensor<2x4x8xf32>
}

// -----

// The norm's input gradient added to the residual gradient %g, which the
// layer's other branch reads too: one add_rmsnorm_grad at the add.
// CHECK-LABEL: func.func @norm_grad_then_add
// CHECK-NOT: mt.rmsnorm_grad
// CHECK: %[[DX:.*]], %[[DW:.*]] = mt.add_rmsnorm_grad %arg0, %arg1, %arg2, %arg3 {eps = 1.000000e-05 : f64, mt.backward, mt.layer = 1 : i64}
// CHECK-NOT: mt.add {{%}}
// CHECK: return %[[DX]], %[[DW]], %{{.*}}
// NOFWD-LABEL: func.func @norm_grad_then_add
// NOFWD: mt.add_rmsnorm_grad
// NOBWD-LABEL: func.func @norm_grad_then_add
// NOBWD: mt.rmsnorm_grad
// NOBWD: mt.add
func.func @norm_grad_then_add(%h: tensor<2x4x8xf32>, %w: tensor<8xf32>, %dy: tensor<2x4x8xf32>,
                              %g: tensor<2x4x8xf32>, %wl: tensor<8x8xf32>)
    -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) {
  %dx, %dw = mt.rmsnorm_grad %h, %w, %dy {eps = 1.0e-5 : f64, mt.backward, mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>)
  %other = mt.linear_grad_input %g, %wl {mt.backward} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %s = mt.add %g, %dx {mt.backward} : tensor<2x4x8xf32>
  return %s, %dw, %other : tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>
}

// -----

// %g read only by the add: the plan already accumulates the norm's dx into
// its buffer in place. And a dx read twice cannot skip memory.
// CHECK-LABEL: func.func @nothing_to_save
// CHECK-NOT: mt.add_rmsnorm_grad
func.func @nothing_to_save(%h: tensor<2x4x8xf32>, %w: tensor<8xf32>, %dy: tensor<2x4x8xf32>,
                           %g: tensor<2x4x8xf32>, %g2: tensor<2x4x8xf32>)
    -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<8xf32>) {
  %dx, %dw = mt.rmsnorm_grad %h, %w, %dy {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>)
  %s = mt.add %g, %dx : tensor<2x4x8xf32>
  %dx2, %dw2 = mt.rmsnorm_grad %h, %w, %dy {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>)
  %s2 = mt.add %g2, %dx2 : tensor<2x4x8xf32>
  %t2 = mt.add %g2, %dx2 : tensor<2x4x8xf32>
  return %s, %dw, %s2, %t2, %dw2 : tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<8xf32>
}

// -----

// The weight gradient is read before the add: it cannot move down to it.
// CHECK-LABEL: func.func @dweight_read_early
// CHECK-NOT: mt.add_rmsnorm_grad
func.func @dweight_read_early(%h: tensor<2x4x8xf32>, %w: tensor<8xf32>, %dy: tensor<2x4x8xf32>,
                              %g: tensor<2x4x8xf32>)
    -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) {
  %dx, %dw = mt.rmsnorm_grad %h, %w, %dy {eps = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>)
  %dw2 = mt.add %dw, %dw : tensor<8xf32>
  %s = mt.add %g, %dx : tensor<2x4x8xf32>
  return %s, %dw2, %g : tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>
}
