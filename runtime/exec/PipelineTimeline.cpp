// Gathering, measuring and drawing the pipeline timeline of a step.
#include "runtime/exec/PipelineTimeline.h"

#include "runtime/support/OutputPath.h"
#include "runtime/support/Wording.h"

#include <cstdio>

namespace mt::exec {

Expected<MeasuredStep> measureStep(const std::vector<std::vector<PipelineAction>> &schedule,
                                   const std::vector<std::vector<RecordedAction>> &recorded) {
  if (recorded.size() != schedule.size())
    return Status::error("timeline of " + std::to_string(recorded.size()) +
                         " stages for a schedule of " + std::to_string(schedule.size()));
  MeasuredStep m;
  m.compute = schedule;
  m.waits.resize(schedule.size());
  double forward = 0, backward = 0, waiting = 0;
  int64_t forwards = 0, backwards = 0;
  for (size_t s = 0; s < schedule.size(); ++s) {
    if (recorded[s].size() != schedule[s].size())
      return Status::error("stage " + std::to_string(s) + " recorded " +
                           std::to_string(recorded[s].size()) + " actions; its schedule has " +
                           std::to_string(schedule[s].size()));
    for (size_t i = 0; i < schedule[s].size(); ++i) {
      const RecordedAction &r = recorded[s][i];
      if (!(0 <= r.start && r.start <= r.ready && r.ready <= r.end))
        return Status::error("stage " + std::to_string(s) + " action " + std::to_string(i) +
                             ": start, ready and end out of order");
      PipelineAction &a = m.compute[s][i];
      a.start = r.ready;
      a.end = r.end;
      if (r.ready > r.start)
        m.waits[s].push_back({r.start, r.ready});
      waiting += r.ready - r.start;
      (a.forward ? forward : backward) += r.end - r.ready;
      ++(a.forward ? forwards : backwards);
      m.makespan = std::max(m.makespan, r.end);
    }
  }
  m.bubble = bubbleFraction(m.compute, m.makespan);
  double stageTime = m.makespan * double(schedule.size());
  m.waiting = stageTime > 0 ? waiting / stageTime : 0.0;
  m.meanForward = forward / double(std::max<int64_t>(forwards, 1));
  m.meanBackward = backward / double(std::max<int64_t>(backwards, 1));
  return m;
}

void PipelineTimeline::beginStep(int64_t step) {
  step_ = step;
  actions_.clear();
  begin_ = Clock::now();
}

void PipelineTimeline::record(Clock::time_point start, Clock::time_point ready,
                              Clock::time_point end) {
  auto seconds = [&](Clock::time_point t) {
    return std::chrono::duration<double>(t - begin_).count();
  };
  actions_.push_back({seconds(start), seconds(ready), seconds(end)});
}

namespace {

std::string percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f%%", 100.0 * fraction);
  return text;
}

/// The measured step drawn as the schedule is, in units of its mean forward.
Status writeSvg(MeasuredStep step, int64_t stepNumber, int64_t vpp, int64_t microBatches,
                const std::string &path) {
  const double unit = step.meanForward;
  for (auto &stage : step.compute)
    for (PipelineAction &a : stage)
      a.start /= unit, a.end /= unit;
  for (auto &stage : step.waits)
    for (auto &[begin, end] : stage)
      begin /= unit, end /= unit;
  char legend[96];
  std::snprintf(legend, sizeof(legend), "measured: one unit = the mean forward, %.3f ms",
                1e3 * unit);
  const int64_t pp = int64_t(step.compute.size());
  std::string title = "measured step " + std::to_string(stepNumber) + ": pp " +
                      std::to_string(pp) + (vpp > 1 ? " x vpp " + std::to_string(vpp) : "") +
                      ", " + countOf(microBatches, "micro-batch", "micro-batches") + ", bubble " +
                      percent(step.bubble) + " (" + percent(step.waiting) + " waiting)";
  const std::string svg =
      scheduleSvg(step.compute, vpp, step.makespan / unit, title, legend, step.waits);
  return io::writePipelineSvg(path, svg);
}

} // namespace

Expected<std::string> PipelineTimeline::publish(const RankContext &rank, const plan::Plan &plan,
                                                const std::string &svgPath) const {
  const int64_t pp = rank.axisSize("pp");
  comm::Communicator *world = rank.world();
  if (!world || pp < 2)
    return Status::error("--timeline needs a pipeline-parallel plan (pp > 1)");
  auto schedule = pipelineActions(plan);
  if (!schedule)
    return schedule.status();
  const int64_t vpp = plan.training().virtual_stages() / pp;
  const int64_t microBatches = plan.training().micro_batches_per_step();
  // Every rank runs the same number of actions: 2 x micro-batches x chunks.
  std::vector<float> mine;
  for (const RecordedAction &a : actions_)
    mine.insert(mine.end(), {float(a.start), float(a.ready), float(a.end)});
  std::vector<float> all(mine.size() * size_t(rank.worldSize()));
  if (Status s = world->allGatherHost(mine.data(), all.data(), mine.size()); !s)
    return s;
  if (rank.rank() != 0)
    return std::string();
  // Ranks are ordered pp-major: stage s's first rank is s x (ranks per stage).
  const int64_t perStage = rank.worldSize() / pp;
  std::vector<std::vector<RecordedAction>> recorded(static_cast<size_t>(pp));
  for (int64_t s = 0; s < pp; ++s) {
    const float *times = all.data() + size_t(s * perStage) * mine.size();
    for (size_t i = 0; i < actions_.size(); ++i)
      recorded[s].push_back({times[3 * i], times[3 * i + 1], times[3 * i + 2]});
  }
  auto step = measureStep(*schedule, recorded);
  if (!step)
    return step.status();
  if (Status s = writeSvg(*step, step_, vpp, microBatches, svgPath); !s)
    return s;
  const double ratio = step->meanBackward / step->meanForward;
  auto predicted = *schedule;
  const std::vector<double> costs = virtualStageCosts(plan);
  Expected<double> spanAtTwo = simulate(predicted, pp, vpp, 2.0, costs);
  if (!spanAtTwo)
    return spanAtTwo.status();
  const double atTwo = bubbleFraction(predicted, *spanAtTwo);
  Expected<double> spanAtRatio = simulate(predicted, pp, vpp, ratio, costs);
  if (!spanAtRatio)
    return spanAtRatio.status();
  const double atRatio = bubbleFraction(predicted, *spanAtRatio);
  char ratioText[32];
  std::snprintf(ratioText, sizeof(ratioText), "%.2f", ratio);
  return "pipeline timeline of step " + std::to_string(step_) + " in " + svgPath +
         ": measured bubble " + percent(step->bubble) + " of stage time (" +
         percent(step->waiting) + " waiting for transfers, " +
         percent(std::max(0.0, step->bubble - step->waiting)) + " idle); the schedule predicts " +
         percent(atTwo) + " at backward = 2 x forward and " + percent(atRatio) +
         " at the measured backward/forward = " + ratioText;
}

} // namespace mt::exec
