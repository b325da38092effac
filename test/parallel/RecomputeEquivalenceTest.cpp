// Activation recompute changes no bit of a training run: with each option,
// on one rank, tp2 x dp2, tp2 x sp x dp2, pp2 x dp2 and pp2 x vpp2 (and a
// MoE model on one rank and pp2 x dp2), the 3 steps' losses and gradient
// norms and every updated weight equal those of the run without it; and the
// plan's activation arena is smaller. The runs are made by
// run-recompute.sh (a ctest fixture).
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>

namespace mt {
namespace {

struct Step {
  double loss, gradNorm;
};

/// The metrics written by mtrun (JSON numbers round-trip a double exactly).
std::vector<Step> readMetrics(const std::string &path) {
  std::vector<Step> steps;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    steps.push_back({j["loss"].get<double>(), j["grad_norm"].get<double>()});
  }
  return steps;
}

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
  const std::string option = std::get<2>(GetParam());
  std::vector<Step> ref = readMetrics(run("none") + ".jsonl");
  std::vector<Step> got = readMetrics(run(option) + ".jsonl");
  ASSERT_EQ(ref.size(), 3u);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(got[i].loss, ref[i].loss) << "step " << i + 1;
    EXPECT_EQ(got[i].gradNorm, ref[i].gradNorm) << "step " << i + 1;
  }
  auto a = io::openSafetensors(run("none") + ".hf/model.safetensors");
  auto b = io::openSafetensors(run(option) + ".hf/model.safetensors");
  ASSERT_TRUE(a) << a.message();
  ASSERT_TRUE(b) << b.message();
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  for (const io::TensorInfo &t : a->tensors()) {
    const io::TensorInfo *other = b->find(t.name);
    ASSERT_NE(other, nullptr) << t.name;
    ASSERT_EQ(other->shape, t.shape) << t.name;
    std::vector<float> x(t.numElements()), y(t.numElements());
    ASSERT_TRUE(a->readAsFloat32(t.name, x.data(), x.size()));
    ASSERT_TRUE(b->readAsFloat32(t.name, y.data(), y.size()));
    EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float))) << t.name;
  }
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
