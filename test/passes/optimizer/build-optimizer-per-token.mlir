// RUN: mtc-opt %s -split-input-file -verify-diagnostics -mt-build-optimizer="per-token-loss=true" | FileCheck %s
// RUN: mtc-opt %s -split-input-file -verify-diagnostics -mt-build-optimizer="per-token-loss=true distributed-optimizer=true" | FileCheck %s --check-prefix=DISTOPT

// calculate_per_token_loss on pp 2 x dp 2 x cp 2: @forward_backward returns
// its mt.num_tokens, which @optimizer_step takes, sums over pp (the last
// stage's), cp and dp; every gradient is summed over cp and dp (not
// averaged) and divided by that count before the norm and AdamW.
shard.grid @mesh(shape = 2x2x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @w : tensor<8x4xf32> init(normal, std = 0.02)
func.func @forward_backward(%mask: tensor<2x4xf32> {mt.input = "loss_mask"}, %g: tensor<8x4xf32>) -> (tensor<f32>, tensor<8x4xf32> {mt.grad_of = @w}) {
  %n = mt.num_tokens %mask : (tensor<2x4xf32>) -> tensor<f32>
  return %n, %g : tensor<f32>, tensor<8x4xf32>
}
// CHECK-LABEL: func.func @forward_backward(
// CHECK-SAME: -> (tensor<f32>, tensor<8x4xf32> {mt.grad_of = @w}, tensor<f32> {mt.role = "num_tokens"})
// CHECK: %[[N:.*]] = mt.num_tokens
// CHECK: return %[[N]], %{{.*}}, %[[N]]
// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GW:[^:]*]]: tensor<8x4xf32> {mt.param = @w, mt.role = "grad"}
// CHECK-SAME: %[[TOKENS:[^:]*]]: tensor<f32> {mt.role = "num_tokens"})
// The gradient's reductions come first (the backends overlap a leading
// run of them with backward), then the count's.
// CHECK: %[[C:.*]] = mt.all_reduce %[[GW]] {axis = "cp"}
// CHECK-NEXT: %[[D:.*]] = mt.all_reduce %[[C]] {axis = "dp"}
// CHECK-NEXT: %[[T1:.*]] = mt.all_reduce %[[TOKENS]] {axis = "pp"} : tensor<f32>
// CHECK-NEXT: %[[T2:.*]] = mt.all_reduce %[[T1]] {axis = "cp"} : tensor<f32>
// CHECK-NEXT: %[[T3:.*]] = mt.all_reduce %[[T2]] {axis = "dp"} : tensor<f32>
// CHECK-NEXT: %[[G:.*]] = mt.scale_by %[[D]], %[[T3]] {inverse} : tensor<8x4xf32>, tensor<f32>
// CHECK-NEXT: mt.global_norm %[[G]]
// CHECK: mt.adamw %{{.*}}, %[[G]]

// The distributed optimizer: each bucket reduce-scattered as a sum, its
// shard divided by the tokens.
// DISTOPT-LABEL: func.func @optimizer_step(
// DISTOPT: %[[S:.*]] = mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64}
// DISTOPT: %[[T3:.*]] = mt.all_reduce %{{.*}} {axis = "dp"} : tensor<f32>
// DISTOPT-NEXT: mt.scale_by %[[S]], %[[T3]] {inverse}

// -----

// Without mt-per-token-loss there is no count to normalize by.
// expected-error @+1 {{mt-build-optimizer: per-token-loss expects one mt.num_tokens in @forward_backward (run mt-per-token-loss before mt-autodiff), found 0}}
module {
  shard.grid @mesh(shape = 1x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
  mt.param @w : tensor<8x4xf32> init(normal, std = 0.02)
  func.func @forward_backward(%g: tensor<8x4xf32>) -> (tensor<f32>, tensor<8x4xf32> {mt.grad_of = @w}) {
    %z = mt.zeros : tensor<f32>
    return %z, %g : tensor<f32>, tensor<8x4xf32>
  }
}

// -----

// Experts (ep 2 over dp 4, edp 2): summed over edp and divided by the
// step's tokens like the dense gradients, without the default's 1 / dp
// (Megatron-Core sets both gradient scaling factors to 1 under
// calculate_per_token_loss).
shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x2x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], [], []]>}
mt.param @norm : tensor<4xf32> init(ones)
func.func @forward_backward(%mask: tensor<2x4xf32> {mt.input = "loss_mask"}, %ge: tensor<2x8x4xf32>, %gn: tensor<4xf32>) -> (tensor<f32>, tensor<2x8x4xf32> {mt.grad_of = @"e.*.up"}, tensor<4xf32> {mt.grad_of = @norm}) {
  %n = mt.num_tokens %mask : (tensor<2x4xf32>) -> tensor<f32>
  return %n, %ge, %gn : tensor<f32>, tensor<2x8x4xf32>, tensor<4xf32>
}
// CHECK-LABEL: func.func @optimizer_step(
// CHECK-SAME: %[[GE:[^:]*]]: tensor<2x8x4xf32> {mt.param = @"e.*.up", mt.role = "grad"}
// CHECK-SAME: %[[TOKENS:[^:]*]]: tensor<f32> {mt.role = "num_tokens"})
// CHECK-NOT: mt.scale {{.*}}factor
// CHECK: %[[SE:.*]] = mt.all_reduce %[[GE]] {axis = "edp"} : tensor<2x8x4xf32>
// CHECK-NEXT: %[[T:.*]] = mt.all_reduce %[[TOKENS]] {axis = "dp"} : tensor<f32>
// CHECK-DAG: mt.scale_by %[[SE]], %[[T]] {inverse} : tensor<2x8x4xf32>, tensor<f32>
// CHECK-DAG: mt.scale_by %{{.*}}, %[[T]] {inverse} : tensor<4xf32>, tensor<f32>
// CHECK-NOT: mt.scale {{.*}}factor
// CHECK: mt.global_norm

// The distributed optimizer: the expert bucket reduce-scattered over edp
// as a sum and divided by the tokens, without a constant scale.
// DISTOPT-LABEL: func.func @optimizer_step(
// DISTOPT-NOT: mt.scale {{.*}}factor
// DISTOPT: %[[S:.*]] = mt.reduce_scatter %{{.*}} {axis = "edp", dim = 0 : i64}
// DISTOPT: %[[T:.*]] = mt.all_reduce %{{.*}} {axis = "dp"} : tensor<f32>
// DISTOPT-DAG: mt.scale_by %[[S]], %[[T]] {inverse}
// DISTOPT-NOT: mt.scale {{.*}}factor
// DISTOPT: mt.global_norm
