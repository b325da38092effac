// RUN: mtc-opt %s -mt-partition-cp=comm-type=a2a+p2p -verify-diagnostics

// Megatron-Core's hierarchical a2a+p2p is not built: refused by name.
// expected-error @+1 {{mt-partition-cp: cp_comm_type 'a2a+p2p' is not built in this version of mtc; use p2p, all_gather or a2a}}
module {
  shard.grid @mesh(shape = 1x1x2x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
  func.func @forward(%ids: tensor<2x8xi32> {mt.input = "input_ids"}) -> tensor<2x8xi32> {
    return %ids : tensor<2x8xi32>
  }
}
