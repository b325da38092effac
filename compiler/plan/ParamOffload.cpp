// param_offload's rewrite of the programs: the weights in a host arena,
// staged on the device for each run of device uses, and the copies between
// them.
#include "compiler/plan/ParamOffload.h"

#include "compiler/plan/OptimizerOffload.h"

#include "runtime/plan/OpRegistry.h"

#include <map>
#include <vector>

namespace mt {
namespace {

/// Each weight's uses in `program` (instruction index, whether it writes
/// the weight), in program order.
std::map<uint32_t, std::vector<std::pair<size_t, bool>>>
usesOf(const std::vector<plan::Instruction> &old, const BufferPlanner &planner) {
  std::map<uint32_t, std::vector<std::pair<size_t, bool>>> uses;
  for (size_t i = 0; i < old.size(); ++i) {
    for (auto [weight, writes] : arenaUses(old[i], plan::PARAMETERS, planner))
      uses[weight].push_back({i, writes});
  }
  return uses;
}

/// The runs of each weight: its uses split at each gap that holds every
/// use of another weight.
std::vector<StagedRun> runsOf(const std::map<uint32_t, std::vector<std::pair<size_t, bool>>> &uses) {
  std::vector<StagedRun> runs;
  for (const auto &[weight, at] : uses) {
    StagedRun run{weight, at.front().first, at.front().first, at.front().second};
    for (size_t k = 1; k < at.size(); ++k) {
      const size_t a = at[k - 1].first, b = at[k].first;
      bool nested = false;
      for (const auto &[other, otherAt] : uses)
        nested |= other != weight && a < otherAt.front().first && otherAt.back().first < b;
      if (nested) {
        runs.push_back(run);
        run = {weight, b, b, false};
      }
      run.last = b;
      run.writes |= at[k].second;
    }
    runs.push_back(run);
  }
  return runs;
}

} // namespace

Status ParamOffload::rewrite(plan::Program &program) {
  std::vector<plan::Instruction> old(program.instructions().begin(),
                                     program.instructions().end());
  std::vector<StagedRun> runs = runsOf(usesOf(old, planner_));
  // Views of one weight staged at once diverge only where one is written.
  return stageRuns(program, std::move(old), runs, plan::STAGED_WEIGHTS, "param_offload", "weight",
                   /*onlyWhenWritten=*/true, planner_, plan_);
}

void ParamOffload::moveWeights() {
  for (const plan::Buffer &b : plan_.buffers())
    if (b.arena() == plan::PARAMETERS)
      planner_.moveToArena(b.id(), plan::HOST_WEIGHTS);
}

} // namespace mt
