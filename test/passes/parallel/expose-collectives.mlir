// The mesh sizes come from each module's shard.grid @mesh: tp 2, and pp 2
// (CHECK) or 1 (PP1) by the substitution of @PP@.
// RUN: sed -e 's/@PP@/2/' %s | mtc-opt -split-input-file -mt-expose-collectives -verify-diagnostics | FileCheck %s
// RUN: sed -e 's/@PP@/1/' %s | mtc-opt -split-input-file -mt-expose-collectives -verify-diagnostics | FileCheck %s --check-prefix=PP1

// A vocab-parallel cross-entropy and its gradient: local steps with the
// all-reduces between them; the backward reads the forward's reduced rows.
// CHECK-LABEL: func.func @forward_backward(
// CHECK-SAME: %[[L:[^:]*]]: tensor<2x4x16xf32>, %[[Y:[^:]*]]: tensor<2x4xi32>, %[[M:[^:]*]]: tensor<2x4xf32>, %[[D:[^:]*]]: tensor<f32>
// CHECK: %[[LMAX:.*]] = mt.vocab_parallel_logits_max %[[L]] {axis = "tp", mt.layer = 3 : i64, valid_vocab = 30 : i64} : (tensor<2x4x16xf32>) -> tensor<2x4xf32>
// CHECK: %[[MAX:.*]] = mt.all_reduce %[[LMAX]] {axis = "tp", mt.layer = 3 : i64, reduce = "max"} : tensor<2x4xf32>
// CHECK: %[[P0:.*]], %[[S0:.*]] = mt.vocab_parallel_predicted_logits %[[L]], %[[MAX]], %[[Y]] {axis = "tp", mt.layer = 3 : i64, valid_vocab = 30 : i64}
// CHECK: %[[PRED:.*]] = mt.all_reduce %[[P0]] {axis = "tp", mt.layer = 3 : i64} : tensor<2x4xf32>
// CHECK: %[[SUM:.*]] = mt.all_reduce %[[S0]] {axis = "tp", mt.layer = 3 : i64} : tensor<2x4xf32>
// CHECK: %[[LOSS:.*]] = mt.cross_entropy_loss %[[MAX]], %[[PRED]], %[[SUM]], %[[M]] {mt.layer = 3 : i64}
// CHECK-NOT: mt.all_reduce
// CHECK: %[[G:.*]] = mt.vocab_parallel_cross_entropy_grad %[[L]], %[[Y]], %[[M]], %[[MAX]], %[[SUM]], %[[D]] {axis = "tp", mt.backward, valid_vocab = 30 : i64}
// CHECK: return %[[LOSS]], %[[G]]
// CHECK-NOT: mt.cross_entropy
shard.grid @mesh(shape = @PP@x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @forward_backward(%logits: tensor<2x4x16xf32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>, %dloss: tensor<f32>) -> (tensor<f32>, tensor<2x4x16xf32>) {
  %loss = mt.cross_entropy %logits, %labels, %mask {vocab_parallel_axis = "tp", valid_vocab = 30 : i64, mt.layer = 3 : i64}
      : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  %d = mt.cross_entropy_grad %logits, %labels, %mask, %dloss {vocab_parallel_axis = "tp", valid_vocab = 30 : i64, mt.backward}
      : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>, tensor<f32>) -> tensor<2x4x16xf32>
  return %loss, %d : tensor<f32>, tensor<2x4x16xf32>
}

// -----

// A cross-entropy over the whole vocabulary stays one op.
// CHECK-LABEL: func.func @whole_vocabulary(
// CHECK: mt.cross_entropy %
// CHECK: mt.cross_entropy_grad %
// CHECK-NOT: mt.all_reduce
shard.grid @mesh(shape = @PP@x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @whole_vocabulary(%logits: tensor<2x4x16xf32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>, %dloss: tensor<f32>) -> (tensor<f32>, tensor<2x4x16xf32>) {
  %loss = mt.cross_entropy %logits, %labels, %mask : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>) -> tensor<f32>
  %d = mt.cross_entropy_grad %logits, %labels, %mask, %dloss : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>, tensor<f32>) -> tensor<2x4x16xf32>
  return %loss, %d : tensor<f32>, tensor<2x4x16xf32>
}

// -----

