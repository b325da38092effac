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
  std::vector<StagedRun> runs;
  std::map<uint32_t, size_t> open; // gradient -> its run still open
  for (size_t i = 0; i < old.size(); ++i) {
    for (auto [grad, writes] : arenaUses(old[i], plan::GRADIENTS, planner_)) {
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
        runs.push_back({grad, i, i, writes});
      }
    }
  }
  // Members of one bucket (the distributed optimizer's) do not share bytes.
  return stageRuns(program, std::move(old), runs, plan::STAGED_GRADIENTS, "grad_offload",
                   "gradient", /*onlyWhenWritten=*/false, planner_, plan_);
}

void GradOffload::moveGradients() {
  for (const plan::Buffer &b : plan_.buffers())
    if (b.arena() == plan::GRADIENTS)
      planner_.moveToArena(b.id(), plan::HOST_GRADIENTS);
}

} // namespace mt
