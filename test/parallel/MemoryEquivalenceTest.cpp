// Memory options that move work, not values, change no bit of a training
// run: with the distributed optimizer on dp2, tp2 x dp2 and pp2 x dp2,
// overlap_param_gather (the weight all-gathers behind the next forward)
// gives the 3 steps' losses, gradient norms and every updated weight of the
// run without it, and so does its run saved after 2 steps and resumed (the
// checkpoint holds gathered weights). The runs are made by run-memory.sh (a
// ctest fixture).
#include "runtime/io/Safetensors.h"

#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>


namespace mt {
namespace {


using Case = std::tuple<std::string, std::string>; // layout, option run

class MemoryEquivalence : public ::testing::TestWithParam<Case> {
protected:
  static std::string run(const std::string &layout, const std::string &option) {
    return std::string(MT_MEMORY_RUNS_DIR) + "/" + layout + "." + option;
  }
};

TEST_P(MemoryEquivalence, IsBitIdenticalToTheRunWithoutIt) {
  auto [layout, option] = GetParam();
  test::expectIdenticalTraining(run(layout, "none"), run(layout, option), 3);
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
