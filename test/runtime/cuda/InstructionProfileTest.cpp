// --profile's tables from known times (no GPU needed).
#include "runtime/cuda/InstructionProfile.h"

#include <gtest/gtest.h>

#include <string>

namespace mt::cuda {
namespace {

/// Whether the report holds `text`; the report is the failure's message.
::testing::AssertionResult contains(const std::string &report, const std::string &text) {
  if (report.find(text) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "no \"" << text << "\" in:\n" << report;
}

TEST(InstructionProfile, ClassesAndOpsPerStep) {
  InstructionProfile profile;
  // Two steps: a linear of 3 ms (host 0.1) and a router of 1 ms that waited
  // 0.9 ms on the host, each step of 5 ms wall.
  for (int step = 0; step < 2; ++step) {
    profile.record(opClass("linear"), "linear", 3.0, 0.1);
    profile.record(opClass("moe_router"), "moe_router", 1.0, 0.9);
    profile.addWork(opClass("linear"), 3e12, 1e9);
    profile.addWall(5.0);
    profile.addStep();
  }
  profile.addWork("never launched", 1, 1); // no class row of its own
  const std::string report = profile.report();
  EXPECT_TRUE(contains(report, "mean over 2 steps"));
  // 3 ms/step, 60% of the wall, one launch; 6e12 FLOPs over 6 ms = 1000 TFLOP/s.
  EXPECT_TRUE(contains(
      report, "GEMM (linear)                                      3.00   60.0%         1"
              "         1000.0       333"));
  EXPECT_TRUE(contains(report, "host, launches and idle (wall - kernels)           1.00   20.0%"));
  EXPECT_TRUE(contains(
      report, "moe_router                                         1.00   20.0%         1"
              "           0.90"));
  EXPECT_EQ(report.find("never launched"), std::string::npos) << report;
  // Ops sorted by device time: the linear first.
  EXPECT_LT(report.find("  linear "), report.find("  moe_router "));
}

// An op timed inside a replayed graph has no host time of its own: the
// ops table says so instead of printing 0; an op also launched eagerly keeps
// its host time.
TEST(InstructionProfile, OpsTimedInsideAGraph) {
  InstructionProfile profile;
  profile.recordInGraph(opClass("linear"), "linear", 2.0);
  profile.recordInGraph(opClass("linear"), "linear", 2.0);
  profile.recordInGraph(opClass("rmsnorm"), "rmsnorm", 0.5);
  profile.record(opClass("rmsnorm"), "rmsnorm", 0.5, 0.25);
  // One step of two micro-batches and the optimizer: three programs' runs.
  profile.addWall(2.0);
  profile.addWall(2.0);
  profile.addWall(1.0);
  profile.addStep();
  const std::string report = profile.report();
  EXPECT_TRUE(contains(report, "mean over 1 steps"));
  EXPECT_TRUE(contains(report, "inside the replayed CUDA graph"));
  // One step: 4 ms in two launches, 80% of the wall.
  EXPECT_TRUE(contains(
      report, "linear                                             4.00   80.0%         2"
              "       in graph"));
  EXPECT_TRUE(contains(
      report, "rmsnorm                                            1.00   20.0%         2"
              "           0.25"));
  EXPECT_TRUE(contains(report, "host, launches and idle (wall - kernels)           0.00    0.0%"));
}

} // namespace
} // namespace mt::cuda
