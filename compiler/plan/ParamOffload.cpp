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

plan::Instruction copyInstruction(plan::Op op, uint32_t from, uint32_t to, int64_t n,
                                  const std::string &what) {
  return offloadCopy(op, from, to, n, "param_offload: " + what);
}

/// A run of uses of one weight in a program, staged by one copy.
struct Run {
  uint32_t weight = 0, staged = 0;
  size_t first = 0, last = 0;
  bool writes = false;
};

void replace(google::protobuf::RepeatedField<uint32_t> &ids, uint32_t from, uint32_t to) {
  for (uint32_t &id : ids)
    if (id == from)
      id = to;
}

/// Each weight's uses in `program` (instruction index, whether it writes
/// the weight), in program order.
std::map<uint32_t, std::vector<std::pair<size_t, bool>>>
usesOf(const std::vector<plan::Instruction> &old, const BufferPlanner &planner) {
  std::map<uint32_t, std::vector<std::pair<size_t, bool>>> uses;
  for (size_t i = 0; i < old.size(); ++i) {
    std::map<uint32_t, bool> used; // weight -> written here
    for (uint32_t id : old[i].inputs())
      if (planner.arenaOf(id) == plan::PARAMETERS)
        used.try_emplace(id, false);
    for (uint32_t id : old[i].outputs())
      if (planner.arenaOf(id) == plan::PARAMETERS)
        used[id] = true;
    for (auto [weight, writes] : used)
      uses[weight].push_back({i, writes});
  }
  return uses;
}

/// The runs of each weight: its uses split at each gap that holds every
/// use of another weight.
std::vector<Run> runsOf(const std::map<uint32_t, std::vector<std::pair<size_t, bool>>> &uses) {
  std::vector<Run> runs;
  for (const auto &[weight, at] : uses) {
    Run run{weight, 0, at.front().first, at.front().first, at.front().second};
    for (size_t k = 1; k < at.size(); ++k) {
      const size_t a = at[k - 1].first, b = at[k].first;
      bool nested = false;
      for (const auto &[other, otherAt] : uses)
        nested |= other != weight && a < otherAt.front().first && otherAt.back().first < b;
      if (nested) {
        runs.push_back(run);
        run = {weight, 0, b, b, false};
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
  std::vector<Run> runs = runsOf(usesOf(old, planner_));
  // Views of one weight's bytes staged at once, one written, would diverge.
  for (size_t a = 0; a < runs.size(); ++a)
    for (size_t b = a + 1; b < runs.size(); ++b)
      if (runs[a].weight != runs[b].weight && (runs[a].writes || runs[b].writes) &&
          planner_.overlaps(runs[a].weight, runs[b].weight) &&
          runs[a].first <= runs[b].last && runs[b].first <= runs[a].last)
        return Status::error(
            "param_offload: program '" + program.name() + "' uses '" +
            plan_.buffers(runs[a].weight).name() + "' (instructions " +
            std::to_string(runs[a].first) + ".." + std::to_string(runs[a].last) + ") and '" +
            plan_.buffers(runs[b].weight).name() + "' (" + std::to_string(runs[b].first) + ".." +
            std::to_string(runs[b].last) + "), views of one weight, at once, and writes one");
  // before[i]: copies to the device before old instruction i; after[i]: to
  // the host after it.
  std::vector<std::vector<plan::Instruction>> before(old.size()), after(old.size());
  for (Run &r : runs) {
    const int64_t n = plan::elementsOf(plan_.buffers(r.weight));
    r.staged = planner_.addBufferLike("staged:" + plan_.buffers(r.weight).name(), r.weight,
                                      plan::STAGED_WEIGHTS);
    for (size_t i = r.first; i <= r.last; ++i) {
      replace(*old[i].mutable_inputs(), r.weight, r.staged);
      replace(*old[i].mutable_outputs(), r.weight, r.staged);
    }
    before[r.first].push_back(
        copyInstruction(plan::Op::copy_to_device, r.weight, r.staged, n, "weight to the device"));
    if (r.writes)
      after[r.last].push_back(
          copyInstruction(plan::Op::copy_to_host, r.staged, r.weight, n, "weight to the host"));
  }
  program.clear_instructions();
  for (size_t i = 0; i < old.size(); ++i) {
    for (plan::Instruction &c : before[i])
      *program.add_instructions() = std::move(c);
    *program.add_instructions() = std::move(old[i]);
    for (plan::Instruction &c : after[i])
      *program.add_instructions() = std::move(c);
  }
  return Status::ok();
}

void ParamOffload::moveWeights() {
  for (const plan::Buffer &b : plan_.buffers())
    if (b.arena() == plan::PARAMETERS)
      planner_.moveToArena(b.id(), plan::HOST_WEIGHTS);
}

} // namespace mt
