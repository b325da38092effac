// optimizer_offload moves the AdamW update to the host and adds copies,
// not arithmetic; grad_offload keeps the main gradients on the host and
// stages them on the device around each program's uses, adding copies too
// (the gradient norm reads the host copy). On the CPU backend the copies
// are memcpy and the update is the same AdamW kernel on the same fp32
// values in the same order, so for each option alone and both together
// (and with grad_offload the reduced gradient shards on the host under the
// distributed optimizer) and for param_offload (the weights in a host
// arena, staged for each run of uses) alone and with both, the 3 steps'
// losses, gradient norms and every updated weight are bit for bit those of
// the run without it, on one rank, dp2, tp2 x dp2, pp2, pp2 x vpp2,
// pp2 x dp2 and with the distributed optimizer (dp2; tp2 x dp2 with
// overlap_param_gather, which refuses param_offload; pp2 x dp2; a MoE
// model's ep2 x dp2); and so are those of the offloaded run saved after 2
// steps and resumed (its host master weights refilled from the
// checkpoint). The runs are made by run-offload.sh (a ctest fixture).
#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

using Case = std::tuple<std::string, std::string>; // layout, option run

class OffloadEquivalence : public ::testing::TestWithParam<Case> {
protected:
  static std::string run(const std::string &layout, const std::string &option) {
    return std::string(MT_OFFLOAD_RUNS_DIR) + "/" + layout + "." + option;
  }
};

TEST_P(OffloadEquivalence, IsBitIdenticalToTheRunWithoutIt) {
  auto [layout, option] = GetParam();
  test::expectIdenticalTraining(run(layout, "none"), run(layout, option), 3);
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const std::string layout :
       {"one", "dp2", "tp2_dp2", "pp2", "pp2_vpp2", "pp2_dp2", "dp2_distopt", "tp2_dp2_distopt",
        "pp2_dp2_distopt", "ep2_dp2_distopt"})
    for (const std::string option : {"optimizer_offload", "grad_offload",
                                     "grad_optimizer_offload", "param_offload", "all_offload"}) {
      // param_offload is refused with overlap_param_gather (tp2_dp2_distopt's).
      if (layout == "tp2_dp2_distopt" && (option == "param_offload" || option == "all_offload"))
        continue;
      for (const char *resumed : {"", "_resumed"})
        all.push_back({layout, option + resumed});
    }
  return all;
}

INSTANTIATE_TEST_SUITE_P(Options, OffloadEquivalence, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

} // namespace
} // namespace mt
