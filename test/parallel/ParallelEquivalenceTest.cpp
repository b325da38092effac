// Every parallel layout computes the single rank's training step (including
// a vocabulary of 95 that tp pads, and Qwen3's per-head norms): each of 3
// steps' loss and gradient norm, and every updated weight (gathered to full
// HF tensors by --export-hf), within the fp32 tolerances of test/Tolerances.h;
// so does a run resumed on another layout than the one that saved it. The
// runs are made by run-layouts.sh (a ctest fixture).
#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

using Case = std::tuple<std::string, std::string, std::string>; // model, layout, reference

// What run-layouts.sh trains: steps and peak learning rate.
constexpr int kSteps = 3;
constexpr double kLr = 1e-3;

class ParallelEquivalence : public ::testing::TestWithParam<Case> {};

TEST_P(ParallelEquivalence, MatchesTheSingleRank) {
  auto [model, layout, reference] = GetParam();
  test::expectSameTraining(std::string(MT_PARALLEL_RUNS_DIR) + "/" + model + "/", reference,
                           layout, kSteps, kLr);
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *model : {"llama-4l-tied", "qwen2-4l-untied", "qwen3-4l-vocab95"}) {
    for (const char *layout : {"tp2", "tp2_sp", "dp2", "tp2_dp2", "tp2_sp_dp2"})
      all.push_back({model, layout, "single"});
    for (const char *layout : {"pp2", "pp4", "pp2_vpp2", "tp2_pp2", "tp2_pp2_dp2",
                               "tp2_sp_pp2_dp2", "tp2_sp_pp2_vpp2", "pp2_uneven"})
      all.push_back({model, layout, "single"});
    // The distributed optimizer (use_distributed_optimizer).
    for (const char *layout : {"dp2_do", "dp4_do", "tp2_dp2_do", "pp2_dp2_do"})
      all.push_back({model, layout, "single"});
    // Resharding resumes: 2 steps on one layout, the 3rd resumed on another.
    for (const char *layout : {"resumed_tp2_pp2_as_single", "resumed_single_as_tp2_sp_pp2_vpp2"})
      all.push_back({model, layout, "single"});
    // ... with a 3rd step whose learning rate is not 0 (it reads the AdamW
    // state): the distributed optimizer's shards saved with dp 4 and resumed
    // with dp 2, with it and without it, and the other way round.
    for (const char *layout : {"resumed_dp4_do_t4_as_dp2_do_t4", "resumed_dp4_do_t4_as_dp2_t4",
                               "resumed_single_t4_as_dp2_do_t4"})
      all.push_back({model, layout, "single_t4"});
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ParallelEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return test::caseName(std::get<0>(info.param), std::get<1>(info.param));
                         });

} // namespace
} // namespace mt
