// grad_offload in the plan: the fp32 main gradients in a host arena, and
// each program's device uses of one staged through a liveness-planned device
// copy, with the copies as instructions of the plan.
#ifndef MT_COMPILER_PLAN_GRADOFFLOAD_H
#define MT_COMPILER_PLAN_GRADOFFLOAD_H

#include "compiler/plan/BufferPlanner.h"

#include <vector>

namespace mt {

/// Keeps the main gradients in host memory between their uses, as
/// Trinity-RFT's grad_offload (and ZeRO-Offload's gradients) do. Every
/// buffer of the GRADIENTS arena (a parameter's main gradient, or a packed
/// view of several) moves to HOST_GRADIENTS. In each program, each maximal
/// run of a gradient's uses by device instructions (the backward's
/// accumulating kernels, the optimizer's reductions and scalings, AdamW on
/// the device) reads and writes a staged copy S in STAGED_GRADIENTS
/// instead: `copy_to_device G -> S` before the run's first instruction and,
/// when the run writes S, `copy_to_host S -> G` after its last. S lives
/// from the one copy to the other, so the device holds a gradient only
/// while a program uses it. Host instructions read G itself: the gradient
/// norm's sum_squares and, with optimizer_offload, AdamW.
/// With the distributed optimizer (Megatron-Core's semantics), a bucket is
/// the full-size gradient buffer the backward accumulates into: it is
/// staged as any main gradient (around each micro-batch's accumulation, and
/// in the optimizer around its reduce-scatter on the device), and the
/// reduced shard (1/dp of the bucket) is a main gradient too: it lives in
/// HOST_GRADIENTS, the reduce-scatter writes a staged copy that goes to the
/// host right after, and the norm, AdamW on the host, or a staged copy for
/// AdamW on the device read it. The device then holds one bucket and its
/// shard at a time in the optimizer instead of every bucket, and the host
/// keeps the shards the optimizer (with or without optimizer_offload) reads.
/// The staged shard, too, starts with a copy to the device (of last step's
/// shard, which the reduce-scatter overwrites): 1/dp of a bucket per step,
/// which keeps the CUDA backend's rule that every staged buffer is first
/// written on the copy stream (runtime/cuda/LowerOffload.cpp).
/// The arithmetic is the same on the same values in the same order: a CPU
/// run gives bit for bit the losses, norms and weights of the run without it.
class GradOffload {
public:
  /// `hostAdamW`: optimizer_offload is on (AdamW reads its gradient on the
  /// host).
  GradOffload(BufferPlanner &planner, plan::Plan &plan, bool hostAdamW)
      : planner_(planner), plan_(plan), hostAdamW_(hostAdamW) {}

  /// Rewrites `program` (emitted, before its liveness is recorded). Fails,
  /// naming the program, the buffers and the instructions, when a program
  /// uses two views of one gradient (a packed run and its member) in
  /// overlapping runs, whose staged copies would diverge.
  Status rewrite(plan::Program &program);

  /// Moves the main gradients to HOST_GRADIENTS: after every program is
  /// rewritten, before the offsets are assigned.
  void moveGradients();

private:
  /// The distributed optimizer: moves the outputs of `program`'s
  /// reduce-scatters of gradient buffers (the reduced shards, activations
  /// until now) to GRADIENTS, with their bucket's pipeline stage, so that
  /// the rewrite and moveGradients treat them as main gradients.
  void offloadShards(const std::vector<plan::Instruction> &program);

  /// Whether instruction `in`'s use of gradient `grad` runs on the host.
  bool readsOnHost(const plan::Instruction &in, uint32_t grad) const;

  BufferPlanner &planner_;
  plan::Plan &plan_;
  bool hostAdamW_;
};

} // namespace mt

#endif // MT_COMPILER_PLAN_GRADOFFLOAD_H
