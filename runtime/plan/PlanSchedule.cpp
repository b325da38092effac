// Timing and drawing a given pipeline schedule.
#include "runtime/plan/PlanSchedule.h"

#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/Roofline.h"

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <tuple>

namespace mt {

Expected<std::vector<std::vector<PipelineAction>>> pipelineActions(const plan::Plan &plan) {
  const int64_t pp = std::max<int64_t>(plan.mesh().pp(), 1);
  if (plan.schedule_size() != pp)
    return Status::error("the plan has " + std::to_string(plan.schedule_size()) +
                         " stage schedules for " + std::to_string(pp) + " pipeline stages");
  std::vector<std::vector<PipelineAction>> stages(static_cast<size_t>(pp));
  for (const plan::StageSchedule &stage : plan.schedule()) {
    if (stage.stage() < 0 || stage.stage() >= pp)
      return Status::error("a stage schedule names stage " + std::to_string(stage.stage()) +
                           " of " + std::to_string(pp));
    auto &out = stages[size_t(stage.stage())];
    for (const plan::Action &a : stage.actions()) {
      const int64_t chunk = a.virtual_stage() < 0 ? 0 : a.virtual_stage() / pp;
      const plan::Action::Kind kind = a.kind();
      if (kind == plan::Action::FORWARD || kind == plan::Action::FORWARD_BACKWARD)
        out.push_back({true, a.micro_batch(), chunk});
      if (kind == plan::Action::BACKWARD || kind == plan::Action::FORWARD_BACKWARD)
        out.push_back({false, a.micro_batch(), chunk});
    }
  }
  return stages;
}

std::map<int64_t, std::vector<PipelineMessage>> pipelineMessages(const plan::Plan &plan,
                                                                 int64_t stage, bool sends) {
  const int64_t pp = std::max<int64_t>(plan.mesh().pp(), 1);
  const plan::Op op = sends ? plan::Op::send : plan::Op::recv;
  // Each program's transfers once: (peer stage, buffer) in program order.
  std::map<uint32_t, std::vector<std::pair<int64_t, uint32_t>>> transfers;
  std::map<int64_t, std::vector<PipelineMessage>> out;
  if (stage < 0 || stage >= plan.schedule_size())
    return out;
  for (const plan::Action &a : plan.schedule(int(stage)).actions()) {
    auto [it, fresh] = transfers.try_emplace(a.program());
    if (fresh)
      for (const plan::Instruction &in : plan.programs(int(a.program())).instructions()) {
        if (!plan::isOp(in, op))
          continue;
        int64_t peer = -1;
        for (const plan::Attribute &attr : in.attributes())
          if (attr.name() == "peer_virtual_stage")
            peer = attr.i() % pp;
        it->second.push_back({peer, sends ? in.inputs(0) : in.outputs(0)});
      }
    for (const auto &[peer, buffer] : it->second)
      out[peer].push_back({a.micro_batch(), buffer});
  }
  return out;
}

namespace {

using ActionKey = std::tuple<bool, int64_t, int64_t>; // forward?, micro-batch, virtual stage

/// The action whose result `a` (on virtual stage v) needs: a forward the
/// previous virtual stage's forward, a backward the next one's backward
/// (the last virtual stage: its own forward).
ActionKey inputOf(const PipelineAction &a, int64_t v, int64_t last) {
  if (a.forward)
    return {true, a.microBatch, v - 1};
  return v == last ? ActionKey{true, a.microBatch, v} : ActionKey{false, a.microBatch, v + 1};
}

std::string describe(const ActionKey &k) {
  const auto [forward, microBatch, virtualStage] = k;
  return std::string(forward ? "forward" : "backward") + " of micro-batch " +
         std::to_string(microBatch) + " on virtual stage " + std::to_string(virtualStage);
}

/// Each stuck stage's next action and the input it waits for.
std::string deadlockMessage(const std::vector<std::vector<PipelineAction>> &schedule,
                            const std::vector<size_t> &next, int64_t pp, int64_t last) {
  std::string message = "pipeline schedule deadlocks:";
  for (size_t s = 0; s < schedule.size(); ++s) {
    if (next[s] == schedule[s].size())
      continue;
    const PipelineAction &a = schedule[s][next[s]];
    const int64_t v = a.chunk * pp + int64_t(s);
    message += " stage " + std::to_string(s) + " waits at action " + std::to_string(next[s]) +
               " (" + describe({a.forward, a.microBatch, v}) + ") for the " +
               describe(inputOf(a, v, last)) + ";";
  }
  message.pop_back();
  return message;
}

} // namespace

Expected<double> simulate(std::vector<std::vector<PipelineAction>> &schedule, int64_t pp,
                          int64_t vpp, double backwardCost, const std::vector<double> &chunkCost) {
  if (pp < 1 || vpp < 1 || int64_t(schedule.size()) != pp)
    return Status::error("pipeline schedule has " + std::to_string(schedule.size()) +
                         " stages, expected pp = " + std::to_string(pp));
  for (size_t s = 0; s < schedule.size(); ++s)
    for (const PipelineAction &a : schedule[s])
      if (a.chunk < 0 || a.chunk >= vpp)
        return Status::error("pipeline schedule: stage " + std::to_string(s) + " has chunk " +
                             std::to_string(a.chunk) + ", expected 0 <= chunk < vpp = " +
                             std::to_string(vpp));
  std::map<ActionKey, double> done; // completion times
  std::vector<size_t> next(schedule.size(), 0);
  std::vector<double> free(schedule.size(), 0);
  const int64_t last = pp * vpp - 1;
  double makespan = 0;
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t s = 0; s < schedule.size(); ++s) {
      while (next[s] < schedule[s].size()) {
        PipelineAction &a = schedule[s][next[s]];
        const int64_t v = a.chunk * pp + int64_t(s);
        double ready = 0;
        if (!(a.forward && v == 0)) {
          auto it = done.find(inputOf(a, v, last));
          if (it == done.end())
            break;
          ready = it->second;
        }
        a.start = std::max(free[s], ready);
        double weight = size_t(v) < chunkCost.size() ? chunkCost[v] : 1.0;
        a.end = a.start + weight * (a.forward ? 1.0 : backwardCost);
        free[s] = a.end;
        done[{a.forward, a.microBatch, v}] = a.end;
        makespan = std::max(makespan, a.end);
        ++next[s];
        progress = true;
      }
    }
  }
  for (size_t s = 0; s < schedule.size(); ++s)
    if (next[s] < schedule[s].size())
      return Status::error(deadlockMessage(schedule, next, pp, last));
  return makespan;
}

