// Context parallelism (cp_comm_type p2p and all_gather) computes the single rank's
// training step: each of 3 steps' loss and gradient norm, and every updated
// weight, within the fp32 tolerances of test/Tolerances.h, at cp 2 and 4
// and with tp + sp, pp, dp and the distributed optimizer. The runs are made
// by run-context-parallel.sh (a ctest fixture).
#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

using Case = std::tuple<std::string, std::string>; // model, layout

class ContextParallelEquivalence : public ::testing::TestWithParam<Case> {};

TEST_P(ContextParallelEquivalence, MatchesTheSingleRank) {
  auto [model, layout] = GetParam();
  // run-context-parallel.sh trains 3 steps at a peak learning rate of 1e-3.
  test::expectSameTraining(std::string(MT_CP_RUNS_DIR) + "/" + model + "/", "single", layout,
                           3, 1e-3);
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *model : {"llama-4l-tied", "qwen2-4l-untied", "qwen3-4l-vocab95"})
    for (const char *layout : {"cp2", "cp4", "cp2_tp2_sp", "cp2_pp2", "cp2_dp2", "cp2_dp2_do"})
      for (const char *type : {"_p2p", "_all_gather"})
        all.push_back({model, std::string(layout) + type});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ContextParallelEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return test::caseName(std::get<0>(info.param), std::get<1>(info.param));
                         });

} // namespace
} // namespace mt
