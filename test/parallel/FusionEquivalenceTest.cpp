// mt-fuse changes no bit of a training run on the CPU backend: with its
// fusions and with `--no-fuse all`, on one rank, pp2 x vpp2, tp2 with
// sequence parallelism and with recomputed norms, the 3 steps' losses and
// gradient norms and every updated weight are equal; and the fused plan
// does contain the fused instructions (the unfused one none). The runs are
// made by run-fusion.sh (a ctest fixture).
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"

#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>


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

class FusionEquivalence : public ::testing::TestWithParam<Case> {
protected:
  std::string run(const std::string &variant) const {
    return std::string(MT_FUSION_RUNS_DIR) + "/" + GetParam().first + "/" + GetParam().second +
           "." + variant;
  }
};

TEST_P(FusionEquivalence, IsBitIdenticalToTheUnfusedStep) {
  test::expectIdenticalTraining(run("unfused"), run("fused"), 3);
}

TEST_P(FusionEquivalence, FusedPlanHasTheFusedInstructions) {
  EXPECT_GT(countOps(run("fused") + ".plan", "add_rmsnorm"), 0);
  EXPECT_GT(countOps(run("fused") + ".plan", "add_rmsnorm_grad"), 0);
  EXPECT_EQ(countOps(run("unfused") + ".plan", "add_rmsnorm"), 0);
  EXPECT_EQ(countOps(run("unfused") + ".plan", "add_rmsnorm_grad"), 0);
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
