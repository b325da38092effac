// RUN: mtc-opt %s -split-input-file -verify-diagnostics
// Verifier errors of the collective ops (dialects/mt/MtCollectiveOps.cpp):
// the mesh axis, and gathered tensors that are the local ones repeated
// along `dim`.

func.func @all_reduce_axis(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.all_reduce' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'x'}}
  %0 = mt.all_reduce %x {axis = "x"} : tensor<2x8x64xf32>
  return
}

// -----

func.func @all_reduce_kind(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.all_reduce' op expects reduce sum, max or mean, got 'min'}}
  %0 = mt.all_reduce %x {axis = "tp", reduce = "min"} : tensor<2x8x64xf32>
  return
}

// -----

func.func @tp_copy_axis(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.tp_copy' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'model'}}
  %0 = mt.tp_copy %x {axis = "model"} : tensor<2x8x64xf32>
  return
}

// -----

func.func @all_gather_axis(%x: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.all_gather' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'sp'}}
  %0 = mt.all_gather %x {axis = "sp", dim = 1 : i64} : (tensor<2x4x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @all_gather_dim(%x: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.all_gather' op expects tensors of one rank and element type, and dim in range, got 'tensor<2x4x64xf32>', 'tensor<2x8x64xf32>', dim 3}}
  %0 = mt.all_gather %x {axis = "tp", dim = 3 : i64} : (tensor<2x4x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @all_gather_rank(%x: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.all_gather' op expects tensors of one rank and element type, and dim in range, got 'tensor<2x4x64xf32>', 'tensor<16x64xf32>', dim 1}}
  %0 = mt.all_gather %x {axis = "tp", dim = 1 : i64} : (tensor<2x4x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @all_gather_type(%x: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.all_gather' op expects tensors of one rank and element type, and dim in range, got 'tensor<2x4x64xf32>', 'tensor<2x8x64xbf16>', dim 1}}
  %0 = mt.all_gather %x {axis = "tp", dim = 1 : i64} : (tensor<2x4x64xf32>) -> tensor<2x8x64xbf16>
  return
}

// -----

func.func @all_gather_load_balanced_odd(%x: tensor<2x3xi32>) {
  // expected-error @+1 {{'mt.all_gather' op expects an even dimension 1 (3, two chunks) with load_balanced}}
  %0 = mt.all_gather %x {axis = "cp", dim = 1 : i64, load_balanced} : (tensor<2x3xi32>) -> tensor<2x6xi32>
  return
}

// -----

func.func @all_gather_other_dim(%x: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.all_gather' op expects 'tensor<2x8x32xf32>' to be 'tensor<2x4x64xf32>' repeated along dimension 1}}
  %0 = mt.all_gather %x {axis = "tp", dim = 1 : i64} : (tensor<2x4x64xf32>) -> tensor<2x8x32xf32>
  return
}

// -----

func.func @all_gather_not_multiple(%x: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'mt.all_gather' op expects 'tensor<2x6x64xf32>' to be 'tensor<2x4x64xf32>' repeated along dimension 1}}
  %0 = mt.all_gather %x {axis = "tp", dim = 1 : i64} : (tensor<2x4x64xf32>) -> tensor<2x6x64xf32>
  return
}

// -----

// The embedding group only sums (a tied parameter's two gradient terms).
func.func @all_reduce_tied_kind(%x: tensor<16xf32>) {
  // expected-error @+1 {{'mt.all_reduce' op over 'pp_tied' expects reduce sum, got 'mean'}}
  %0 = mt.all_reduce %x {axis = "pp_tied", reduce = "mean"} : tensor<16xf32>
  return
}

// -----

func.func @reduce_scatter_axis(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.reduce_scatter' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'pp_tied'}}
  %0 = mt.reduce_scatter %x {axis = "pp_tied", dim = 1 : i64} : (tensor<2x8x64xf32>) -> tensor<2x4x64xf32>
  return
}

// -----

func.func @reduce_scatter_kind(%x: tensor<16xf32>) {
  // expected-error @+1 {{'mt.reduce_scatter' op expects reduce sum or mean, got 'max'}}
  %0 = mt.reduce_scatter %x {axis = "dp", dim = 0 : i64, reduce = "max"} : (tensor<16xf32>) -> tensor<8xf32>
  return
}

// -----

func.func @all_slice_axis(%x: tensor<16xf32>) {
  // expected-error @+1 {{'mt.all_slice' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'data'}}
  %0 = mt.all_slice %x {axis = "data", dim = 0 : i64} : (tensor<16xf32>) -> tensor<8xf32>
  return
}

// -----

func.func @all_slice_not_multiple(%x: tensor<16xf32>) {
  // expected-error @+1 {{'mt.all_slice' op expects 'tensor<16xf32>' to be 'tensor<5xf32>' repeated along dimension 0}}
  %0 = mt.all_slice %x {axis = "dp", dim = 0 : i64} : (tensor<16xf32>) -> tensor<5xf32>
  return
}

// -----

// expected-error @+1 {{expects bucket 0 of 'mt.buckets' to have an 'axis' string, 'params' symbols and ascending, non-negative 'offsets', one per param}}
func.func @buckets_offsets() attributes {mt.buckets = [{axis = "dp", params = [@a, @b], offsets = array<i64: 16, 0>}]} {
  return
}

// -----

func.func @reduce_scatter_dim(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.reduce_scatter' op expects tensors of one rank and element type, and dim in range, got 'tensor<2x4x64xf32>', 'tensor<2x8x64xf32>', dim -1}}
  %0 = mt.reduce_scatter %x {axis = "tp", dim = -1 : i64} : (tensor<2x8x64xf32>) -> tensor<2x4x64xf32>
  return
}

// -----

func.func @reduce_scatter_not_multiple(%x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.reduce_scatter' op expects 'tensor<2x8x64xf32>' to be 'tensor<2x3x64xf32>' repeated along dimension 1}}
  %0 = mt.reduce_scatter %x {axis = "tp", dim = 1 : i64} : (tensor<2x8x64xf32>) -> tensor<2x3x64xf32>
  return
}

// -----

func.func @all_to_all_v_axis(%x: tensor<8x4xf32>, %c: tensor<2xi32>) {
  // expected-error @+1 {{'mt.all_to_all_v' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'experts'}}
  %0 = mt.all_to_all_v %x, %c, %c {axis = "experts"} : (tensor<8x4xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<16x4xf32>
  return
}

// -----

func.func @all_to_all_v_rows(%x: tensor<8x4xf32>, %c: tensor<2xi32>) {
  // expected-error @+1 {{'mt.all_to_all_v' op expects input and result of one element type and one row shape, got 'tensor<8x4xf32>' and 'tensor<16x8xf32>'}}
  %0 = mt.all_to_all_v %x, %c, %c {axis = "ep"} : (tensor<8x4xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<16x8xf32>
  return
}

// -----

func.func @all_to_all_v_counts(%x: tensor<8x4xf32>, %s: tensor<2xi32>, %r: tensor<3xi32>) {
  // expected-error @+1 {{'mt.all_to_all_v' op expects recv_counts of shape [2], got [3]}}
  %0 = mt.all_to_all_v %x, %s, %r {axis = "ep"} : (tensor<8x4xf32>, tensor<2xi32>, tensor<3xi32>) -> tensor<16x4xf32>
  return
}

// -----

shard.grid @mesh(shape = 1x4x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x4x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
func.func @all_to_all_v_peers(%x: tensor<8x4xf32>, %c: tensor<2xi32>) {
  // expected-error @+1 {{'mt.all_to_all_v' op expects one count per rank of axis 'ep' (4), got 2}}
  %0 = mt.all_to_all_v %x, %c, %c {axis = "ep"} : (tensor<8x4xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<16x4xf32>
  return
}

// -----

func.func @all_to_all_dims(%x: tensor<2x8x4xf32>) {
  // expected-error @+1 {{'mt.all_to_all' op expects input and result of one rank and element type, and two distinct dimensions in range, got 'tensor<2x8x4xf32>', 'tensor<2x8x4xf32>', split_dim 1, concat_dim 1}}
  %0 = mt.all_to_all %x {axis = "cp", split_dim = 1 : i64, concat_dim = 1 : i64} : (tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
  return
}

// -----

func.func @all_to_all_shape(%x: tensor<2x8x4xf32>) {
  // expected-error @+1 {{'mt.all_to_all' op expects 'tensor<2x16x4xf32>' to be 'tensor<2x8x4xf32>' with dimension 2 split and dimension 1 gathered over the same number of ranks}}
  %0 = mt.all_to_all %x {axis = "cp", split_dim = 2 : i64, concat_dim = 1 : i64} : (tensor<2x8x4xf32>) -> tensor<2x16x4xf32>
  return
}

// -----

shard.grid @mesh(shape = 1x1x4x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
func.func @all_to_all_peers(%x: tensor<2x8x4xf32>) {
  // expected-error @+1 {{'mt.all_to_all' op exchanges 2 pieces, expected one per rank of axis 'cp' (4)}}
  %0 = mt.all_to_all %x {axis = "cp", split_dim = 2 : i64, concat_dim = 1 : i64} : (tensor<2x8x4xf32>) -> tensor<2x16x2xf32>
  return
}

// -----

func.func @all_to_all_balanced_dim(%x: tensor<2x8x4xf32>) {
  // expected-error @+1 {{'mt.all_to_all' op expects load_balanced_dim to be split_dim (2) or concat_dim (1), got 0}}
  %0 = mt.all_to_all %x {axis = "cp", split_dim = 2 : i64, concat_dim = 1 : i64, load_balanced_dim = 0 : i64} : (tensor<2x8x4xf32>) -> tensor<2x16x2xf32>
  return
}

// -----

func.func @all_to_all_chunks(%x: tensor<2x3x4xf32>) {
  // expected-error @+1 {{'mt.all_to_all' op expects the load-balanced dimension (6) divisible by 2 x 2 chunks}}
  %0 = mt.all_to_all %x {axis = "cp", split_dim = 2 : i64, concat_dim = 1 : i64, load_balanced_dim = 1 : i64} : (tensor<2x3x4xf32>) -> tensor<2x6x2xf32>
  return
}

// -----

func.func @all_to_all_axis(%x: tensor<2x8x4xf32>) {
  // expected-error @+1 {{'mt.all_to_all' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'heads'}}
  %0 = mt.all_to_all %x {axis = "heads", split_dim = 2 : i64, concat_dim = 1 : i64} : (tensor<2x8x4xf32>) -> tensor<2x16x2xf32>
  return
}
