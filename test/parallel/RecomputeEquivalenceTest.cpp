// Activation recompute changes no bit of a training run: with each option,
// on one rank, tp2 x dp2, tp2 x sp x dp2, pp2 x dp2 and pp2 x vpp2 (and a
// MoE model on one rank and pp2 x dp2), the 3 steps' losses and gradient
// norms and every updated weight equal those of the run without it; and the
// plan's activation arena is smaller. The runs are made by
// run-recompute.sh (a ctest fixture).
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"

#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace mt {
namespace {


uint64_t activationArena(const std::string &planDir) {
  auto plan = plan::readPlanDirectory(planDir);
  EXPECT_TRUE(plan) << plan.message();
  if (!plan)
    return 0;
  for (const plan::Arena &a : plan->arenas())
    if (a.kind() == plan::ACTIVATIONS)
      return a.size_bytes();
  return 0;
}

using Case = std::tuple<std::string, std::string, std::string>; // model, layout, option

class RecomputeEquivalence : public ::testing::TestWithParam<Case> {
protected:
  std::string run(const std::string &option) const {
    auto [model, layout, _] = GetParam();
    return std::string(MT_RECOMPUTE_RUNS_DIR) + "/" + model + "/" + layout + "." + option;
  }
};

TEST_P(RecomputeEquivalence, IsBitIdenticalToNoRecompute) {
  test::expectIdenticalTraining(run("none"), run(std::get<2>(GetParam())), 3);
}

TEST_P(RecomputeEquivalence, PlansFewerActivationBytes) {
  uint64_t without = activationArena(run("none") + ".plan");
  uint64_t with = activationArena(run(std::get<2>(GetParam())) + ".plan");
  EXPECT_GT(without, 0u);
  EXPECT_LT(with, without);
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *layout : {"single", "tp2_dp2", "pp2_dp2", "tp2_sp_dp2", "pp2_vpp2"})
    for (const char *option : {"full_uniform1", "full_uniform2", "full_block1", "core_attn", "mlp",
                               "layernorm", "selective_all"})
      if (std::string(layout) != "pp2_vpp2" || std::string(option) != "full_uniform2")
        all.push_back({"llama", layout, option}); // chunks of one layer there
  for (const char *layout : {"single", "pp2_dp2"})
    for (const char *option : {"full_uniform1", "moe_layer_recompute", "moe_all"})
      all.push_back({"moe", layout, option});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Options, RecomputeEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param) + "_" +
                                  std::get<2>(info.param);
                         });

} // namespace
} // namespace mt
