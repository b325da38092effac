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
