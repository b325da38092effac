// mt-fuse changes no bit of a training run on the CPU backend: with its
// fusions and with `--no-fuse all`, on one rank, pp2 x vpp2, tp2 with
// sequence parallelism and with recomputed norms, the 3 steps' losses and
// gradient norms and every updated weight are equal; and the fused plan
// does contain the fused instructions (the unfused one none). The runs are
// made by run-fusion.sh (a ctest fixture).
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"

#include "test/parallel/Metrics.h"

#include <gtest/gtest.h>

#include <cstring>

namespace mt {
namespace {

using test::readMetrics;
using test::Step;

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
  std::vector<Step> ref = readMetrics(run("unfused") + ".jsonl");
  std::vector<Step> got = readMetrics(run("fused") + ".jsonl");
  ASSERT_EQ(ref.size(), 3u);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(got[i].loss, ref[i].loss) << "step " << i + 1;
    EXPECT_EQ(got[i].gradNorm, ref[i].gradNorm) << "step " << i + 1;
  }
  auto a = io::openSafetensors(run("unfused") + ".hf/model.safetensors");
  auto b = io::openSafetensors(run("fused") + ".hf/model.safetensors");
  ASSERT_TRUE(a) << a.message();
  ASSERT_TRUE(b) << b.message();
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  for (const io::TensorInfo &t : a->tensors()) {
    const io::TensorInfo *other = b->find(t.name);
    ASSERT_NE(other, nullptr) << t.name;
    std::vector<float> x(t.numElements()), y(t.numElements());
    ASSERT_TRUE(a->readAsFloat32(t.name, x.data(), x.size()));
    ASSERT_TRUE(b->readAsFloat32(t.name, y.data(), y.size()));
    EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float))) << t.name;
  }
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
