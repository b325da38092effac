// Reading the schedule a plan carries (Plan.schedule): the forward and
// backward actions of each stage, the messages between stages in the order
// the schedule makes them, and the timeline of a given schedule under unit
// costs, its bubble and its picture. Nothing here orders actions: the
// compiler does (compiler/plan/PipelineSchedule.h).
#ifndef MT_RUNTIME_PLAN_PLANSCHEDULE_H
#define MT_RUNTIME_PLAN_PLANSCHEDULE_H

#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mt {

struct PipelineAction {
  bool forward;
  int64_t microBatch;
  int64_t chunk; // virtual chunk on this stage; 0 without interleaving
  // Filled by simulate(): when the action runs, in units of one forward.
  double start = 0, end = 0;
};

/// The forward and backward actions of each stage of `plan`, in the order
/// of its schedule (Plan.schedule; chunk = virtual stage / pp; a plan
/// without pp: one stage, each forward_backward a forward then a backward).
/// Errors when the plan has not one schedule per stage.
Expected<std::vector<std::vector<PipelineAction>>> pipelineActions(const plan::Plan &plan);

/// One pipeline transfer of a step: the micro-batch and the buffer it
/// carries (the send's input, the recv's output: one id on both stages).
using PipelineMessage = std::pair<int64_t, uint32_t>;

/// Per peer stage, the messages stage `stage` sends to it (`sends`) or
/// receives from it in one step, in the order the stage's schedule runs
/// their send or recv instructions (a program's instructions in order,
/// keyed by the action's micro-batch). Channels that match messages by
/// order (NCCL) need each stage's sends to a peer in the order the peer
/// receives them; emitSchedule checks it for every plan.
std::map<int64_t, std::vector<PipelineMessage>> pipelineMessages(const plan::Plan &plan,
                                                                 int64_t stage, bool sends);

/// Times every action: a forward costs 1, a backward `backwardCost`, both
/// scaled by the virtual stage's weight in `chunkCost` (its share of the
/// layers; all 1 when empty); an action starts when its stage is free and
/// its input exists (the previous virtual stage's forward, the next one's
/// backward; the last virtual stage's backward needs its own forward).
/// Returns the makespan, or an error when the schedule has pp != its stage
/// count, a chunk outside [0, vpp), or deadlocks (some stage waits for an
/// input that never comes: the error names each stuck stage, its action and
/// the missing input).
Expected<double> simulate(std::vector<std::vector<PipelineAction>> &schedule, int64_t pp,
                          int64_t vpp, double backwardCost = 2.0,
                          const std::vector<double> &chunkCost = {});

/// Each virtual stage's cost for simulate(): the model FLOPs of its
/// forward and backward programs (plan::instructionWork, docs/FLOPS.md's
/// rule), divided by their mean over the virtual stages, so that a stage
/// that also runs the embedding or the output layer and the loss costs
/// more than its layers alone. Empty (every stage costs 1) without
/// pipeline parallelism or when a virtual stage has no FLOPs.
std::vector<double> virtualStageCosts(const plan::Plan &plan);

/// Fraction of stage time spent idle within the makespan.
double bubbleFraction(const std::vector<std::vector<PipelineAction>> &schedule,
                      double makespan);

/// An SVG of the timeline: one row per stage, forward and backward boxes
/// labelled with their micro-batch (and chunk), idle time left blank.
/// `legend` replaces the default's line on units (a measured timeline's);
/// `waits`, when given, holds each stage's waits for a transfer as
/// (start, end) in the schedule's units, drawn in orange.
std::string scheduleSvg(const std::vector<std::vector<PipelineAction>> &schedule,
                        int64_t vpp, double makespan, const std::string &title,
                        const std::string &legend = "",
                        const std::vector<std::vector<std::pair<double, double>>> &waits = {});

} // namespace mt

#endif // MT_RUNTIME_PLAN_PLANSCHEDULE_H
