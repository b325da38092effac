// The work of a plan instruction for a roofline (FLOPs and bytes).
#include "runtime/plan/Roofline.h"

#include "runtime/plan/OpRegistry.h"

namespace mt::plan {

namespace {

/// Model FLOPs of one instruction (Roofline.h lists the rule).
double flopsOf(const Instruction &instr) {
  const OpSignature *op = findOp(instr.op());
  if (!op)
    return 0;
  const Attrs a(instr);
  auto d = [&](const char *name) { return double(a.i(name)); };
  switch (op->id) {
  case Op::linear:
  case Op::linear_grad_input:
  case Op::linear_grad_weight:
    return 2 * d("tokens") * d("in") * d("out");
  case Op::attention:
  case Op::attention_grad: {
    const double forward = 2 * d("batch") * d("heads") * d("seq") * d("seq") * d("head_dim");
    return op->id == Op::attention ? forward : 2.5 * forward;
  }
  case Op::moe_router:
    return 2 * d("tokens") * d("hidden") * d("experts");
  case Op::moe_grouped_mlp:
    return 6 * d("rows") * d("hidden") * d("ffn");
  case Op::moe_grouped_mlp_grad:
    return 12 * d("rows") * d("hidden") * d("ffn");
  default:
    return 0;
  }
}

} // namespace

InstructionWork instructionWork(const Instruction &instr,
                                const std::function<double(uint32_t, bool)> &movedBytes) {
  InstructionWork work;
  work.flops = flopsOf(instr);
  for (uint32_t id : instr.inputs())
    work.bytes += movedBytes(id, false);
  for (uint32_t id : instr.outputs())
    work.bytes += movedBytes(id, true);
  return work;
}

} // namespace mt::plan
