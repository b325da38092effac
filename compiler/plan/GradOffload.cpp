// grad_offload's rewrite of the programs: the main gradients in a host
// arena, staged on the device for each run of device uses, and the copies
// between them.
#include "compiler/plan/GradOffload.h"

#include "compiler/plan/OptimizerOffload.h"

#include "runtime/plan/OpRegistry.h"

#include <map>
#include <vector>

namespace mt {
namespace {

plan::Instruction copyInstruction(plan::Op op, uint32_t from, uint32_t to, int64_t n,
                                  const std::string &what) {
  return offloadCopy(op, from, to, n, "grad_offload: " + what);
}

/// A run of consecutive device uses of one gradient in a program.
struct Run {
  uint32_t grad = 0, staged = 0;
  size_t first = 0, last = 0;
  bool writes = false;
};

void replace(google::protobuf::RepeatedField<uint32_t> &ids, uint32_t from, uint32_t to) {
  for (uint32_t &id : ids)
    if (id == from)
      id = to;
}

} // namespace

bool GradOffload::readsOnHost(const plan::Instruction &in, uint32_t grad) const {
  if (plan::isOp(in, plan::Op::sum_squares))
    return true;
  return hostAdamW_ && plan::isOp(in, plan::Op::adamw) && in.inputs_size() > 1 &&
         in.inputs(1) == grad;
}

void GradOffload::offloadShards(const std::vector<plan::Instruction> &program) {
  for (const plan::Instruction &in : program)
    if (plan::isOp(in, plan::Op::reduce_scatter) && in.inputs_size() == 1 &&
        in.outputs_size() == 1 && planner_.arenaOf(in.inputs(0)) == plan::GRADIENTS &&
        planner_.arenaOf(in.outputs(0)) == plan::ACTIVATIONS) {
      planner_.moveToArena(in.outputs(0), plan::GRADIENTS);
      planner_.placeWith(in.outputs(0), in.inputs(0)); // its bucket's pipeline stage
      for (plan::Bucket &b : *plan_.mutable_buckets())
        if (b.grad_buffer() == in.inputs(0))
          b.set_host_grad_buffer(in.outputs(0)); // so that the plan's reader knows its stage
    }
}

Status GradOffload::rewrite(plan::Program &program) {
  std::vector<plan::Instruction> old(program.instructions().begin(),
                                     program.instructions().end());
  offloadShards(old);
  // Each gradient's runs, in program order; a host use ends the open one.
  std::vector<Run> runs;
  std::map<uint32_t, size_t> open; // gradient -> its run still open
  for (size_t i = 0; i < old.size(); ++i) {
    std::map<uint32_t, bool> used; // gradient -> written here
    for (uint32_t id : old[i].inputs())
      if (planner_.arenaOf(id) == plan::GRADIENTS)
        used.try_emplace(id, false);
    for (uint32_t id : old[i].outputs())
      if (planner_.arenaOf(id) == plan::GRADIENTS)
        used[id] = true;
    for (auto [grad, writes] : used) {
      if (readsOnHost(old[i], grad)) {
        if (writes)
          return Status::error("grad_offload: program '" + program.name() + "' instruction " +
                               std::to_string(i) + " (" + old[i].op() + ") writes '" +
                               plan_.buffers(grad).name() +
                               "' on the host; only device instructions write gradients");
        open.erase(grad);
      } else if (auto it = open.find(grad); it != open.end()) {
        runs[it->second].last = i;
        runs[it->second].writes |= writes;
      } else {
        open[grad] = runs.size();
        runs.push_back({grad, 0, i, i, writes});
      }
    }
  }
  // Views of one gradient's bytes staged at once would each hold a copy of
  // them (members of one bucket, the distributed optimizer's, do not share).
  for (size_t a = 0; a < runs.size(); ++a)
    for (size_t b = a + 1; b < runs.size(); ++b)
      if (runs[a].grad != runs[b].grad && planner_.overlaps(runs[a].grad, runs[b].grad) &&
          runs[a].first <= runs[b].last && runs[b].first <= runs[a].last)
        return Status::error(
            "grad_offload: program '" + program.name() + "' uses '" +
            plan_.buffers(runs[a].grad).name() + "' (instructions " +
            std::to_string(runs[a].first) + ".." + std::to_string(runs[a].last) + ") and '" +
            plan_.buffers(runs[b].grad).name() + "' (" + std::to_string(runs[b].first) + ".." +
            std::to_string(runs[b].last) + "), views of one gradient, at once");
  // before[i]: copies to the device before old instruction i; after[i]: to
  // the host after it (a gap's copies to the host come first: a view's
  // run may start where another's ended).
  std::vector<std::vector<plan::Instruction>> before(old.size()), after(old.size());
  for (Run &r : runs) {
    const int64_t n = plan::elementsOf(plan_.buffers(r.grad));
    r.staged = planner_.addBufferLike("staged:" + plan_.buffers(r.grad).name(), r.grad,
                                      plan::STAGED_GRADIENTS);
    for (size_t i = r.first; i <= r.last; ++i) {
      replace(*old[i].mutable_inputs(), r.grad, r.staged);
      replace(*old[i].mutable_outputs(), r.grad, r.staged);
    }
    before[r.first].push_back(
        copyInstruction(plan::Op::copy_to_device, r.grad, r.staged, n, "gradient to the device"));
    if (r.writes)
      after[r.last].push_back(
          copyInstruction(plan::Op::copy_to_host, r.staged, r.grad, n, "gradient to the host"));
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

void GradOffload::moveGradients() {
  for (const plan::Buffer &b : plan_.buffers())
    if (b.arena() == plan::GRADIENTS)
      planner_.moveToArena(b.id(), plan::HOST_GRADIENTS);
}

} // namespace mt
