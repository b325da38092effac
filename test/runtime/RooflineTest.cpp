// The roofline's work of an instruction (runtime/plan/Roofline.h): model
// FLOPs by docs/FLOPS.md's rule, and the bytes of every operand.
#include "runtime/plan/Roofline.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <utility>

namespace mt::plan {
namespace {

Instruction make(const std::string &op, std::initializer_list<std::pair<const char *, int64_t>> attrs,
                 std::initializer_list<uint32_t> inputs, std::initializer_list<uint32_t> outputs) {
  Instruction instr;
  instr.set_op(op);
  for (auto [name, value] : attrs) {
    Attribute *a = instr.add_attributes();
    a->set_name(name);
    a->set_i(value);
  }
  for (uint32_t id : inputs)
    instr.add_inputs(id);
  for (uint32_t id : outputs)
    instr.add_outputs(id);
  return instr;
}

/// Buffer i moves 10^i bytes, outputs 3 times that: each operand shows.
double moved(uint32_t id, bool isOutput) {
  double bytes = 1;
  for (uint32_t i = 0; i < id; ++i)
    bytes *= 10;
  return isOutput ? 3 * bytes : bytes;
}

TEST(RooflineTest, GemmsCountTwoFlopsPerMultiplyAdd) {
  for (const char *op : {"linear", "linear_grad_input", "linear_grad_weight"}) {
    InstructionWork w = instructionWork(
        make(op, {{"tokens", 8}, {"in", 3}, {"out", 5}}, {0, 1}, {2}), moved);
    EXPECT_EQ(w.flops, 2.0 * 8 * 3 * 5) << op;
    EXPECT_EQ(w.bytes, 1 + 10 + 300) << op;
  }
}

TEST(RooflineTest, AttentionCountsTheCausalHalfAndTheBackwardTwoAndAHalfTimes) {
  auto attrs = {std::pair<const char *, int64_t>{"batch", 2}, {"seq", 16}, {"heads", 4},
                {"kv_heads", 2}, {"head_dim", 8}};
  // 4 * batch * heads * seq^2 * head_dim / 2 (QK^T and PV, causal half).
  const double forward = 2.0 * 2 * 4 * 16 * 16 * 8;
  EXPECT_EQ(instructionWork(make("attention", attrs, {0, 1, 2}, {3, 4}), moved).flops, forward);
  EXPECT_EQ(instructionWork(make("attention_grad", attrs, {0}, {1}), moved).flops,
            2.5 * forward);
}

TEST(RooflineTest, MemoryBoundInstructionsHaveBytesOnly) {
  InstructionWork w =
      instructionWork(make("add_rmsnorm", {{"rows", 4}, {"dim", 8}}, {0, 1, 2}, {3, 4}), moved);
  EXPECT_EQ(w.flops, 0);
  EXPECT_EQ(w.bytes, 1 + 10 + 100 + 3000 + 30000);
}

} // namespace
} // namespace mt::plan
