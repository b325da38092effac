// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=full method=uniform num-layers=1' | FileCheck %s --check-prefix=FULL
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=full method=uniform num-layers=2' | FileCheck %s --check-prefix=UNIT2
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=full method=uniform num-layers=2 block-layers=1,1' | FileCheck %s --check-prefix=CHUNKS
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=full method=block num-layers=1' | FileCheck %s --check-prefix=BLOCK
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=core_attn' | FileCheck %s --check-prefix=ATTN
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=core_attn' | grep -c 'mt.recompute' | FileCheck %s --check-prefix=TWO
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=layernorm' | FileCheck %s --check-prefix=NORM
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=layernorm' | grep -c 'mt.recompute' | FileCheck %s --check-prefix=FOUR
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=mlp' | FileCheck %s --check-prefix=MLP
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=mlp' | grep -c 'mt.recompute' | FileCheck %s --check-prefix=FOUR
// RUN: mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=moe,moe_act' | FileCheck %s --check-prefix=NONE
// RUN: mtc-opt %s -mt-autodiff | FileCheck %s --check-prefix=NONE
// RUN: not mtc-opt %s -mt-autodiff '-mt-recompute=granularity=partial' 2>&1 | FileCheck %s --check-prefix=ERR1
// RUN: not mtc-opt %s -mt-autodiff '-mt-recompute=granularity=full method=even' 2>&1 | FileCheck %s --check-prefix=ERR2
// RUN: not mtc-opt %s -mt-autodiff '-mt-recompute=granularity=selective modules=attn' 2>&1 | FileCheck %s --check-prefix=ERR3
// RUN: not mtc-opt %s -mt-autodiff '-mt-recompute=granularity=full block-layers=1' 2>&1 | FileCheck %s --check-prefix=ERR4
// RUN: not mtc-opt %s -mt-autodiff '-mt-recompute=granularity=full num-layers=0' 2>&1 | FileCheck %s --check-prefix=ERR5
// RUN: not mtc-opt %s '-mt-recompute=granularity=full' 2>&1 | FileCheck %s --check-prefix=ERR6

