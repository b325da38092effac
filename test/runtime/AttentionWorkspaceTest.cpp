// Attention's kernel workspace on the CUDA backend as the compiler predicts
// it (runtime/plan/AttentionWorkspace.h, plan::attentionWorkspace): the
// formulas against what cuDNN reported on the H200, and auto's choice of
// kernels per instruction (runtime/cuda/AttentionBackend.cpp planAttention).
#include "runtime/plan/AttentionWorkspace.h"
#include "runtime/plan/DeviceFootprint.h"

#include <gtest/gtest.h>

namespace mt::plan {
namespace {

constexpr uint64_t kMiB = uint64_t(1) << 20, kGiB = uint64_t(1) << 30;

// cudnnAttentionPrepare's figures on the H200 (cuDNN 9, deterministic
// backward, "using cuDNN's fused attention ..., N MiB of workspace"):
// llama3.2-1b, 32 query heads of 64.
TEST(AttentionWorkspace, MatchesCudnnOnTheH200) {
  EXPECT_EQ(cudnnAttentionWorkspaceBytes(4, 32, 2048, 2048, 64, true), 1089 * kMiB);
  EXPECT_EQ(cudnnAttentionWorkspaceBytes(1, 32, 8192, 8192, 64, true), 4161 * kMiB);
  // Without deterministic_mode: the fp32 dQ twice and the softmax sum
  // (2 x 64 + 1 MiB at 1 x 8192; cuDNN said 129 MiB and 256 bytes), the
  // dP of 4 GiB gone.
  EXPECT_EQ(cudnnAttentionWorkspaceBytes(1, 32, 8192, 8192, 64, false), 129 * kMiB);
  EXPECT_EQ(cudnnAttentionWorkspaceBytes(4, 32, 2048, 2048, 64, false), 129 * kMiB);
  // The mtc backward keeps one fp32 per query row.
  EXPECT_EQ(mtcAttentionWorkspaceBytes(4, 32, 2048), 4u * 32 * 2048 * 4);
  // The softmax sum is padded to 256 bytes.
  EXPECT_EQ(cudnnSoftmaxSumBytes(1, 1, 3), 256u);
}

// Auto takes cuDNN while its workspace is at most 1/16 of the device.
TEST(AttentionWorkspace, FitsUpToOneSixteenthOfTheDevice) {
  EXPECT_TRUE(cudnnWorkspaceFits(kGiB, 16 * kGiB));
  EXPECT_FALSE(cudnnWorkspaceFits(kGiB + 1, 16 * kGiB));
}

/// A plan with one program of attention instructions on a mesh with `cp`.
struct AttentionPlan {
  Plan plan;
  explicit AttentionPlan(int64_t cp = 1) {
    plan.mutable_mesh()->set_cp(cp);
    plan.add_programs();
  }
  Instruction &add(const char *op, int64_t batch, int64_t heads, int64_t seq, int64_t kvSeq) {
    Instruction &instr = *plan.mutable_programs(0)->add_instructions();
    instr.set_op(op);
    for (auto [name, value] : {std::pair<const char *, int64_t>{"batch", batch},
                               {"heads", heads},
                               {"kv_heads", heads},
                               {"seq", seq},
                               {"kv_seq", kvSeq},
                               {"head_dim", 64}}) {
      Attribute &a = *instr.add_attributes();
      a.set_name(name);
      a.set_i(value);
    }
    return instr;
  }
};

void setAttr(Instruction &instr, const char *name, int64_t i, const char *s = nullptr) {
  Attribute &a = *instr.add_attributes();
  a.set_name(name);
  if (s)
    a.set_s(s);
  else
    a.set_i(i);
}

TEST(AttentionWorkspace, ChoosesAsAutoDoes) {
  AttentionPlan p;
  p.plan.mutable_training()->set_deterministic_mode(true);
  p.add("attention_grad", 4, 32, 2048, 2048);
  const uint64_t cudnn = 1089 * kMiB, mtc = mtcAttentionWorkspaceBytes(4, 32, 2048);
  AttentionWorkspace w = attentionWorkspace(p.plan, 140 * kGiB);
  EXPECT_EQ(w.kernels, AttentionKernels::Cudnn);
  EXPECT_EQ(w.bytes, cudnn);
  EXPECT_EQ(w.cudnnBytes, cudnn);
  EXPECT_EQ(w.heads, 32);
  // Exactly 1/16 of the device still fits; one byte less of device does not.
  EXPECT_EQ(attentionWorkspace(p.plan, 16 * cudnn).kernels, AttentionKernels::Cudnn);
  w = attentionWorkspace(p.plan, 16 * cudnn - 16);
  EXPECT_EQ(w.kernels, AttentionKernels::MtcOverLimit);
  EXPECT_EQ(w.bytes, mtc);
  EXPECT_EQ(w.cudnnBytes, cudnn);
  // Megatron's default (deterministic_mode: false): no dP, cuDNN fits where
  // its deterministic backward did not.
  p.plan.mutable_training()->set_deterministic_mode(false);
  w = attentionWorkspace(p.plan, 16 * cudnn - 16);
  EXPECT_EQ(w.kernels, AttentionKernels::Cudnn);
  EXPECT_FALSE(w.deterministic);
  EXPECT_EQ(w.bytes, cudnnAttentionWorkspaceBytes(4, 32, 2048, 2048, 64, false));
  EXPECT_LT(w.bytes, cudnn / 8);
}

TEST(AttentionWorkspace, KeepsTheMtcKernelsForDocumentsAndContextParallelism) {
  const uint64_t mtc = mtcAttentionWorkspaceBytes(2, 8, 1024);
  AttentionPlan documents;
  setAttr(documents.add("attention", 2, 8, 1024, 1024), "position_ids", 1);
  AttentionWorkspace w = attentionWorkspace(documents.plan, 140 * kGiB);
  EXPECT_EQ(w.kernels, AttentionKernels::MtcDocuments);
  EXPECT_EQ(w.bytes, 0u); // the mtc forward needs none
  setAttr(documents.add("attention_grad", 2, 8, 1024, 1024), "position_ids", 1);
  w = attentionWorkspace(documents.plan, 140 * kGiB);
  EXPECT_EQ(w.kernels, AttentionKernels::MtcDocuments);
  EXPECT_EQ(w.bytes, mtc);

  // cp_comm_type all_gather: the rank's queries against every rank's keys.
  AttentionPlan gathered(2);
  setAttr(gathered.add("attention_grad", 2, 8, 1024, 2048), "context_parallel_axis", 0, "cp");
  w = attentionWorkspace(gathered.plan, 140 * kGiB);
  EXPECT_EQ(w.kernels, AttentionKernels::MtcContextParallel);
  EXPECT_EQ(w.bytes, mtc);
  EXPECT_EQ(w.kvSeq, 2048);
  // The axis on a mesh of one cp rank is no slice: cuDNN runs it.
  AttentionPlan oneRank(1);
  setAttr(oneRank.add("attention_grad", 2, 8, 1024, 1024), "context_parallel_axis", 0, "cp");
  EXPECT_EQ(attentionWorkspace(oneRank.plan, 140 * kGiB).kernels, AttentionKernels::Cudnn);

  // Ring attention (p2p): the blocks' backward needs the mtc workspace, the
  // blocks' forward none.
  AttentionPlan ring(2);
  ring.add("attention_block", 2, 8, 1024, 1024);
  EXPECT_EQ(attentionWorkspace(ring.plan, 140 * kGiB).kernels, AttentionKernels::None);
  EXPECT_EQ(attentionWorkspace(ring.plan, 140 * kGiB).bytes, 0u);
  ring.add("attention_block_grad", 2, 8, 1024, 1024);
  w = attentionWorkspace(ring.plan, 140 * kGiB);
  EXPECT_EQ(w.kernels, AttentionKernels::MtcContextParallel);
  EXPECT_EQ(w.bytes, mtc);
}

// The kernel workspace is one buffer: the largest need counts. cuDNN's
// forward is predicted to need none.
TEST(AttentionWorkspace, TakesTheLargestInstruction) {
  AttentionPlan p;
  setAttr(p.add("attention_grad", 1, 4, 4096, 4096), "position_ids", 1); // mtc: 64 KiB
  p.add("attention", 1, 4, 512, 512);                                    // cuDNN: 256 B
  p.add("attention_grad", 1, 4, 512, 512);                               // cuDNN: 2.5 MiB
  p.add("attention_grad", 0, 4, 512, 512);                               // empty: none
  const AttentionWorkspace w = attentionWorkspace(p.plan, 140 * kGiB);
  EXPECT_EQ(w.kernels, AttentionKernels::Cudnn);
  EXPECT_EQ(w.bytes, cudnnAttentionWorkspaceBytes(1, 4, 512, 512, 64, false));
  EXPECT_EQ(w.seq, 512);
  EXPECT_EQ(attentionWorkspaceOf(p.plan, p.plan.programs(0).instructions(1), 140 * kGiB).bytes,
            kCudnnAttentionForwardWorkspaceBytes);
}

// A backward whose planned workspace (Instruction.workspace: F32 elements
// the CUDA backend keeps in bf16) holds its need leaves the shared
// workspace nothing; one too small for what the device chooses (planned for
// another device) leaves it the whole need.
TEST(AttentionWorkspace, PlannedWorkspacesLeaveTheSharedOneWhatTheyDoNotHold) {
  AttentionPlan p;
  Instruction &grad = p.add("attention_grad", 4, 32, 2048, 2048);
  const uint64_t need = cudnnAttentionWorkspaceBytes(4, 32, 2048, 2048, 64, false);
  Buffer &ws = *p.plan.add_buffers();
  ws.set_arena(ACTIVATIONS);
  ws.set_dtype(F32);
  // F32 elements of 2 bf16 bytes: `need` bytes from its aligned start on.
  ws.set_size_bytes(2 * (need + kPlannedWorkspaceAlignment));
  grad.set_workspace(0);
  EXPECT_EQ(plannedWorkspaceDeviceBytes(ws), need);
  AttentionWorkspace w = attentionWorkspace(p.plan, 140 * kGiB);
  EXPECT_EQ(w.bytes, 0u);
  EXPECT_EQ(w.plannedBytes, need);
  EXPECT_FALSE(w.backwardShared);
  EXPECT_EQ(w.kernels, AttentionKernels::Cudnn);
  EXPECT_EQ(w.cudnnBytes, need);
  // The forward's need goes to the shared workspace; the backward's is still planned.
  p.add("attention", 4, 32, 2048, 2048);
  w = attentionWorkspace(p.plan, 140 * kGiB);
  EXPECT_EQ(w.bytes, kCudnnAttentionForwardWorkspaceBytes);
  EXPECT_EQ(w.plannedBytes, need);
  EXPECT_FALSE(w.backwardShared);
  // A byte short: the shared workspace takes the need.
  ws.set_size_bytes(2 * (need - 1 + kPlannedWorkspaceAlignment));
  w = attentionWorkspace(p.plan, 140 * kGiB);
  EXPECT_EQ(w.bytes, need);
  EXPECT_EQ(w.plannedBytes, 0u);
  EXPECT_TRUE(w.backwardShared);
  ws.set_size_bytes(2 * (need + kPlannedWorkspaceAlignment));
  // What the compiler plans for a need holds it, 5% more and the alignment.
  EXPECT_EQ(plannedWorkspaceBytes(need), need + need / 20 + kPlannedWorkspaceAlignment);
  // Deterministic on the same plan: dP does not fit the planned bytes.
  p.plan.mutable_training()->set_deterministic_mode(true);
  w = attentionWorkspace(p.plan, 140 * kGiB);
  EXPECT_EQ(w.bytes, 1089 * kMiB);
  EXPECT_EQ(w.plannedBytes, 0u);
  // A second backward without one: the shared workspace takes its need.
  p.plan.mutable_training()->set_deterministic_mode(false);
  p.add("attention_grad", 1, 32, 2048, 2048);
  w = attentionWorkspace(p.plan, 140 * kGiB);
  EXPECT_EQ(w.bytes, cudnnAttentionWorkspaceBytes(1, 32, 2048, 2048, 64, false));
  EXPECT_EQ(w.plannedBytes, need);
}

} // namespace
} // namespace mt::plan
