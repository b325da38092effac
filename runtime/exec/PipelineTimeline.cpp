// Gathering and drawing the measured pipeline timeline.
#include "runtime/exec/PipelineTimeline.h"

#include "runtime/io/OutputPath.h"
#include "runtime/support/Wording.h"

#include <cstdio>

namespace mt::exec {

void PipelineTimeline::beginStep(int64_t step) {
  step_ = step;
  actions_.clear();
  begin_ = Clock::now();
}

void PipelineTimeline::record(const PipelineAction &action, Clock::time_point start,
                              Clock::time_point end) {
  PipelineAction a = action;
  a.start = std::chrono::duration<double>(start - begin_).count();
  a.end = std::chrono::duration<double>(end - begin_).count();
  actions_.push_back(a);
}

namespace {

/// Mean duration of the forward and of the backward actions.
std::pair<double, double> meanDurations(const std::vector<std::vector<PipelineAction>> &stages) {
  double forward = 0, backward = 0;
  int64_t forwards = 0, backwards = 0;
  for (const auto &stage : stages)
    for (const PipelineAction &a : stage) {
      (a.forward ? forward : backward) += a.end - a.start;
      ++(a.forward ? forwards : backwards);
    }
  return {forward / double(std::max<int64_t>(forwards, 1)),
          backward / double(std::max<int64_t>(backwards, 1))};
}

std::string percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f%%", 100.0 * fraction);
  return text;
}

} // namespace

Expected<std::string> PipelineTimeline::publish(const RankContext &rank, int64_t vpp,
                                                int64_t microBatches,
                                                const std::string &svgPath) const {
  const int64_t pp = rank.axisSize("pp");
  comm::Communicator *world = rank.world();
  if (!world || pp < 2)
    return Status::error("--timeline needs a pipeline-parallel plan (pp > 1)");
  // Every rank runs the same number of actions: 2 x micro-batches x chunks.
  std::vector<float> mine;
  for (const PipelineAction &a : actions_)
    mine.insert(mine.end(), {float(a.start), float(a.end)});
  std::vector<float> all(mine.size() * size_t(rank.worldSize()));
  if (Status s = world->allGatherHost(mine.data(), all.data(), mine.size()); !s)
    return s;
  if (rank.rank() != 0)
    return std::string();
  // Ranks are ordered pp-major: stage s's first rank is s x (ranks per stage).
  const int64_t perStage = rank.worldSize() / pp;
  const auto schedule = pipelineSchedule(pp, vpp, microBatches);
  auto measured = schedule;
  double makespan = 0;
  for (int64_t s = 0; s < pp; ++s) {
    const float *times = all.data() + size_t(s * perStage) * mine.size();
    for (size_t i = 0; i < measured[s].size(); ++i) {
      measured[s][i].start = times[2 * i];
      measured[s][i].end = times[2 * i + 1];
      makespan = std::max(makespan, measured[s][i].end);
    }
  }
  const double bubble = bubbleFraction(measured, makespan);
  const auto [forward, backward] = meanDurations(measured);
  const double ratio = backward / forward;
  auto predicted = schedule;
  Expected<double> spanAtTwo = simulate(predicted, pp, vpp, 2.0);
  if (!spanAtTwo)
    return spanAtTwo.status();
  const double atTwo = bubbleFraction(predicted, *spanAtTwo);
  Expected<double> spanAtRatio = simulate(predicted, pp, vpp, ratio);
  if (!spanAtRatio)
    return spanAtRatio.status();
  const double atRatio = bubbleFraction(predicted, *spanAtRatio);
  // The picture in units of the mean forward, as the schedule's.
  for (auto &stage : measured)
    for (PipelineAction &a : stage)
      a.start /= forward, a.end /= forward;
  char legend[96];
  std::snprintf(legend, sizeof(legend), "measured: one unit = the mean forward, %.3f ms",
                1e3 * forward);
  std::string title = "measured step " + std::to_string(step_) + ": pp " + std::to_string(pp) +
                      (vpp > 1 ? " x vpp " + std::to_string(vpp) : "") + ", " +
                      countOf(microBatches, "micro-batch", "micro-batches") + ", bubble " +
                      percent(bubble);
  const std::string svg = scheduleSvg(measured, vpp, makespan / forward, title, legend);
  if (Status s = io::writePipelineSvg(svgPath, svg); !s)
    return s;
  char ratioText[32];
  std::snprintf(ratioText, sizeof(ratioText), "%.2f", ratio);
  return "pipeline timeline of step " + std::to_string(step_) + " in " + svgPath +
         ": measured bubble " + percent(bubble) + "; the schedule predicts " + percent(atTwo) +
         " at backward = 2 x forward and " + percent(atRatio) +
         " at the measured backward/forward = " + ratioText;
}

} // namespace mt::exec
