// mt-fuse's norm fusions change no bit of a training run on the CPU
// backend: with them (`--no-fuse linear-fc1,linear-qkv`) and with
// `--no-fuse all`, on one rank, pp2 x vpp2, tp2 with sequence parallelism
// and with recomputed norms and MLPs, the 3 steps' losses and gradient
// norms and every updated weight are equal. With every fusion (linear-fc1,
// linear-qkv, rotary-qkv and swiglu-recompute too) they are equal within the parallel layouts'
// tolerances: one GEMM over the gate and up (or q, k and v) weights sums
// the input gradient over all of them in another order than separate GEMMs
// and adds do (fp32 rounding, as tp's split GEMMs). The fused plan contains
// the fused instructions (the unfused one none), and places each MLP's gate
// and up weights, and each attention's q, k and v weights (and biases), and
// their gradients, back to back. The runs are made by run-fusion.sh (a
// ctest fixture).
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"

#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>


namespace mt {
namespace {


/// Instructions of `op` over every program of the plan in `planDir`.
int countOps(const std::string &planDir, const std::string &op) {
  auto plan = plan::readPlanDirectory(planDir);
  EXPECT_TRUE(plan) << plan.message();
  int n = 0;
  if (plan)
    for (const plan::Program &p : plan->programs())
      for (const plan::Instruction &i : p.instructions())
        n += i.op() == op;
  return n;
}

using Case = std::pair<std::string, std::string>; // model, layout

/// run-fusion.sh's --lr.
constexpr double kLearningRate = 1e-3;

class FusionEquivalence : public ::testing::TestWithParam<Case> {
protected:
  std::string run(const std::string &variant) const {
    return std::string(MT_FUSION_RUNS_DIR) + "/" + GetParam().first + "/" + GetParam().second +
           "." + variant;
  }
};

TEST_P(FusionEquivalence, NormFusionsAreBitIdenticalToTheUnfusedStep) {
  test::expectIdenticalTraining(run("unfused"), run("norms"), 3);
}

TEST_P(FusionEquivalence, AllFusionsMatchTheUnfusedStep) {
  test::expectSameTraining("", run("unfused"), run("fused"), 3, kLearningRate);
}

// swiglu-recompute recomputes the activation bit for bit: every bit of the
// run that keeps it from forward to backward.
TEST_P(FusionEquivalence, SwigluRecomputeIsBitIdenticalToStoringTheActivation) {
  test::expectIdenticalTraining(run("stored"), run("fused"), 3);
  EXPECT_EQ(countOps(run("stored") + ".plan", "chunked_swiglu_recompute_grad"), 0);
}

TEST_P(FusionEquivalence, FusedPlanHasTheFusedInstructions) {
  // rotary-qkv rotates q and k as the packed output is split, unless a
  // per-head norm sits between (Qwen3's q_norm and k_norm).
  const bool rotated = GetParam().first != "qwen3";
  const char *split = rotated ? "split_qkv_rotary" : "split_qkv";
  const char *concat = rotated ? "rotary_concat_qkv" : "concat_qkv";
  // swiglu-recompute recomputes the activation in its gradient, unless
  // mt-recompute recomputes the whole MLP already.
  const bool mlpRecomputed = GetParam().second == "recompute_norms";
  const char *swigluGrad =
      mlpRecomputed ? "chunked_swiglu_grad" : "chunked_swiglu_recompute_grad";
  const char *notSwigluGrad =
      mlpRecomputed ? "chunked_swiglu_recompute_grad" : "chunked_swiglu_grad";
  EXPECT_EQ(countOps(run("fused") + ".plan", notSwigluGrad), 0) << notSwigluGrad;
  for (const char *op : {"add_rmsnorm", "add_rmsnorm_grad", "chunked_swiglu", swigluGrad,
                         split, concat}) {
    EXPECT_GT(countOps(run("fused") + ".plan", op), 0) << op;
    EXPECT_EQ(countOps(run("unfused") + ".plan", op), 0) << op;
  }
  for (const char *op : {"chunked_swiglu", split, concat})
    EXPECT_EQ(countOps(run("norms") + ".plan", op), 0) << op;
  if (rotated) {
    for (const char *op : {"split_qkv", "concat_qkv", "rotary", "rotary_grad"})
      EXPECT_EQ(countOps(run("fused") + ".plan", op), 0) << op;
  }
  // One GEMM for gate and up, and one for q, k and v, forward and for each
  // gradient: fewer per layer (and per recomputed copy) than without
  // linear-fc1 and linear-qkv.
  for (const char *op : {"linear", "linear_grad_input", "linear_grad_weight"})
    EXPECT_LT(countOps(run("fused") + ".plan", op), countOps(run("norms") + ".plan", op)) << op;
}

/// Expects the parameters `names` (of one plan) each with the same suffix
/// after `first` ("mlp.gate_proj.") replaced by the others, their buffers
/// and gradients' placed back to back in this order, and a view of each run
/// (the fused GEMM's operand) starting with the first; returns how many runs.
int expectBackToBack(const plan::Plan &plan, const std::vector<std::string> &names) {
  std::map<std::string, const plan::Parameter *> byName;
  for (const plan::Parameter &p : plan.parameters())
    byName[p.name()] = &p;
  int runs = 0;
  for (auto [name, first] : byName) {
    auto at = name.find(names.front());
    if (at == std::string::npos)
      continue;
    std::vector<const plan::Parameter *> members = {first};
    for (size_t i = 1; i < names.size(); ++i) {
      std::string other =
          name.substr(0, at) + names[i] + name.substr(at + names.front().size());
      EXPECT_TRUE(byName.count(other)) << other;
      if (!byName.count(other))
        return runs;
      members.push_back(byName[other]);
    }
    for (bool grad : {false, true}) {
      auto buffer = [&](const plan::Parameter *p) -> const plan::Buffer & {
        return plan.buffers(grad ? p->grad_buffer() : p->param_buffer());
      };
      const plan::Buffer &head = buffer(members.front());
      uint64_t end = head.offset_bytes() + head.size_bytes();
      for (size_t i = 1; i < members.size(); ++i) {
        EXPECT_EQ(buffer(members[i]).offset_bytes(), end) << buffer(members[i]).name();
        end += buffer(members[i]).size_bytes();
      }
      // The view the fused GEMM reads or writes starts with the first.
      int views = 0;
      for (const plan::Buffer &v : plan.buffers())
        if (v.arena() == head.arena() && v.offset_bytes() == head.offset_bytes() &&
            v.offset_bytes() + v.size_bytes() == end)
          ++views;
      EXPECT_GE(views, 1) << head.name();
    }
    ++runs;
  }
  return runs;
}

TEST_P(FusionEquivalence, FusedPlanPlacesSiblingWeightsBackToBack) {
  auto plan = plan::readPlanDirectory(run("fused") + ".plan");
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_GT(expectBackToBack(*plan, {"mlp.gate_proj.", "mlp.up_proj."}), 0);
  EXPECT_GT(expectBackToBack(
                *plan, {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."}),
            0);
  if (GetParam().first == "qwen2") { // its q, k and v biases too
    EXPECT_GT(expectBackToBack(*plan, {"self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                       "self_attn.v_proj.bias"}),
              0);
  }
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *model : {"llama", "qwen2", "qwen3"})
    for (const char *layout : {"single", "pp2_vpp2", "tp2_sp", "recompute_norms"})
      all.push_back({model, layout});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layouts, FusionEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return info.param.first + "_" + info.param.second;
                         });

} // namespace
} // namespace mt
