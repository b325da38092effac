// Memory options that move work, not values, change no bit of a training
// run: with the distributed optimizer on dp2, tp2 x dp2 and pp2 x dp2,
// overlap_param_gather (the weight all-gathers behind the next forward)
// gives the 3 steps' losses, gradient norms and every updated weight of the
// run without it, and so does its run saved after 2 steps and resumed (the
// checkpoint holds gathered weights). The runs are made by run-memory.sh (a
// ctest fixture).
#include "runtime/io/Safetensors.h"

#include "test/parallel/Metrics.h"

#include <gtest/gtest.h>

#include <cstring>

namespace mt {
namespace {

using test::readMetrics;
using test::Step;

using Case = std::tuple<std::string, std::string>; // layout, option run

class MemoryEquivalence : public ::testing::TestWithParam<Case> {
protected:
  static std::string run(const std::string &layout, const std::string &option) {
    return std::string(MT_MEMORY_RUNS_DIR) + "/" + layout + "." + option;
  }
};

TEST_P(MemoryEquivalence, IsBitIdenticalToTheRunWithoutIt) {
  auto [layout, option] = GetParam();
  const std::string ref = run(layout, "none"), got = run(layout, option);
  std::vector<Step> a = readMetrics(ref + ".jsonl"), b = readMetrics(got + ".jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].loss, a[i].loss) << "step " << i + 1;
    EXPECT_EQ(b[i].gradNorm, a[i].gradNorm) << "step " << i + 1;
  }
  auto x = io::openSafetensors(ref + ".hf/model.safetensors");
  auto y = io::openSafetensors(got + ".hf/model.safetensors");
  ASSERT_TRUE(x) << x.message();
  ASSERT_TRUE(y) << y.message();
  ASSERT_EQ(x->tensors().size(), y->tensors().size());
  for (const io::TensorInfo &t : x->tensors()) {
    const io::TensorInfo *other = y->find(t.name);
    ASSERT_NE(other, nullptr) << t.name;
    ASSERT_EQ(other->shape, t.shape) << t.name;
    std::vector<float> u(t.numElements()), v(t.numElements());
    ASSERT_TRUE(x->readAsFloat32(t.name, u.data(), u.size()));
    ASSERT_TRUE(y->readAsFloat32(t.name, v.data(), v.size()));
    EXPECT_EQ(0, std::memcmp(u.data(), v.data(), u.size() * sizeof(float))) << t.name;
  }
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *layout : {"dp2", "tp2_dp2", "pp2_dp2"})
    for (const char *option : {"overlap_param_gather", "overlap_param_gather_resumed"})
      all.push_back({layout, option});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Options, MemoryEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

} // namespace
} // namespace mt
