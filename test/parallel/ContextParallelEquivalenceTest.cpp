// Context parallelism (cp_comm_type p2p, all_gather and a2a) computes the single rank's
// training step: each of 3 steps' loss and gradient norm, and every updated
// weight, within the fp32 tolerances of test/Tolerances.h, at cp 2 and 4
// and with tp + sp, pp, dp and the distributed optimizer, on rows of
// packed documents (neat_packing) with p2p, all_gather and a2a, and on
// mixture-of-experts models (with ep folded over cp, seq_aux_loss, a
// z-loss and calculate_per_token_loss). The runs are made
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

// a2a needs the heads of a tp rank divisible by cp: the test models' 2 kv
// heads allow cp 2 without tp; llama-4l-kv4 (4 kv heads) runs every layout.
std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *model : {"llama-4l-tied", "qwen2-4l-untied", "qwen3-4l-vocab95"})
    for (std::string layout : {"cp2", "cp4", "cp2_tp2_sp", "cp2_pp2", "cp2_dp2", "cp2_dp2_do"}) {
      for (const char *type : {"_p2p", "_all_gather"})
        all.push_back({model, layout + type});
      if (layout != "cp4" && layout != "cp2_tp2_sp")
        all.push_back({model, layout + "_a2a"});
    }
  for (const char *layout :
       {"cp2", "cp4", "cp2_tp2_sp", "cp2_pp2", "cp2_dp2", "cp2_dp2_do", "cp2_do"})
    all.push_back({"llama-4l-kv4", std::string(layout) + "_a2a"});
  // The distributed optimizer with dp 1 shards the dense buckets over cp.
  for (const char *model : {"llama-4l-tied", "qwen2-4l-untied", "qwen3-4l-vocab95"})
    all.push_back({model, "cp2_do_p2p"});
  // Mixture-of-experts models: every router sees the whole sequence.
  for (const char *model : {"tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe",
                            "tiny-qwen3-moe-seqaux", "tiny-qwen3-moe-per-token"})
    for (const char *layout : {"cp2_p2p", "cp2_all_gather", "cp4_p2p", "cp2_tp2_sp", "cp2_pp2",
                               "cp2_dp2", "cp2_dp2_do", "cp2_ep2", "cp2_dp2_ep2", "cp2_ep2_ag"})
      all.push_back({model, layout});
  // Packed documents (neat_packing).
  for (const char *layout : {"cp2_p2p", "cp2_all_gather", "cp2_a2a", "cp4_p2p", "cp4_all_gather"})
    all.push_back({"qwen3-neat", layout});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ContextParallelEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return test::caseName(std::get<0>(info.param), std::get<1>(info.param));
                         });

} // namespace
} // namespace mt
