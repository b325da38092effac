// optimizer_offload's rewrite of the optimizer programs: host arenas for the
// master weights, gradients and AdamW state, and the copies between them
// and the device arenas.
#include "compiler/plan/OptimizerOffload.h"

#include "runtime/plan/OpRegistry.h"

#include <algorithm>
#include <vector>

namespace mt {

plan::Instruction offloadCopy(plan::Op op, uint32_t from, uint32_t to, int64_t n,
                              const std::string &location) {
  plan::Instruction c;
  c.set_op(plan::signature(op).name);
  c.add_inputs(from);
  c.add_outputs(to);
  auto *a = c.add_attributes();
  a->set_name("n");
  a->set_i(n);
  c.set_location(location);
  return c;
}

std::map<uint32_t, bool> arenaUses(const plan::Instruction &instr, plan::ArenaKind arena,
                                   const BufferPlanner &planner) {
  std::map<uint32_t, bool> used;
  for (uint32_t id : instr.inputs())
    if (planner.arenaOf(id) == arena)
      used.try_emplace(id, false);
  for (uint32_t id : instr.outputs())
    if (planner.arenaOf(id) == arena)
      used[id] = true;
  return used;
}

Status stageRuns(plan::Program &program, std::vector<plan::Instruction> old,
                 const std::vector<StagedRun> &runs, plan::ArenaKind stagedArena,
                 const std::string &option, const std::string &what, bool onlyWhenWritten,
                 BufferPlanner &planner, const plan::Plan &plan) {
  auto name = [&](uint32_t id) { return "'" + plan.buffers(id).name() + "'"; };
  // Views of one buffer's bytes staged at once would each hold a copy of them.
  for (size_t a = 0; a < runs.size(); ++a)
    for (size_t b = a + 1; b < runs.size(); ++b)
      if (runs[a].buffer != runs[b].buffer &&
          (!onlyWhenWritten || runs[a].writes || runs[b].writes) &&
          planner.overlaps(runs[a].buffer, runs[b].buffer) && runs[a].first <= runs[b].last &&
          runs[b].first <= runs[a].last)
        return Status::error(option + ": program '" + program.name() + "' uses " +
                             name(runs[a].buffer) + " (instructions " +
                             std::to_string(runs[a].first) + ".." + std::to_string(runs[a].last) +
                             ") and " + name(runs[b].buffer) + " (" +
                             std::to_string(runs[b].first) + ".." + std::to_string(runs[b].last) +
                             "), views of one " + what + ", at once" +
                             (onlyWhenWritten ? ", and writes one" : ""));
  // A deferred instruction (overlap_param_gather's all-gather) runs after
  // the program's last: after the run's copy back, on a staged buffer no
  // longer live.
  for (const StagedRun &r : runs)
    for (size_t i = r.first; i <= r.last; ++i)
      if (plan::Attrs(old[i]).i("deferred") == 1)
        for (const auto *ids : {&old[i].inputs(), &old[i].outputs()})
          if (std::find(ids->begin(), ids->end(), r.buffer) != ids->end())
            return Status::error(option + ": program '" + program.name() + "' instruction " +
                                 std::to_string(i) + " (" + old[i].op() + ") uses " +
                                 name(r.buffer) + " deferred to after the program " +
                                 "(overlap_param_gather), after its staged copy is gone");
  // before[i]: copies to the device before old instruction i; after[i]: to
  // the host after it.
  std::vector<std::vector<plan::Instruction>> before(old.size()), after(old.size());
  auto replace = [](google::protobuf::RepeatedField<uint32_t> &ids, uint32_t from, uint32_t to) {
    for (uint32_t &id : ids)
      if (id == from)
        id = to;
  };
  for (const StagedRun &r : runs) {
    const int64_t n = plan::elementsOf(plan.buffers(r.buffer));
    const uint32_t staged =
        planner.addBufferLike("staged:" + plan.buffers(r.buffer).name(), r.buffer, stagedArena);
    for (size_t i = r.first; i <= r.last; ++i) {
      replace(*old[i].mutable_inputs(), r.buffer, staged);
      replace(*old[i].mutable_outputs(), r.buffer, staged);
    }
    before[r.first].push_back(offloadCopy(plan::Op::copy_to_device, r.buffer, staged, n,
                                          option + ": " + what + " to the device"));
    if (r.writes)
      after[r.last].push_back(offloadCopy(plan::Op::copy_to_host, staged, r.buffer, n,
                                          option + ": " + what + " to the host"));
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

namespace {

plan::Instruction copyInstruction(plan::Op op, uint32_t from, uint32_t to, int64_t n,
                                  const std::string &what) {
  return offloadCopy(op, from, to, n, "optimizer_offload: " + what);
}

/// The last instruction before `before` that writes `id`; -1: none.
int64_t lastWriter(const std::vector<plan::Instruction> &program, uint32_t id, size_t before) {
  for (int64_t j = int64_t(before) - 1; j >= 0; --j)
    for (uint32_t out : program[size_t(j)].outputs())
      if (out == id)
        return j;
  return -1;
}

} // namespace

std::string OptimizerOffload::programName(int64_t stage) {
  return stage < 0 ? "master_weights" : "master_weights." + std::to_string(stage);
}

uint32_t OptimizerOffload::masterOf(uint32_t weights, uint32_t owner) {
  auto [it, inserted] = masters_.try_emplace(weights, 0);
  if (inserted) {
    it->second = planner_.addBufferLike("master:" + plan_.buffers(owner).name(), weights,
                                        plan::HOST_PARAMETERS);
    planner_.placeWith(it->second, owner);
  }
  return it->second;
}

void OptimizerOffload::recordHostCopies(uint32_t weights, uint32_t master, uint32_t hostGrad) {
  for (plan::Parameter &p : *plan_.mutable_parameters())
    if (p.param_buffer() == weights) {
      p.set_master_buffer(master);
      p.set_host_grad_buffer(hostGrad);
    }
  for (plan::Bucket &b : *plan_.mutable_buckets())
    if (b.param_buffer() == weights) {
      b.set_master_buffer(master);
      b.set_host_grad_buffer(hostGrad);
    }
}

Status OptimizerOffload::rewrite(plan::Program &optimizer, plan::Program &masters) {
  std::vector<plan::Instruction> old(optimizer.instructions().begin(),
                                     optimizer.instructions().end());
  // after[i + 1]: what follows old instruction i; after[0]: the program's start.
  std::vector<std::vector<plan::Instruction>> after(old.size() + 1);
  std::vector<bool> moved(old.size(), false);
  // The gradient reductions that open the program stay together (the CUDA
  // backend overlaps them with backward only then): no copy before their end.
  int64_t leading = 0;
  while (size_t(leading) < old.size() &&
         (plan::isOp(old[size_t(leading)], plan::Op::all_reduce) ||
          plan::isOp(old[size_t(leading)], plan::Op::reduce_scatter)))
    ++leading;
  // The previous adamw: a gradient's copy to the host runs while the host
  // updates the parameter before it (double buffering).
  int64_t previous = -1;
  for (size_t i = 0; i < old.size(); ++i) {
    plan::Instruction &adamw = old[i];
    if (!plan::isOp(adamw, plan::Op::adamw))
      continue;
    const uint32_t weights = adamw.inputs(0), grad = adamw.inputs(1);
    const int64_t n = plan::Attrs(adamw).i("n");
    // The distributed optimizer's shard comes from its bucket by an all_slice.
    uint32_t owner = weights;
    const int64_t slice = lastWriter(old, weights, i);
    if (planner_.arenaOf(weights) != plan::PARAMETERS) {
      if (slice < 0 || !plan::isOp(old[size_t(slice)], plan::Op::all_slice))
        return Status::error("optimizer_offload: program '" + optimizer.name() +
                             "' instruction " + std::to_string(i) + " (adamw) updates '" +
                             plan_.buffers(weights).name() +
                             "', neither a parameter nor the all_slice of a weight bucket");
      owner = old[size_t(slice)].inputs(0);
      *masters.add_instructions() = old[size_t(slice)];
      moved[size_t(slice)] = true;
    }
    const uint32_t master = masterOf(weights, owner);
    *masters.add_instructions() =
        copyInstruction(plan::Op::copy_to_host, weights, master, n, "master weights");

    uint32_t hostGrad = grad; // grad_offload: the main gradient is on the host
    if (!gradientsOnHost_) {
      const int64_t reduced = lastWriter(old, grad, i);
      hostGrad = planner_.addBufferLike("host:" + plan_.buffers(grad).name(), grad,
                                        plan::HOST_STAGED_GRADIENTS);
      // Before the previous adamw (or this one's, for the first), after the
      // gradient's last writer and the leading reductions.
      const int64_t at = std::max({reduced + 1, leading, previous < 0 ? int64_t(i) : previous});
      after[size_t(at)].push_back(
          copyInstruction(plan::Op::copy_to_host, grad, hostGrad, n, "gradient"));
    }
    previous = int64_t(i);
    recordHostCopies(owner, master, hostGrad);

    planner_.moveToArena(adamw.inputs(2), plan::HOST_OPTIMIZER);
    planner_.moveToArena(adamw.inputs(3), plan::HOST_OPTIMIZER);
    adamw.set_inputs(0, master);
    adamw.set_inputs(1, hostGrad);
    adamw.set_outputs(0, master);
    after[i + 1].push_back(
        copyInstruction(plan::Op::copy_to_device, master, weights, n, "updated weights"));
  }
  optimizer.clear_instructions();
  for (const plan::Instruction &c : after[0])
    *optimizer.add_instructions() = c;
  for (size_t i = 0; i < old.size(); ++i) {
    if (!moved[i])
      *optimizer.add_instructions() = std::move(old[i]);
    for (const plan::Instruction &c : after[i + 1])
      *optimizer.add_instructions() = c;
  }
  return Status::ok();
}

void OptimizerOffload::bindMasterPrograms(plan::Plan &plan) {
  const bool pipelined = plan.mesh().pp() > 1;
  for (plan::StageSchedule &schedule : *plan.mutable_schedule()) {
    const std::string name = programName(pipelined ? schedule.stage() : -1);
    for (int p = 0; p < plan.programs_size(); ++p)
      if (plan.programs(p).name() == name)
        schedule.set_master_weights_program(uint32_t(p));
  }
}

} // namespace mt
