// Expert parallelism (Megatron-Core's MoE parallel folding, alltoall and
// allgather dispatchers), with tensor parallelism too, and expert tensor
// parallelism (expert_tensor_parallel_size 1 and 2), with the distributed
// optimizer too (experts sharded over edp whatever etp is),
// computes the single rank's training step of the tiny MoE
// models: each of 3 steps' loss and gradient norm, and every updated weight
// (whole experts gathered by --export-hf), within the fp32 tolerances of
// test/Tolerances.h; so do runs resumed from a checkpoint saved on another
// layout. The runs are made by run-expert-layouts.sh (a ctest fixture).
#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

using Case = std::pair<std::string, std::string>; // model, layout

// What run-expert-layouts.sh trains: steps and peak learning rate.
constexpr double kSteps = 3, kLr = 1e-3;

class ExpertParallelEquivalence : public ::testing::TestWithParam<Case> {};

TEST_P(ExpertParallelEquivalence, MatchesTheSingleRank) {
  auto [model, layout] = GetParam();
  test::expectSameTraining(std::string(MT_EXPERT_RUNS_DIR) + "/" + model + "/", "single", layout,
                           kSteps, kLr);
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const char *model : {"tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"})
    for (const char *layout : {"ep2", "ep4", "ep2_dp4", "ep2_pp2", "ep2_dp4_pp2", "ep2_do",
                               "ep2_dp4_do", "resumed_ep2_as_single", "resumed_single_as_ep4",
                               "resumed_ep2_dp4_do_as_single", "resumed_single_as_ep2_dp4_do",
                               "ep2_ag", "ep2_dp4_ag", "ep2_pp2_ag", "etp2", "ep2_etp2",
                               "ep2_etp2_ag", "etp2_dp4_do", "resumed_etp2_dp4_do_as_single",
                               "resumed_single_as_etp2_dp4_do"})
      all.push_back({model, layout});
  // Tensor parallelism of MoE layers (etp 1 and 2; Qwen2-MoE's shared
  // expert column/row-parallel, its gate replicated).
  for (const char *model : {"tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"})
    for (const char *layout :
         {"ep2_tp2", "ep2_tp2_sp", "tp2_sp", "ep2_tp2_dp2_sp", "tp2_sp_dp2_do", "ep2_tp2_sp_ag",
          "tp2_etp2", "tp2_sp_etp2", "ep2_tp2_etp2", "ep2_tp2_sp_etp2", "ep2_tp2_dp2_sp_do",
          "tp2_dp2_etp2_do", "ep2_tp2_dp4_etp2_do", "ep2_tp2_dp4_etp2_do_ag", "tp2_do",
          "tp2_etp2_pp2", "ep2_tp2_pp2", "ep2_pp2_do"})
      all.push_back({model, layout});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ExpertParallelEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return test::caseName(info.param.first, info.param.second);
                         });

} // namespace
} // namespace mt
