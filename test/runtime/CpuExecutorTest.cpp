// What the CPU backend refuses before it runs anything.
#include "runtime/cpu/CpuExecutor.h"

#include <gtest/gtest.h>

namespace mt::cpu {
namespace {

/// A plan of one linear instruction with the given GEMM dimensions and no
/// buffers (the BLAS check reads the attributes only, and comes first).
plan::Plan linearPlan(int64_t tokens, int64_t in, int64_t out) {
  plan::Plan p;
  auto *program = p.add_programs();
  program->set_name("forward_backward");
  auto *instr = program->add_instructions();
  instr->set_op("linear_grad_weight");
  for (auto [name, value] : {std::pair{"tokens", tokens}, {"in", in}, {"out", out}}) {
    auto *a = instr->add_attributes();
    a->set_name(name);
    a->set_i(value);
  }
  return p;
}

TEST(CpuExecutor, RefusesGemmDimensionsPastBlasInts) {
  const plan::Plan ok = linearPlan(INT32_MAX, 8, 8);
  auto memory = exec::HostMemory::create(ok);
  ASSERT_TRUE(memory) << memory.message();
  // INT32_MAX passes the BLAS check; the next check then finds the
  // instruction's missing buffers.
  auto within = CpuExecutor::create(ok, **memory, nullptr);
  ASSERT_FALSE(within);
  EXPECT_EQ(within.message(), "program 'forward_backward' instruction 0 (linear_grad_weight): "
                              "expects 2 inputs and 1 outputs, got 0 and 0");
  const plan::Plan big = linearPlan(int64_t(INT32_MAX) + 1, 8, 8);
  auto executor = CpuExecutor::create(big, **memory, nullptr);
  ASSERT_FALSE(executor);
  EXPECT_EQ(executor.message(), "program 'forward_backward': op 'linear_grad_weight': attribute "
                                "'tokens' = 2147483648 exceeds 2147483647, the largest GEMM "
                                "dimension of the CPU backend's 32-bit BLAS");
}

} // namespace
} // namespace mt::cpu

namespace mt::cpu {
namespace {

// The CPU backend is the reference: every instruction of the table
// generated from ODS has a kernel there (an op added to ODS without one
// fails here, before any plan uses it).
TEST(CpuExecutor, HasAKernelForEveryInstruction) {
  for (const plan::OpSignature &op : plan::allOps())
    EXPECT_TRUE(CpuExecutor::hasKernel(op.id)) << op.name << " has no CPU kernel";
}

} // namespace
} // namespace mt::cpu
