// The work of a plan instruction for a roofline: the model FLOPs of its
// matrix products and the bytes it moves at least, so that a profile can
// turn its time into achieved TFLOP/s or GB/s (mtrun --profile).
#ifndef MT_RUNTIME_PLAN_ROOFLINE_H
#define MT_RUNTIME_PLAN_ROOFLINE_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <functional>

namespace mt::plan {

struct InstructionWork {
  double flops = 0; // multiply-adds count 2
  double bytes = 0;
};

/// The work of `instr`. FLOPs, by docs/FLOPS.md's rule per instruction:
/// linear, linear_grad_input and linear_grad_weight 2·tokens·in·out;
/// attention the causal half of QK^T and PV, 2·batch·heads·seq²·head_dim
/// (with position_ids, documents packed in a row, as if one document:
/// an upper bound); attention_grad 2.5 times that (its five products
/// against the forward's two, FlashAttention-2's count); moe_router
/// 2·tokens·hidden·experts; moe_grouped_mlp 6·rows·hidden·ffn and its
/// gradient twice that (its six products: the forward's fc1_output holds
/// the gate and up products, which it no longer recomputes); every other
/// instruction none. Bytes: each input
/// and each output once, `movedBytes(buffer id, isOutput)` each (what the
/// backend reads or writes of it: bf16 activations at half their planned
/// size on the GPU), a lower bound of the traffic (a kernel that re-reads
/// a row or adds into an output moves more).
InstructionWork instructionWork(const Instruction &instr,
                                const std::function<double(uint32_t, bool)> &movedBytes);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_ROOFLINE_H
