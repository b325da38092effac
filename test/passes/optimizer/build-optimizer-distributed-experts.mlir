// RUN: mtc-opt %s -verify-diagnostics -mt-build-optimizer="distributed-optimizer"

// The distributed optimizer does not shard experts over edp yet: refused
// (mtc compile refuses --use-distributed-optimizer with --ep by name first).
shard.grid @mesh(shape = 1x2x1x1) {mt.axes = ["pp", "dp", "cp", "tp"]}
shard.grid @expert_mesh(shape = 1x1x2x1) {mt.axes = ["pp", "edp", "ep", "etp"]}
// expected-error @+1 {{'mt.param' op is split over @expert_mesh: the distributed optimizer does not shard expert parameters over edp yet}}
mt.param @"e.*.up" : tensor<4x8x4xf32> init(normal, std = 0.02) {grouped_experts, sharding = #mt.sharding<@expert_mesh, [["ep"], [], []]>}
