// --profile's tables from known times (no GPU needed).
#include "runtime/cuda/InstructionProfile.h"

#include <gtest/gtest.h>

#include <string>

namespace mt::cuda {
namespace {

TEST(InstructionProfile, ClassesAndOpsPerStep) {
  InstructionProfile profile;
  // Two steps: a linear of 3 ms (host 0.1) and a router of 1 ms that waited
  // 0.9 ms on the host, each step of 5 ms wall.
  for (int step = 0; step < 2; ++step) {
    profile.record(opClass("linear"), "linear", 3.0, 0.1);
    profile.record(opClass("moe_router"), "moe_router", 1.0, 0.9);
    profile.addWork(opClass("linear"), 3e12, 1e9);
    profile.addWall("forward_backward", 5.0);
  }
  profile.addWork("never launched", 1, 1); // no class row of its own
  const std::string report = profile.report();
  EXPECT_NE(report.find("mean over 2 steps"), std::string::npos) << report;
  // 3 ms/step, 60% of the wall, one launch; 6e12 FLOPs over 6 ms = 1000 TFLOP/s.
  EXPECT_NE(report.find("GEMM (linear)                                      3.00   60.0%         1"
                        "         1000.0       333"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("host, launches and idle (wall - kernels)           1.00   20.0%"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("moe_router                                         1.00   20.0%         1"
                        "           0.90"),
            std::string::npos)
      << report;
  EXPECT_EQ(report.find("never launched"), std::string::npos) << report;
  // Ops sorted by device time: the linear first.
  EXPECT_LT(report.find("  linear "), report.find("  moe_router "));
}

} // namespace
} // namespace mt::cuda
