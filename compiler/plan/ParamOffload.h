// param_offload in the plan: the weights in a host arena, staged on the
// device for each run of a program's uses, with the copies as instructions
// of the plan.
#ifndef MT_COMPILER_PLAN_PARAMOFFLOAD_H
#define MT_COMPILER_PLAN_PARAMOFFLOAD_H

#include "compiler/plan/BufferPlanner.h"

namespace mt {

/// Keeps the weights in host memory between their uses, as Trinity-RFT's
/// param_offload (Megatron's offload of parameters, ZeRO-Offload's params)
/// does. Every buffer of the PARAMETERS arena moves to HOST_WEIGHTS. In
/// each program, each run of a weight's uses reads (and writes) a staged
/// copy S in STAGED_WEIGHTS instead: `copy_to_device W -> S` before the
/// run's first instruction and, only when the run writes S (the optimizer's
/// update), `copy_to_host S -> W` after its last. A weight's uses split
/// into two runs at a gap that holds every use of some other weight (a
/// nested layer: forward and backward of layer l enclose layers l+1..L), so
/// that the device holds about the weights of the layers running, not the
/// model's. The arithmetic is the same on the same values in the same
/// order: a CPU run gives bit for bit the losses, norms and weights of the
/// run without it.
/// Pipelines: each stage's forward, backward and optimizer programs are
/// rewritten alike, so a stage stages only its own layers' weights, and
/// each run of the 1F1B or interleaved schedule (a forward or backward of
/// one micro-batch) stages what it reads: a weight read by the forward of
/// micro-batch m+1 and the backward of m is copied in by each. The host
/// arena holds, like PARAMETERS did, the weights of the stage that holds
/// the most (stages share offsets).
/// The distributed optimizer (Megatron-Core's): each rank keeps its whole
/// weight buckets on the host, as each Megatron rank keeps its whole
/// parameter buffer; the optimizer stages one bucket at a time, slices the
/// rank's shard from it (all_slice), updates it, all-gathers into the
/// staged bucket (NCCL needs device memory) and copies it back. With
/// optimizer_offload the shard's masters and AdamW state are on the host
/// (1/dp of them per rank) and the all-gather reads the updated shard.
class ParamOffload {
public:
  ParamOffload(BufferPlanner &planner, plan::Plan &plan) : planner_(planner), plan_(plan) {}

  /// Rewrites `program` (emitted, before its liveness is recorded). Fails,
  /// naming the program, the buffers and the instructions, when a program
  /// uses two views of one weight in overlapping runs, one of which writes
  /// it (their staged copies would diverge).
  Status rewrite(plan::Program &program);

  /// Moves the weights to HOST_WEIGHTS: after every program is rewritten,
  /// before the offsets are assigned.
  void moveWeights();

private:
  BufferPlanner &planner_;
  plan::Plan &plan_;
};

} // namespace mt

#endif // MT_COMPILER_PLAN_PARAMOFFLOAD_H
