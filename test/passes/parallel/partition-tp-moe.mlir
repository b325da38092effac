// RUN: mtc-opt %s -split-input-file -mt-partition-tp -verify-diagnostics | FileCheck %s
// RUN: mtc-opt %s -split-input-file -mt-partition-tp=sequence-parallel -verify-diagnostics | FileCheck %s --check-prefix=SP

// A MoE layer under tp = 2 with expert_tensor_parallel_size 1 (MoE parallel
// folding): the router sees every token (replicated), each rank permutes,
// runs the whole experts on and un-permutes its half of the sequence.
// Without sequence parallelism the replicated tokens and their routing are
// sliced (mt.all_slice) and the output gathered back (mt.all_gather
// {slice_grad}: every rank has the whole gradient); with it, the tokens are
// already split and only the router's input is gathered.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @router : tensor<4x8xf32> init(normal, std = 0.02)
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.up" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%ids: tensor<2x4xi32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  %wr = mt.weight @router : tensor<4x8xf32>
  %w, %i, %aux, %z = mt.moe_router %x, %wr {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64}
      : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> (tensor<2x4x2xf32>, tensor<2x4x2xi32>, tensor<f32>, tensor<f32>)
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %u = mt.weight @"e.*.up" : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<4x8x6xf32>
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %u, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  %y = mt.moe_unpermute %o, %w, %r : (tensor<16x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> tensor<2x4x8xf32>
  %s = mt.add %x, %y : tensor<2x4x8xf32>
  return %aux : tensor<f32>
}
// The experts are whole (no tp sharding: mt-partition-ep lays them out).
// CHECK: mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 2.000000e-02) {grouped_experts}
// CHECK-LABEL: func.func @forward
// CHECK: %[[X:.*]] = mt.all_reduce %{{.*}} {axis = "tp"} : tensor<2x4x8xf32>
// CHECK: %[[XL:.*]] = mt.all_slice %[[X]] {axis = "tp", dim = 1 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
// CHECK: %[[W:.*]], %[[I:.*]], %[[AUX:.*]], %{{.*}} = mt.moe_router %[[X]], %{{.*}} {{.*}}: (tensor<2x4x8xf32>, tensor<4x8xf32>) -> (tensor<2x4x2xf32>, tensor<2x4x2xi32>, tensor<f32>, tensor<f32>)
// CHECK-DAG: %[[WL:.*]] = mt.all_slice %[[W]] {axis = "tp", dim = 1 : i64} : (tensor<2x4x2xf32>) -> tensor<2x2x2xf32>
// CHECK-DAG: %[[IL:.*]] = mt.all_slice %[[I]] {axis = "tp", dim = 1 : i64} : (tensor<2x4x2xi32>) -> tensor<2x2x2xi32>
// CHECK: %[[P:.*]], %[[C:.*]], %[[R:.*]] = mt.moe_permute %[[XL]], %[[WL]], %[[IL]] : (tensor<2x2x8xf32>, tensor<2x2x2xf32>, tensor<2x2x2xi32>) -> (tensor<8x8xf32>, tensor<4xi32>, tensor<2x2x2xi32>)
// The experts read whole, with no mt.tp_copy: mt-partition-ep lays them on
// @expert_mesh, whose edp (the tp ranks here) sums their gradients.
// CHECK-NOT: mt.tp_copy
// fc1_output is split along its rows (dimension 1) as the input.
// CHECK: %[[O:[^ ,]+]], %{{[^ ,]+}} = mt.moe_grouped_mlp %[[P]], %[[C]], {{.*}} : (tensor<8x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<8x8xf32>, tensor<2x8x6xf32>)
// CHECK: %[[Y:.*]] = mt.moe_unpermute %[[O]], %[[WL]], %[[R]] : (tensor<8x8xf32>, tensor<2x2x2xf32>, tensor<2x2x2xi32>) -> tensor<2x2x8xf32>
// CHECK-NEXT: %[[YW:.*]] = mt.all_gather %[[Y]] {axis = "tp", dim = 1 : i64, slice_grad} : (tensor<2x2x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT: mt.add %[[X]], %[[YW]] : tensor<2x4x8xf32>
// CHECK-NEXT: return %[[AUX]]

