// mt-fuse's norm fusions change no bit of a training run on the CPU
// backend: with them (`--no-fuse linear-fc1`) and with `--no-fuse all`, on
// one rank, pp2 x vpp2, tp2 with sequence parallelism and with recomputed
// norms and MLPs, the 3 steps' losses and gradient norms and every updated
// weight are equal. With every fusion (linear-fc1 too) they are equal
// within the parallel layouts' tolerances: one GEMM over the gate and up
// weights tiles its output, and sums the input gradient over both, in
// another order than two GEMMs do (fp32 rounding, as tp's split GEMMs).
// The fused plan contains the fused instructions (the unfused one none),
// and places each MLP's gate and up weights, and their gradients, back to
// back. The runs are made by run-fusion.sh (a ctest fixture).
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

TEST_P(FusionEquivalence, FusedPlanHasTheFusedInstructions) {
  for (const char *op : {"add_rmsnorm", "add_rmsnorm_grad", "chunked_swiglu",
                         "chunked_swiglu_grad"}) {
    EXPECT_GT(countOps(run("fused") + ".plan", op), 0) << op;
    EXPECT_EQ(countOps(run("unfused") + ".plan", op), 0) << op;
  }
  EXPECT_EQ(countOps(run("norms") + ".plan", "chunked_swiglu"), 0);
  // One GEMM for gate and up, forward and for each gradient: one fewer per
  // MLP (and per recomputed copy) than without linear-fc1.
  for (const char *op : {"linear", "linear_grad_input", "linear_grad_weight"})
    EXPECT_LT(countOps(run("fused") + ".plan", op), countOps(run("norms") + ".plan", op)) << op;
}

TEST_P(FusionEquivalence, FusedPlanPlacesGateAndUpBackToBack) {
  auto plan = plan::readPlanDirectory(run("fused") + ".plan");
  ASSERT_TRUE(plan) << plan.message();
  std::map<std::string, const plan::Parameter *> byName;
  for (const plan::Parameter &p : plan->parameters())
    byName[p.name()] = &p;
  int pairs = 0;
  for (auto [name, gate] : byName) {
    auto at = name.find("mlp.gate_proj.");
    if (at == std::string::npos)
      continue;
    std::string upName = name.substr(0, at) + "mlp.up_proj." + name.substr(at + 14);
    ASSERT_TRUE(byName.count(upName)) << upName;
    const plan::Parameter *up = byName[upName];
    for (auto [g, u] : {std::pair{gate->param_buffer(), up->param_buffer()},
                        std::pair{gate->grad_buffer(), up->grad_buffer()}}) {
      const plan::Buffer &bg = plan->buffers(g), &bu = plan->buffers(u);
      EXPECT_EQ(bu.offset_bytes(), bg.offset_bytes() + bg.size_bytes()) << bg.name();
      // The view the fused GEMM reads or writes starts with the gate's.
      int views = 0;
      for (const plan::Buffer &v : plan->buffers())
        if (v.arena() == bg.arena() && v.offset_bytes() == bg.offset_bytes() &&
            v.size_bytes() == bg.size_bytes() + bu.size_bytes())
          ++views;
      EXPECT_GE(views, 1) << bg.name();
    }
    ++pairs;
  }
  EXPECT_GT(pairs, 0);
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *model : {"llama", "qwen3"})
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
