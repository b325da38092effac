// Pipeline schedules: the order in which each stage runs the forward and
// backward passes of micro-batches (1F1B, and Megatron's interleaved 1F1B
// with virtual chunks) and the activation slots that order needs. The plan
// emitter writes them into the plan (Plan.schedule); mtrun only replays.
#ifndef MT_COMPILER_PLAN_PIPELINESCHEDULE_H
#define MT_COMPILER_PLAN_PIPELINESCHEDULE_H

#include "runtime/plan/PlanSchedule.h"

#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <vector>

namespace mt {

/// One list of actions per stage, in execution order. With vpp == 1 this is
/// 1F1B (warm-up forwards, steady one-forward-one-backward, cool-down); with
/// vpp > 1 Megatron-Core's interleaved 1F1B (microBatches % pp == 0).
std::vector<std::vector<PipelineAction>> pipelineSchedule(int64_t pp, int64_t vpp,
                                                          int64_t microBatches);

/// The activation slot of each micro-batch on one stage: micro-batch m
/// holds a slot from its first action on the stage to its last (all its
/// virtual chunks share it), and a freed slot goes to the next micro-batch
/// that starts. Returns slot[m]; `count` receives the slots needed (1F1B:
/// pp - stage of them, not one per micro-batch).
std::vector<int64_t> activationSlots(const std::vector<PipelineAction> &stage,
                                     int64_t microBatches, int64_t &count);

/// Writes the schedule every rank of `plan` replays (Plan.schedule): per
/// pipeline stage, pipelineSchedule's forwards and backwards with their
/// programs (forward.<v>, backward.<v>), activation slots and the flags of
/// the micro-batch's first action (inputs) and the last virtual stage's
/// forward (loss), then optimizer.<stage>. Without pp (`pp` 1): one stage
/// that runs forward_backward per micro-batch, then optimizer_step. Errors
/// name a program the plan lacks.
Status emitSchedule(plan::Plan &plan, int64_t pp, int64_t vpp, int64_t microBatches);

} // namespace mt

#endif // MT_COMPILER_PLAN_PIPELINESCHEDULE_H