// SP-LABEL: func.func @forward
// SP: %[[X:.*]] = mt.reduce_scatter %{{.*}} {axis = "tp", dim = 1 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
// SP: %[[XW:.*]] = mt.all_gather %[[X]] {axis = "tp", dim = 1 : i64, slice_grad} : (tensor<2x2x8xf32>) -> tensor<2x4x8xf32>
// SP: %[[W:.*]], %[[I:.*]], %[[AUX:.*]], %{{.*}} = mt.moe_router %[[XW]], %{{.*}} {{.*}}: (tensor<2x4x8xf32>, tensor<4x8xf32>) -> (tensor<2x4x2xf32>, tensor<2x4x2xi32>, tensor<f32>, tensor<f32>)
// SP-DAG: %[[WL:.*]] = mt.all_slice %[[W]] {axis = "tp", dim = 1 : i64} : (tensor<2x4x2xf32>) -> tensor<2x2x2xf32>
// SP-DAG: %[[IL:.*]] = mt.all_slice %[[I]] {axis = "tp", dim = 1 : i64} : (tensor<2x4x2xi32>) -> tensor<2x2x2xi32>
// SP: mt.moe_permute %[[X]], %[[WL]], %[[IL]] : (tensor<2x2x8xf32>, tensor<2x2x2xf32>, tensor<2x2x2xi32>) -> (tensor<8x8xf32>, tensor<4xi32>, tensor<2x2x2xi32>)
// SP: %[[Y:.*]] = mt.moe_unpermute {{.*}} -> tensor<2x2x8xf32>
// SP-NEXT: mt.add %[[X]], %[[Y]] : tensor<2x2x8xf32>

// -----

// With ep (@expert_mesh, ep = 2) the experts are left to mt-partition-ep:
// their gradients are summed over edp, which holds the tp ranks.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.gate" : tensor<4x6x8xf32> init(normal, std = 0.02) {grouped_experts}
mt.param @"e.*.down" : tensor<4x8x6xf32> init(normal, std = 0.02) {grouped_experts}
func.func @forward(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) -> tensor<4xi32> {
  %g = mt.weight @"e.*.gate" : tensor<4x6x8xf32>
  %d = mt.weight @"e.*.down" : tensor<4x8x6xf32>
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %g, %g, %d
      : (tensor<16x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<16x8xf32>, tensor<2x16x6xf32>)
  return %c : tensor<4xi32>
}
// CHECK-LABEL: func.func @forward
// CHECK-NOT: mt.tp_copy
// CHECK: mt.moe_grouped_mlp {{.*}} : (tensor<8x8xf32>, tensor<4xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32>) -> (tensor<8x8xf32>, tensor<2x8x6xf32>)

// -----

// An expert capacity is sized by each rank's tokens in Megatron-Core: not
// built under tp.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @forward(%x: tensor<2x4x8xf32>, %w: tensor<2x4x2xf32>, %i: tensor<2x4x2xi32>) -> tensor<4xi32> {
  // expected-error @+1 {{'mt.moe_permute' op has an expert capacity (moe_expert_capacity_factor): not supported with tensor parallelism yet}}
  %p, %c, %r = mt.moe_permute %x, %w, %i {capacity = 4 : i64}
      : (tensor<2x4x8xf32>, tensor<2x4x2xf32>, tensor<2x4x2xi32>) -> (tensor<16x8xf32>, tensor<4xi32>, tensor<2x4x2xi32>)
  return %c : tensor<4xi32>
}

// -----

