// The measured timeline of a pipeline step: when each stage waited for its
// input and computed each forward and backward, the bubble it leaves, and
// its picture beside the schedule's prediction (mtrun --timeline).
#ifndef MT_RUNTIME_EXEC_PIPELINETIMELINE_H
#define MT_RUNTIME_EXEC_PIPELINETIMELINE_H

#include "runtime/exec/RankContext.h"
#include "runtime/plan/PlanSchedule.h"
#include "runtime/support/Status.h"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace mt::exec {

/// One action as a stage ran it, in seconds from the step's start: entered
/// at `start`, waited for its input until `ready` (every stage program opens
/// with its receives: compiler/plan/PlanEmitter.cpp), computed until `end`.
struct RecordedAction {
  double start = 0, ready = 0, end = 0;
};

/// A measured step, in seconds.
struct MeasuredStep {
  /// Per stage, each action of the schedule from its input's arrival to its
  /// end: the compute alone.
  std::vector<std::vector<PipelineAction>> compute;
  /// Per stage, each wait for a transfer: (start, ready) of an action.
  std::vector<std::vector<std::pair<double, double>>> waits;
  double makespan = 0; // from the step's start to the last action's end
  /// Fraction of stages x makespan in which a stage did not compute, and
  /// the part of it spent waiting for transfers (the rest is idle).
  double bubble = 0, waiting = 0;
  double meanForward = 0, meanBackward = 0; // compute alone
};

/// Puts the times of `recorded` on the actions of `schedule` (both per
/// stage, in execution order). Errors when a stage's counts differ or a
/// record's times are out of order.
Expected<MeasuredStep> measureStep(const std::vector<std::vector<PipelineAction>> &schedule,
                                   const std::vector<std::vector<RecordedAction>> &recorded);

class PipelineTimeline {
public:
  using Clock = std::chrono::steady_clock;

  /// A step starts: times are taken from here. Every rank starts its step
  /// right after the previous step's optimizer, whose gradient-norm
  /// reduction lines the ranks up, so no clock needs to agree across hosts.
  void beginStep(int64_t step);
  /// The stage's next action in schedule order: entered at `start`, its
  /// receives done at `ready`, finished at `end`.
  void record(Clock::time_point start, Clock::time_point ready, Clock::time_point end);

  /// Collective over the world: gathers the last step's timeline of each
  /// stage (the ranks with dp = cp = ep = tp = 0) on rank 0, which writes the
  /// SVG to `svgPath` and returns a line comparing the measured bubble with
  /// the prediction for `plan`'s schedule (an empty line on the other ranks).
  Expected<std::string> publish(const RankContext &rank, const plan::Plan &plan,
                                const std::string &svgPath) const;

private:
  int64_t step_ = 0;
  Clock::time_point begin_;
  std::vector<RecordedAction> actions_;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_PIPELINETIMELINE_H