// Two pre-norm decoder layers (norm, q, attention, o, residual, norm, up,
// SwiGLU, down, residual) between an embedding and a tied head. Clones are
// the same ops with the same operands, marked mt.backward and mt.recompute,
// placed before the first backward op that reads them.
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @in0 : tensor<8xf32> init(ones)
mt.param @q0 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @o0 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @post0 : tensor<8xf32> init(ones)
mt.param @up0 : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @down0 : tensor<8x16xf32> init(normal, std = 0.02)
mt.param @in1 : tensor<8xf32> init(ones)
mt.param @q1 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @o1 : tensor<8x8xf32> init(normal, std = 0.02)
mt.param @post1 : tensor<8xf32> init(ones)
mt.param @up1 : tensor<16x8xf32> init(normal, std = 0.02)
mt.param @down1 : tensor<8x16xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x0 = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  %win0 = mt.weight @in0 : tensor<8xf32>
  %n0 = mt.rmsnorm %x0, %win0 {eps = 1.0e-6 : f64, mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %wq0 = mt.weight @q0 : tensor<8x8xf32>
  %q0 = mt.linear %n0, %wq0 {mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %q40 = mt.reshape %q0 {mt.layer = 0 : i64} : tensor<2x4x8xf32> -> tensor<2x4x4x2xf32>
  %a0 = mt.attention %q40, %q40, %q40 {num_heads = 4 : i64, num_kv_heads = 4 : i64, head_dim = 2 : i64, scale = 0.7 : f64, mt.layer = 0 : i64}
      : (tensor<2x4x4x2xf32>, tensor<2x4x4x2xf32>, tensor<2x4x4x2xf32>) -> tensor<2x4x4x2xf32>
  %a30 = mt.reshape %a0 {mt.layer = 0 : i64} : tensor<2x4x4x2xf32> -> tensor<2x4x8xf32>
  %wo0 = mt.weight @o0 : tensor<8x8xf32>
  %o0 = mt.linear %a30, %wo0 {mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %h0 = mt.add %x0, %o0 {mt.layer = 0 : i64} : tensor<2x4x8xf32>
  %wpost0 = mt.weight @post0 : tensor<8xf32>
  %m0 = mt.rmsnorm %h0, %wpost0 {eps = 1.0e-6 : f64, mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %wu0 = mt.weight @up0 : tensor<16x8xf32>
  %u0 = mt.linear %m0, %wu0 {mt.layer = 0 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %g0 = mt.swiglu %u0, %u0 {mt.layer = 0 : i64} : tensor<2x4x16xf32>
  %wd0 = mt.weight @down0 : tensor<8x16xf32>
  %d0 = mt.linear %g0, %wd0 {mt.layer = 0 : i64} : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %x1 = mt.add %h0, %d0 {mt.layer = 0 : i64} : tensor<2x4x8xf32>
  %win1 = mt.weight @in1 : tensor<8xf32>
  %n1 = mt.rmsnorm %x1, %win1 {eps = 1.0e-6 : f64, mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %wq1 = mt.weight @q1 : tensor<8x8xf32>
  %q1 = mt.linear %n1, %wq1 {mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %q41 = mt.reshape %q1 {mt.layer = 1 : i64} : tensor<2x4x8xf32> -> tensor<2x4x4x2xf32>
  %a1 = mt.attention %q41, %q41, %q41 {num_heads = 4 : i64, num_kv_heads = 4 : i64, head_dim = 2 : i64, scale = 0.7 : f64, mt.layer = 1 : i64}
      : (tensor<2x4x4x2xf32>, tensor<2x4x4x2xf32>, tensor<2x4x4x2xf32>) -> tensor<2x4x4x2xf32>
  %a31 = mt.reshape %a1 {mt.layer = 1 : i64} : tensor<2x4x4x2xf32> -> tensor<2x4x8xf32>
  %wo1 = mt.weight @o1 : tensor<8x8xf32>
  %o1 = mt.linear %a31, %wo1 {mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %h1 = mt.add %x1, %o1 {mt.layer = 1 : i64} : tensor<2x4x8xf32>
  %wpost1 = mt.weight @post1 : tensor<8xf32>
  %m1 = mt.rmsnorm %h1, %wpost1 {eps = 1.0e-6 : f64, mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %wu1 = mt.weight @up1 : tensor<16x8xf32>
  %u1 = mt.linear %m1, %wu1 {mt.layer = 1 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %g1 = mt.swiglu %u1, %u1 {mt.layer = 1 : i64} : tensor<2x4x16xf32>
  %wd1 = mt.weight @down1 : tensor<8x16xf32>
  %d1 = mt.linear %g1, %wd1 {mt.layer = 1 : i64} : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %x2 = mt.add %h1, %d1 {mt.layer = 1 : i64} : tensor<2x4x8xf32>
  %logits = mt.linear %x2, %e : (tensor<2x4x8xf32>, tensor<32x8xf32>) -> tensor<2x4x32xf32>
  %loss = mt.cross_entropy %logits, %labels, %mask : (tensor<2x4x32xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// full, uniform, 1 layer a unit: each layer is recomputed from its input
// (%x1 for layer 1, kept from the forward), before its own backward; the
// backward reads the clones, never the forward's intermediates.
// FULL: mt.rmsnorm %[[X1:[0-9]+]], %{{[0-9]+}} {eps = {{.*}}, mt.layer = 1 : i64}
// FULL: %[[G1:[0-9]+]] = mt.swiglu %{{.*}} {mt.layer = 1 : i64}
// FULL: mt.cross_entropy_grad
// FULL-NOT: mt.layer = 0 : i64, mt.recompute
// FULL: %[[N1R:[0-9]+]] = mt.rmsnorm %[[X1]], %{{.*}}mt.backward, mt.layer = 1 : i64, mt.recompute}
// FULL: %[[G1R:[0-9]+]] = mt.swiglu %{{.*}}mt.backward, mt.layer = 1 : i64, mt.recompute}
// FULL-NEXT: mt.linear_grad_weight %[[G1R]],
// FULL-NOT: mt.linear_grad_weight %[[G1]],
// FULL: mt.linear_grad_weight %[[N1R]],
// FULL: mt.rmsnorm_grad %[[X1]],
// FULL: mt.rmsnorm %{{.*}}mt.backward, mt.layer = 0 : i64, mt.recompute}
// FULL: mt.embedding_grad

// Two layers a unit: only the unit's input (the embedding) is kept; layer
// 0's output is recomputed too, with the whole unit, before the first
// backward read.
// UNIT2: %[[X0:[0-9]+]] = mt.embedding
// UNIT2: mt.cross_entropy_grad
// UNIT2: mt.rmsnorm %[[X0]], %{{.*}}mt.layer = 0 : i64, mt.recompute}
// UNIT2: %{{[0-9]+}} = mt.add %{{.*}}mt.layer = 0 : i64, mt.recompute}
// UNIT2: mt.rmsnorm %[[X1R:[0-9]+]], %{{.*}}mt.layer = 1 : i64, mt.recompute}
// UNIT2: mt.swiglu_grad {{.*}}mt.layer = 1 : i64}
// UNIT2: mt.rmsnorm_grad %[[X1R]],
// UNIT2-NOT: mt.recompute
// UNIT2: mt.embedding_grad

// A unit never spans two pipeline chunks: with one layer a chunk, two
// layers a unit are units of one layer.
// CHUNKS: mt.cross_entropy_grad
// CHUNKS-NOT: mt.layer = 0 : i64, mt.recompute
// CHUNKS: mt.swiglu_grad {{.*}}mt.layer = 1 : i64}
// CHUNKS: mt.rmsnorm %{{.*}}mt.layer = 0 : i64, mt.recompute}

// block: the first layer of the chunk only.
// BLOCK-NOT: mt.layer = 1 : i64, mt.recompute
// BLOCK: mt.rmsnorm %{{.*}}mt.layer = 0 : i64, mt.recompute}

// core_attn: the attention alone; its backward reads the clone (and its
// log-sum-exp), o_proj's the forward's output, which it keeps.
// ATTN: %[[A1:[0-9]+]] = mt.attention {{.*}}mt.layer = 1 : i64
// ATTN-NEXT: %[[R1:[0-9]+]] = mt.reshape %[[A1]]
// ATTN: mt.cross_entropy_grad
// ATTN: mt.linear_grad_weight %[[R1]],
// ATTN: %[[A1R:[0-9]+]] = mt.attention {{.*}}mt.backward, mt.layer = 1 : i64, mt.recompute
// ATTN-NEXT: mt.attention_grad %{{.*}}, %{{.*}}, %{{.*}}, %[[A1R]],
// TWO: 2

// layernorm discards the norms' outputs: the linears' weight gradients read
// recomputed ones.
// NORM: mt.rmsnorm %[[X1:[0-9]+]], %{{[0-9]+}} {eps = {{.*}}, mt.layer = 1 : i64}
// NORM: mt.cross_entropy_grad
// NORM: %[[N1R:[0-9]+]] = mt.rmsnorm %[[X1]], %{{.*}}mt.backward, mt.layer = 1 : i64, mt.recompute}
// NORM-NEXT: mt.linear_grad_weight %[[N1R]],
// FOUR: 4

// mlp: up and SwiGLU (down's output is read by no backward op); up's weight
// gradient reads the kept norm output.
// MLP: mt.weight @post1
// MLP-NEXT: %[[M1:[0-9]+]] = mt.rmsnorm
// MLP: mt.cross_entropy_grad
// MLP: %[[U1R:[0-9]+]] = mt.linear %[[M1]], %{{.*}}mt.recompute}
// MLP-NEXT: %[[G1R:[0-9]+]] = mt.swiglu %[[U1R]], %[[U1R]] {mt.backward, mt.layer = 1 : i64, mt.recompute}
// MLP-NEXT: mt.linear_grad_weight %[[G1R]],
// MLP: mt.linear_grad_weight %[[M1]],

// A dense model has no MoE module; no option: no clone.
// NONE-NOT: mt.recompute

// ERR1: error: mt-recompute: granularity 'partial' is not full or selective
// ERR2: error: mt-recompute: method 'even' is not uniform or block
// ERR3: error: mt-recompute: unknown module 'attn' (known: core_attn, mlp, layernorm, moe_act, moe)
// ERR4: error: mt-recompute: block-layers must split the 2 layers into chunks of at least one layer, got a sum of 1
// ERR5: error: mt-recompute: num-layers must be >= 1, got 0
// ERR6: error: mt-recompute expects @forward_backward (run mt-autodiff first)