// The shared expert (Qwen2-MoE): its MLP column- then row-parallel, its
// gate projection onto one logit per token replicated (Megatron-Core keeps
// the gate weight whole) and the gate applied per token. With sequence
// parallelism the gate projects this rank's tokens, and its weight's
// gradient is summed over tp (mt.tp_copy).
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @emb : tensor<32x8xf32> init(normal, std = 0.02)
mt.param @up : tensor<6x8xf32> init(normal, std = 0.02)
mt.param @down : tensor<8x6xf32> init(normal, std = 0.02)
mt.param @gate : tensor<1x8xf32> init(normal, std = 0.02)
mt.param @router : tensor<4x8xf32> init(normal, std = 0.02)
func.func @forward(%ids: tensor<2x4xi32>) -> tensor<f32> {
  %e = mt.weight @emb : tensor<32x8xf32>
  %x = mt.embedding %ids, %e : (tensor<2x4xi32>, tensor<32x8xf32>) -> tensor<2x4x8xf32>
  %wu = mt.weight @up : tensor<6x8xf32>
  %h = mt.linear %x, %wu : (tensor<2x4x8xf32>, tensor<6x8xf32>) -> tensor<2x4x6xf32>
  %wd = mt.weight @down : tensor<8x6xf32>
  %shared = mt.linear %h, %wd : (tensor<2x4x6xf32>, tensor<8x6xf32>) -> tensor<2x4x8xf32>
  %wg = mt.weight @gate : tensor<1x8xf32>
  %logit = mt.linear %x, %wg : (tensor<2x4x8xf32>, tensor<1x8xf32>) -> tensor<2x4x1xf32>
  %y = mt.sigmoid_gate %logit, %shared : (tensor<2x4x1xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  // The next layer's router: a scalar to return.
  %wr = mt.weight @router : tensor<4x8xf32>
  %w, %i, %aux, %z = mt.moe_router %y, %wr {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64}
      : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> (tensor<2x4x2xf32>, tensor<2x4x2xi32>, tensor<f32>, tensor<f32>)
  return %aux : tensor<f32>
}
// CHECK: mt.param @gate : tensor<1x8xf32> init(normal, std = 2.000000e-02){{$}}
// CHECK-LABEL: func.func @forward
// CHECK: %[[X:.*]] = mt.all_reduce %{{.*}} {axis = "tp"} : tensor<2x4x8xf32>
// CHECK: mt.linear %{{.*}}, %{{.*}} : (tensor<2x4x8xf32>, tensor<3x8xf32>) -> tensor<2x4x3xf32>
// CHECK: %[[S:.*]] = mt.all_reduce %{{.*}} {axis = "tp"} : tensor<2x4x8xf32>
// CHECK: %[[WG:.*]] = mt.weight @gate : tensor<1x8xf32>
// CHECK-NOT: mt.tp_copy
// CHECK: %[[L:.*]] = mt.linear %[[X]], %[[WG]] : (tensor<2x4x8xf32>, tensor<1x8xf32>) -> tensor<2x4x1xf32>
// CHECK: mt.sigmoid_gate %[[L]], %[[S]] : (tensor<2x4x1xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// SP-LABEL: func.func @forward
// SP: %[[X:.*]] = mt.reduce_scatter %{{.*}} {axis = "tp", dim = 1 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
// SP: %[[S:.*]] = mt.reduce_scatter %{{.*}} {axis = "tp", dim = 1 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
// SP: %[[WG:.*]] = mt.weight @gate : tensor<1x8xf32>
// SP: %[[C:.*]] = mt.tp_copy %[[WG]] {axis = "tp"} : tensor<1x8xf32>
// SP: %[[L:.*]] = mt.linear %[[X]], %[[C]] : (tensor<2x2x8xf32>, tensor<1x8xf32>) -> tensor<2x2x1xf32>
// SP: mt.sigmoid_gate %[[L]], %[[S]] : (tensor<2x2x1xf32>, tensor<2x2x8xf32>) -> tensor<2x2x8xf32>
