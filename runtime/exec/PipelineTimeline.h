// The measured timeline of a pipeline step: when each stage ran each
// forward and backward, the bubble it leaves, and its picture beside the
// schedule's prediction (mtrun --timeline).
#ifndef MT_RUNTIME_EXEC_PIPELINETIMELINE_H
#define MT_RUNTIME_EXEC_PIPELINETIMELINE_H

#include "runtime/exec/RankContext.h"
#include "runtime/schedule/PipelineSchedule.h"
#include "runtime/support/Status.h"

#include <chrono>
#include <string>
#include <vector>

namespace mt::exec {

class PipelineTimeline {
public:
  using Clock = std::chrono::steady_clock;

  /// A step starts: times are taken from here. Every rank starts its step
  /// right after the previous step's optimizer, whose gradient-norm
  /// reduction lines the ranks up, so no clock needs to agree across hosts.
  void beginStep(int64_t step);
  void record(const PipelineAction &action, Clock::time_point start, Clock::time_point end);

  /// Collective over the world: gathers the last step's timeline of each
  /// stage (the ranks with dp = cp = ep = tp = 0) on rank 0, which writes the
  /// SVG to `svgPath` and returns a line comparing the measured bubble with
  /// the schedule's prediction (an empty line on the other ranks).
  Expected<std::string> publish(const RankContext &rank, int64_t vpp, int64_t microBatches,
                                const std::string &svgPath) const;

private:
  int64_t step_ = 0;
  Clock::time_point begin_;
  std::vector<PipelineAction> actions_;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_PIPELINETIMELINE_H
