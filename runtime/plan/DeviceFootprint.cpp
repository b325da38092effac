// The CUDA backend's arena sizes, computed from the plan alone.
#include "runtime/plan/DeviceFootprint.h"

#include "runtime/plan/OpRegistry.h"

namespace mt::plan {

namespace {
uint64_t roundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

/// The first output of `op` that is kept 32-bit where it is an activation
/// (the outputs after it too); outputs_size when none.
int firstWideOutput(const Instruction &instr) {
  const std::string &op = instr.op();
  if (op == "attention") // the log-sum-exp its backward reads
    return 1;
  if (op == "vocab_parallel_logits_max" || op == "vocab_parallel_predicted_logits")
    return 0; // row statistics
  if (op == "rmsnorm_grad" || op == "add_rmsnorm_grad" || op == "layernorm_grad")
    return 1; // a norm weight's gradient, summed over tp before it is accumulated
  if (op == "moe_router")
    return 0; // the fp32 routing weights, the expert indices and the aux loss
  if (op == "moe_unpermute_grad")
    return 1; // the routing weights' gradient, read by the router's backward
  if (op == "all_slice")
    return 0; // the distributed optimizer's fp32 weight shard AdamW updates
  return instr.outputs_size();
}

/// The distributed optimizer's gradient shards: reduce-scatters of a
/// gradient bucket, read by AdamW in fp32.
bool scattersGradients(const Plan &plan, const Instruction &instr) {
  return instr.op() == "reduce_scatter" && plan.buffers(instr.inputs(0)).arena() == GRADIENTS;
}
} // namespace

std::set<uint32_t> wideActivations(const Plan &plan) {
  std::set<uint32_t> wide;
  for (const Buffer &b : plan.buffers())
    if (b.arena() == ACTIVATIONS && (b.dtype() != F32 || elementsOf(b) == 1))
      wide.insert(b.id());
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions())
      for (int i = scattersGradients(plan, instr) ? 0 : firstWideOutput(instr);
           i < instr.outputs_size(); ++i)
        if (plan.buffers(instr.outputs(i)).arena() == ACTIVATIONS)
          wide.insert(instr.outputs(i));
  return wide;
}

DeviceFootprint deviceFootprint(const Plan &plan) {
  DeviceFootprint f;
  for (uint32_t id : wideActivations(plan)) {
    f.wideOffsets[id] = f.wideActivations;
    f.wideActivations += roundUp(plan.buffers(id).size_bytes(), kWideAlignment);
  }
  for (const Arena &a : plan.arenas()) {
    switch (a.kind()) {
    case PARAMETERS:
      f.weights = a.size_bytes();
      f.shadows = a.size_bytes() / 2;
      break;
    case GRADIENTS:
      f.gradients = a.size_bytes();
      break;
    case OPTIMIZER:
      f.optimizer = a.size_bytes();
      break;
    case ACTIVATIONS: // bf16 at half the planned offsets
      f.activations = roundUp(a.size_bytes() / 2, 64);
      break;
    case INPUTS:
      f.inputs = a.size_bytes();
      break;
    case OUTPUTS:
      f.outputs = a.size_bytes();
      break;
    default:
      break;
    }
  }
  return f;
}

} // namespace mt::plan