// The global norm of gradients split over tp: replicated ones count 1/tp
// each, the sum is reduced over tp and (pp > 1) over the stages.
// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[W:[^:]*]]: tensor<4x4xf32>, %[[N:[^:]*]]: tensor<4xf32>
// CHECK: %[[SQ:.*]] = mt.sum_squares %[[W]], %[[N]] {replicas = 2 : i64, replicated = array<i1: false, true>}
// CHECK: %[[TP:.*]] = mt.all_reduce %[[SQ]] {axis = "tp"} : tensor<f32>
// CHECK: %[[PP:.*]] = mt.all_reduce %[[TP]] {axis = "pp"} : tensor<f32>
// CHECK: %[[NORM:.*]] = mt.sqrt %[[PP]] : tensor<f32>
// CHECK: mt.check_finite %[[NORM]]
// PP1-LABEL: func.func @optimizer_step(
// PP1: %[[SQ:.*]] = mt.sum_squares
// PP1: %[[TP:.*]] = mt.all_reduce %[[SQ]] {axis = "tp"} : tensor<f32>
// PP1-NOT: axis = "pp"
// PP1: mt.sqrt %[[TP]]
shard.grid @mesh(shape = @PP@x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @optimizer_step(%w: tensor<4x4xf32>, %n: tensor<4xf32>) -> tensor<f32> {
  %norm = mt.global_norm %w, %n {replicated = array<i1: false, true>, sharded_axis = "tp"} : (tensor<4x4xf32>, tensor<4xf32>) -> tensor<f32>
  mt.check_finite %norm : tensor<f32>
  return %norm : tensor<f32>
}

// -----

// Without split gradients the local sum counts every gradient once and
// only the stages' sums are added.
// CHECK-LABEL: func.func @replicated_norm(
// CHECK: %[[SQ:.*]] = mt.sum_squares %{{.*}}, %{{.*}} : (tensor<4x4xf32>, tensor<4xf32>) -> tensor<f32>
// CHECK-NEXT: %[[PP:.*]] = mt.all_reduce %[[SQ]] {axis = "pp"} : tensor<f32>
// CHECK-NEXT: mt.sqrt %[[PP]]
// PP1-LABEL: func.func @replicated_norm(
// PP1: %[[SQ:.*]] = mt.sum_squares
// PP1-NEXT: mt.sqrt %[[SQ]]
shard.grid @mesh(shape = @PP@x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @replicated_norm(%w: tensor<4x4xf32>, %n: tensor<4xf32>) -> tensor<f32> {
  %norm = mt.global_norm %w, %n : (tensor<4x4xf32>, tensor<4xf32>) -> tensor<f32>
  return %norm : tensor<f32>
}

// -----

// The distributed optimizer's gradient shards: the sums also add over dp,
// after tp and before pp.
// CHECK-LABEL: func.func @sharded_norm(
// CHECK: %[[SQ:.*]] = mt.sum_squares %{{.*}}, %{{.*}} {replicas = 2 : i64, replicated = array<i1: false, true>}
// CHECK-NEXT: %[[TP:.*]] = mt.all_reduce %[[SQ]] {axis = "tp"} : tensor<f32>
// CHECK-NEXT: %[[DP:.*]] = mt.all_reduce %[[TP]] {axis = "dp"} : tensor<f32>
// CHECK-NEXT: %[[PP:.*]] = mt.all_reduce %[[DP]] {axis = "pp"} : tensor<f32>
// CHECK-NEXT: mt.sqrt %[[PP]]
// PP1-LABEL: func.func @sharded_norm(
// PP1: %[[DP:.*]] = mt.all_reduce %{{.*}} {axis = "dp"} : tensor<f32>
// PP1-NEXT: mt.sqrt %[[DP]]
shard.grid @mesh(shape = @PP@x2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @sharded_norm(%w: tensor<16xf32>, %n: tensor<16xf32>) -> tensor<f32> {
  %norm = mt.global_norm %w, %n {partial_axis = "dp", replicated = array<i1: false, true>, sharded_axis = "tp"} : (tensor<16xf32>, tensor<16xf32>) -> tensor<f32>
  return %norm : tensor<f32>
}

// -----

shard.grid @mesh(shape = @PP@x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @norm_partial_over_ep(%w: tensor<4x4xf32>) -> tensor<f32> {
  // expected-error @+1 {{'mt.global_norm' op is partial over 'ep', which is not an axis of @mesh (pp, dp, cp, tp)}}
  %norm = mt.global_norm %w {partial_axis = "ep"} : (tensor<4x4xf32>) -> tensor<f32>
  return %norm : tensor<f32>
}

// -----

shard.grid @mesh(shape = @PP@x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @grad_without_forward(%logits: tensor<2x4x16xf32>, %labels: tensor<2x4xi32>, %mask: tensor<2x4xf32>, %dloss: tensor<f32>) -> tensor<2x4x16xf32> {
  // expected-error @+1 {{'mt.cross_entropy_grad' op is vocab-parallel over 'tp' but no vocab-parallel mt.cross_entropy of its logits precedes it in the function}}
  %d = mt.cross_entropy_grad %logits, %labels, %mask, %dloss {vocab_parallel_axis = "tp"}
      : (tensor<2x4x16xf32>, tensor<2x4xi32>, tensor<2x4xf32>, tensor<f32>) -> tensor<2x4x16xf32>
  return %d : tensor<2x4x16xf32>
}

// -----

shard.grid @mesh(shape = @PP@x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @norm_over_ep(%w: tensor<4x4xf32>) -> tensor<f32> {
  // expected-error @+1 {{'mt.global_norm' op is sharded over 'ep', which is not an axis of @mesh (pp, dp, cp, tp)}}
  %norm = mt.global_norm %w {replicated = array<i1: false>, sharded_axis = "ep"} : (tensor<4x4xf32>) -> tensor<f32>
  return %norm : tensor<f32>
}

// -----

// Experts split over ep of @expert_mesh: the norm's sum of squares (the
// dense gradient counted 1/ep on each rank) is summed over ep.
// CHECK-LABEL: func.func @norm_over_experts(
// CHECK: %[[SQ:.*]] = mt.sum_squares %{{.*}}, %{{.*}} {replicas = 2 : i64, replicated = array<i1: false, true>}
// CHECK-NEXT: mt.all_reduce %[[SQ]] {axis = "ep"} : tensor<f32>
shard.grid @mesh(shape = @PP@x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = @PP@x1x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
func.func @norm_over_experts(%e: tensor<2x4x4xf32>, %n: tensor<4xf32>) -> tensor<f32> {
  %norm = mt.global_norm %e, %n {replicated = array<i1: false, true>, sharded_axis = "ep"} : (tensor<2x4x4xf32>, tensor<4xf32>) -> tensor<f32>
  return %norm : tensor<f32>
}

// -----

// Experts split over ep and etp (expert tensor parallelism): their sum of
// squares is summed over both axes, apart from the dense one (whole on
// every rank: no reduction), and added.
// CHECK-LABEL: func.func @norm_over_expert_axes(
// CHECK: %[[DENSE:.*]] = mt.sum_squares %{{.*}} : (tensor<4xf32>) -> tensor<f32>
// CHECK-NEXT: %[[EXPERTS:.*]] = mt.sum_squares %{{.*}} : (tensor<2x2x4xf32>) -> tensor<f32>
// CHECK-NEXT: %[[EP:.*]] = mt.all_reduce %[[EXPERTS]] {axis = "ep"} : tensor<f32>
// CHECK-NEXT: %[[ETP:.*]] = mt.all_reduce %[[EP]] {axis = "etp"} : tensor<f32>
// CHECK-NEXT: mt.add %[[DENSE]], %[[ETP]]
shard.grid @mesh(shape = @PP@x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = @PP@x1x2x2) {mt.axes = ["pp", "edp", "ep", "etp"]}
func.func @norm_over_expert_axes(%e: tensor<2x2x4xf32>, %n: tensor<4xf32>) -> tensor<f32> {
  %norm = mt.global_norm %n, %e {expert_axes = ["ep", "etp"], experts = array<i1: false, true>} : (tensor<4xf32>, tensor<2x2x4xf32>) -> tensor<f32>
  return %norm : tensor<f32>
}

// -----

// The distributed optimizer with experts split over ep and etp: the dense
// shards are partial over dp (summed over tp, then dp); the expert shards,
// 1/edp of each rank's experts, are disjoint over ep, etp and edp (summed
// over all three, not over dp).
// CHECK-LABEL: func.func @distributed_norm_with_experts(
// CHECK: %[[DENSE:.*]] = mt.sum_squares %{{.*}} {replicas = 2 : i64, replicated = array<i1: false>} : (tensor<16xf32>) -> tensor<f32>
// CHECK-NEXT: %[[TP:.*]] = mt.all_reduce %[[DENSE]] {axis = "tp"} : tensor<f32>
// CHECK-NEXT: %[[DP:.*]] = mt.all_reduce %[[TP]] {axis = "dp"} : tensor<f32>
// CHECK-NEXT: %[[EXPERTS:.*]] = mt.sum_squares %{{.*}} : (tensor<32xf32>) -> tensor<f32>
// CHECK-NEXT: %[[EP:.*]] = mt.all_reduce %[[EXPERTS]] {axis = "ep"} : tensor<f32>
// CHECK-NEXT: %[[ETP:.*]] = mt.all_reduce %[[EP]] {axis = "etp"} : tensor<f32>
// CHECK-NEXT: %[[EDP:.*]] = mt.all_reduce %[[ETP]] {axis = "edp"} : tensor<f32>
// CHECK-NEXT: mt.add %[[DP]], %[[EDP]]
shard.grid @mesh(shape = @PP@x4x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = @PP@x2x2x2) {mt.axes = ["pp", "edp", "ep", "etp"]}
func.func @distributed_norm_with_experts(%d: tensor<16xf32>, %e: tensor<32xf32>) -> tensor<f32> {
  %norm = mt.global_norm %d, %e {sharded_axis = "tp", replicated = array<i1: false, false>, partial_axis = "dp", expert_axes = ["ep", "etp", "edp"], experts = array<i1: false, true>} : (tensor<16xf32>, tensor<32xf32>) -> tensor<f32>
  return %norm : tensor<f32>
}

// Without a mesh the pass cannot know the axis sizes: refused before
// anything is rewritten.
// RUN: echo 'func.func @no_mesh() { return }' | not mtc-opt -mt-expose-collectives 2>&1 | FileCheck %s --check-prefix=MESH
// MESH: error: mt-expose-collectives expects a mesh 'shard.grid @mesh' with axis 'pp' in 'mt.axes'
