// RUN: mtc-opt %s -split-input-file -verify-diagnostics

// The mesh: a shard.grid whose mt.axes are Megatron-Core's axes in order.
// expected-error @+1 {{expects the axes of a mesh to be (pp, dp, cp, tp) or, for expert layers, (pp, edp, ep, etp), got ["dp", "pp", "cp", "tp"]}}
shard.grid @mesh(shape = 1x2x1x2) {mt.axes = ["dp", "pp", "cp", "tp"]}

// -----

// expected-error @+1 {{names 4 axes of a grid of rank 3}}
shard.grid @mesh(shape = 2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}

// -----

// expected-error @+1 {{expects a static size >= 1 for mesh axis "dp"}}
shard.grid @mesh(shape = 1x?x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}

// -----

// expected-error @+1 {{expects 'mt.axes' to be a list of axis names on a 'shard.grid'}}
mt.param @w : tensor<4xf32> init(zeros) {mt.axes = ["tp"]}

// -----

// Expert layers fold over the same ranks: edp x ep x etp = dp x cp x tp.
shard.grid @mesh(shape = 2x4x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// expected-error @+1 {{expects the expert mesh (pp, edp, ep, etp) = (2, 2, 2, 1) to fold over the mesh (pp, dp, cp, tp) = (2, 4, 1, 2): the same pp and edp x ep x etp = dp x cp x tp}}
shard.grid @expert_mesh(shape = 2x2x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}

// -----

// Shardings name axes of their mesh.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// expected-error @+1 {{'mt.param' op splits dimension 0 over 'ep', which is not an axis of mesh @mesh (pp, dp, cp, tp)}}
mt.param @w : tensor<4x4xf32> init(zeros) {sharding = #mt.sharding<@mesh, [["ep"], []]>}

// -----

shard.grid @mesh(shape = 1x2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// expected-error @+1 {{splits over mesh axis "tp" twice (an axis splits at most one dimension, once)}}
mt.param @w : tensor<4x4xf32> init(zeros) {sharding = #mt.sharding<@mesh, [["tp"], ["dp", "tp"]]>}

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// expected-error @+1 {{'mt.param' op cannot split dimension 0 of [3, 4] (3) into 2 parts over mesh axes ["tp"]}}
mt.param @w : tensor<3x4xf32> init(zeros) {sharding = #mt.sharding<@mesh, [["tp"], []]>}

// -----

// Several axes on one dimension multiply.
shard.grid @mesh(shape = 1x2x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// expected-error @+1 {{'mt.param' op cannot split dimension 1 of [4, 6] (6) into 4 parts over mesh axes ["dp", "tp"]}}
mt.param @w : tensor<4x6xf32> init(zeros) {sharding = #mt.sharding<@mesh, [[], ["dp", "tp"]]>}

// -----

shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
// expected-error @+1 {{'mt.param' op expects a sharding with one axis list per dimension of [4, 4], got 1}}
mt.param @w : tensor<4x4xf32> init(zeros) {sharding = #mt.sharding<@mesh, [["tp"]]>}

// -----

// expected-error @+1 {{'mt.param' op expects @nowhere to be a 'shard.grid' with 'mt.axes'}}
mt.param @w : tensor<4x4xf32> init(zeros) {sharding = #mt.sharding<@nowhere, [["tp"], []]>}

// -----

// expected-error @+1 {{expects one list of axis names per dimension, got "tp" for dimension 0}}
mt.param @w : tensor<4x4xf32> init(zeros) {sharding = #mt.sharding<@mesh, ["tp", []]>}

// -----

// expected-error @+1 {{expects axis names, got 1 : i64 for dimension 1}}
mt.param @w : tensor<4x4xf32> init(zeros) {sharding = #mt.sharding<@mesh, [[], [1]]>}

// -----

// A weight reads the local slice of its parameter.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
mt.param @w : tensor<4x4xf32> init(zeros) {sharding = #mt.sharding<@mesh, [[], ["tp"]]>}
func.func @f() -> tensor<4x4xf32> {
  // expected-error @+1 {{'mt.weight' op expects type 'tensor<4x2xf32>' of parameter @w (its local shard), got 'tensor<4x4xf32>'}}
  %w = mt.weight @w : tensor<4x4xf32>
  return %w : tensor<4x4xf32>
}

// -----

// Collectives run over axes of the module's mesh.
shard.grid @mesh(shape = 1x1x1x2) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'mt.all_reduce' op expects a mesh axis (pp, dp, cp, tp), got 'ep'}}
  %y = mt.all_reduce %x {axis = "ep"} : tensor<4xf32>
  return %y : tensor<4xf32>
}
