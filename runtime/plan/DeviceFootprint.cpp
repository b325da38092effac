// The CUDA backend's arena sizes, computed from the plan alone.
#include "runtime/plan/DeviceFootprint.h"

#include "runtime/plan/OpRegistry.h"

namespace mt::plan {

namespace {
uint64_t roundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }
} // namespace

std::set<uint32_t> wideActivations(const Plan &plan) {
  std::set<uint32_t> wide;
  for (const Buffer &b : plan.buffers())
    if (b.arena() == ACTIVATIONS && (b.dtype() != F32 || elementsOf(b) == 1))
      wide.insert(b.id());
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions())
      if (instr.op() == "attention")
        wide.insert(instr.outputs(1));
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
