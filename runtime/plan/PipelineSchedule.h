// Pipeline schedules: the order in which each stage runs the forward and
// backward passes of micro-batches (1F1B, and Megatron's interleaved 1F1B
// with virtual chunks), their timeline under unit costs, and its picture.
#ifndef MT_RUNTIME_PLAN_PIPELINESCHEDULE_H
#define MT_RUNTIME_PLAN_PIPELINESCHEDULE_H

#include "runtime/support/Status.h"

#include <cstdint>
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

/// One list of actions per stage, in execution order. With vpp == 1 this is
/// 1F1B (warm-up forwards, steady one-forward-one-backward, cool-down); with
/// vpp > 1 Megatron-Core's interleaved 1F1B (microBatches % pp == 0).
std::vector<std::vector<PipelineAction>> pipelineSchedule(int64_t pp, int64_t vpp,
                                                          int64_t microBatches);

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

/// Fraction of stage time spent idle within the makespan.
double bubbleFraction(const std::vector<std::vector<PipelineAction>> &schedule,
                      double makespan);

/// The activation slot of each micro-batch on one stage: micro-batch m
/// holds a slot from its first action on the stage to its last (all its
/// virtual chunks share it), and a freed slot goes to the next micro-batch
/// that starts. Returns slot[m]; `count` receives the slots needed (1F1B:
/// pp - stage of them, not one per micro-batch).
std::vector<int64_t> activationSlots(const std::vector<PipelineAction> &stage,
                                     int64_t microBatches, int64_t &count);

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

#endif // MT_RUNTIME_PLAN_PIPELINESCHEDULE_H
