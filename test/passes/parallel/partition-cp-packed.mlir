// RUN: mtc-opt %s -mt-partition-cp=comm-type=p2p -verify-diagnostics
// RUN: mtc-opt %s -mt-partition-cp=comm-type=a2a -verify-diagnostics

// Packed documents under cp are built for cp_comm_type all_gather only
// (partition-cp.mlir); the ring and a2a refuse them by name.
module {
  shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
  // expected-error @+1 {{mt-partition-cp: packed sequences (position_ids, neat_packing) under context parallelism (cp 2) are built for cp_comm_type all_gather only, not}}
  func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}, %pos: tensor<2x8xi32> {mt.input = "position_ids"}) -> tensor<2x8xi32> {
    return %ids : tensor<2x8xi32>
  }
}