std::vector<double> virtualStageCosts(const plan::Plan &plan) {
  const int64_t stages = plan.training().virtual_stages();
  if (plan.mesh().pp() < 2 || stages < 2)
    return {};
  std::vector<double> flops(size_t(stages), 0.0);
  const auto noBytes = [](uint32_t, bool) { return 0.0; };
  for (const plan::Program &program : plan.programs())
    if (program.virtual_stage() >= 0 && program.virtual_stage() < stages)
      for (const plan::Instruction &instr : program.instructions())
        flops[size_t(program.virtual_stage())] += plan::instructionWork(instr, noBytes).flops;
  double mean = 0;
  for (double f : flops) {
    if (f <= 0)
      return {};
    mean += f / double(stages);
  }
  for (double &f : flops)
    f /= mean;
  return flops;
}

double bubbleFraction(const std::vector<std::vector<PipelineAction>> &schedule,
                      double makespan) {
  double busy = 0;
  for (const auto &stage : schedule)
    for (const PipelineAction &a : stage)
      busy += a.end - a.start;
  double total = makespan * double(schedule.size());
  return total > 0 ? 1.0 - busy / total : 0.0;
}

std::string scheduleSvg(const std::vector<std::vector<PipelineAction>> &schedule,
                        int64_t vpp, double makespan, const std::string &title,
                        const std::string &legend,
                        const std::vector<std::vector<std::pair<double, double>>> &waits) {
  const double unit = 28, row = 34, left = 80, top = 40;
  double width = left + makespan * unit + 20, height = top + row * schedule.size() + 50;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\""
      << height << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << left << "\" y=\"22\" font-size=\"14\">" << title << "</text>\n";
  // Forward chunks in blues, backward chunks in greens (darker: later chunk).
  const char *fwd[] = {"#9ecae1", "#4292c6", "#2171b5", "#084594"};
  const char *bwd[] = {"#a1d99b", "#41ab5d", "#238b45", "#005a32"};
  for (size_t s = 0; s < schedule.size(); ++s) {
    double y = top + row * s;
    svg << "<text x=\"8\" y=\"" << y + row / 2 + 4 << "\">stage " << s << "</text>\n"
        << "<rect x=\"" << left << "\" y=\"" << y + 2 << "\" width=\"" << makespan * unit
        << "\" height=\"" << row - 4 << "\" fill=\"#f0f0f0\"/>\n";
    if (s < waits.size())
      for (auto [begin, end] : waits[s])
        svg << "<rect x=\"" << left + begin * unit << "\" y=\"" << y + 2 << "\" width=\""
            << (end - begin) * unit << "\" height=\"" << row - 4 << "\" fill=\"#fdae6b\"/>\n";
    for (const PipelineAction &a : schedule[s]) {
      const char *color = (a.forward ? fwd : bwd)[a.chunk < 3 ? a.chunk : 3];
      double x = left + a.start * unit, w = (a.end - a.start) * unit;
      svg << "<rect x=\"" << x << "\" y=\"" << y + 2 << "\" width=\"" << w - 1
          << "\" height=\"" << row - 4 << "\" fill=\"" << color << "\"/>\n"
          << "<text x=\"" << x + w / 2 << "\" y=\"" << y + row / 2 + 4
          << "\" text-anchor=\"middle\" fill=\"" << (a.chunk > 0 ? "white" : "black") << "\">"
          << (a.forward ? "F" : "B") << a.microBatch;
      if (vpp > 1)
        svg << "." << a.chunk;
      svg << "</text>\n";
    }
  }
  double legendY = top + row * schedule.size() + 24;
  svg << "<text x=\"" << left << "\" y=\"" << legendY << "\">F m = forward of micro-batch m, B m = "
      << (legend.empty() ? "backward (2x a forward)" : "backward") << "; grey = idle"
      << (waits.empty() ? "" : "; orange = waiting for a transfer")
      << (vpp > 1 ? "; .c = virtual chunk c" : "") << (legend.empty() ? "" : "; " + legend)
      << "</text>\n</svg>\n";
  return svg.str();
}

} // namespace mt
