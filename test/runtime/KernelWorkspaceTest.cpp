// The shared kernel workspace of the CUDA backend as the compiler predicts
// it (runtime/plan/KernelWorkspace.h, plan::kernelWorkspace): the
// mixture-of-experts formulas against the byte counts of their layouts,
// worked out here by hand for Qwen3-30B-A3B at 4096 tokens (hidden 2048,
// 128 experts, top-8, expert ffn 768), and the decoding of instructions.
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/KernelWorkspace.h"

#include <gtest/gtest.h>

namespace mt::plan {
namespace {

constexpr uint64_t kKiB = uint64_t(1) << 10, kMiB = uint64_t(1) << 20;

TEST(KernelWorkspace, RouterHoldsItsBuffersEachFrom256Bytes) {
  // probs and dlogits 4096 x 128 fp32 (2 MiB each), weights and indices
  // 4096 x 8 (128 KiB each), the log-sum-exp (16 KiB), 128 fp64 sums
  // (1 KiB), 128 counts (512 bytes), x in fp32 4096 x 2048 (32 MiB).
  EXPECT_EQ(moeRouterWorkspaceBytes(4096, 2048, 128, 8, 1),
            4 * kMiB + 256 * kKiB + 16 * kKiB + kKiB + 512 + 32 * kMiB);
  // seq_aux_loss over 4 sequences: 4 groups of sums and counts.
  EXPECT_EQ(moeRouterWorkspaceBytes(4096, 2048, 128, 8, 4),
            4 * kMiB + 256 * kKiB + 16 * kKiB + 4 * kKiB + 2 * kKiB + 32 * kMiB);
  // Each of the 8 parts rounds up to 256 bytes: 3 tokens of 3 experts, top-1.
  EXPECT_EQ(moeRouterWorkspaceBytes(3, 1, 3, 1, 1), 8 * 256u);
}

TEST(KernelWorkspace, PermutationAndGroupedMlp) {
  // Offsets [129] (516 bytes: 768) and the permutation [32768] (128 KiB).
  EXPECT_EQ(moePermuteWorkspaceBytes(4096, 8, 128), 768 + 128 * kKiB);
  // 32768 rows x 768 in bf16 (48 MiB) once forward, thrice backward; the
  // library path adds 3 calls' a, b and c pointers per expert.
  const uint64_t act = 48 * kMiB, pointers = 3 * 8 * 3 * 128;
  EXPECT_EQ(groupedMlpWorkspaceBytes(32768, 2048, 768, 128, false, ExpertGemmPath::Library),
            act + pointers);
  EXPECT_EQ(groupedMlpWorkspaceBytes(32768, 2048, 768, 128, true, ExpertGemmPath::Library),
            3 * act + pointers);
  // Our kernel: the layout (row and tile starts, 768 bytes each) first.
  EXPECT_EQ(groupedMlpWorkspaceBytes(32768, 2048, 768, 128, true, ExpertGemmPath::Kernel),
            2 * 768 + 3 * act);
  // The tiled path in fp32: offsets, gate and up products, the output
  // [rows, hidden] (256 MiB); the backward also act and dact.
  EXPECT_EQ(groupedMlpWorkspaceBytes(32768, 2048, 768, 128, false, ExpertGemmPath::Tiled),
            768 + 2 * 96 * kMiB + 256 * kMiB);
  EXPECT_EQ(groupedMlpWorkspaceBytes(32768, 2048, 768, 128, true, ExpertGemmPath::Tiled),
            768 + 4 * 96 * kMiB + 256 * kMiB);
  // The expert-parallel chunk sort: 3 words per chunk, one more, one per part.
  EXPECT_EQ(moeSortChunksWorkspaceBytes(8, 16), uint64_t(3 * 128 + 1 + 8) * 4);
}

/// An instruction `op` of `program` with the integer attributes `attrs`.
Instruction &addInstruction(Program &program, const char *op,
                            std::initializer_list<std::pair<const char *, int64_t>> attrs) {
  Instruction &instr = *program.add_instructions();
  instr.set_op(op);
  for (auto [name, value] : attrs) {
    Attribute &a = *instr.add_attributes();
    a.set_name(name);
    a.set_i(value);
  }
  return instr;
}

// Over a plan, the largest need of any instruction, each decoded from its
// attributes as its lowering does; instructions without a kernel
// workspace need none.
TEST(KernelWorkspace, TakesTheLargestInstructionOfThePlan) {
  Plan plan;
  Program &program = *plan.add_programs();
  Instruction &router = addInstruction(
      program, "moe_router_grad",
      {{"tokens", 4096}, {"hidden", 2048}, {"experts", 128}, {"top_k", 8}, {"seq", 1024}});
  Attribute &balancing = *router.add_attributes();
  balancing.set_name("load_balancing_type");
  balancing.set_s("seq_aux_loss");
  EXPECT_EQ(kernelWorkspaceOf(router), moeRouterWorkspaceBytes(4096, 2048, 128, 8, 4));
  EXPECT_EQ(kernelWorkspace(plan), kernelWorkspaceOf(router));

  addInstruction(program, "moe_grouped_mlp_grad",
                 {{"rows", 32768}, {"hidden", 2048}, {"ffn", 768}, {"experts", 128}});
  Instruction &linear = addInstruction(program, "linear", {{"rows", 1 << 20}});
  EXPECT_EQ(kernelWorkspaceOf(linear), 0u);
  EXPECT_EQ(kernelWorkspace(plan), 144 * kMiB + 3 * 8 * 3 * 128);
}

} // namespace
} // namespace mt::plan
