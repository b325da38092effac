// The gpu2 training tests' common part: a 20-step `--backend cuda` run of a
// plan from bench/gpu-dp.sh --prepare's folder ($MT_GPU_DATA), as one GPU
// or as a two-rank job (one process per GPU, launched like mtrun --nproc 2),
// and the comparison of its losses with the one-GPU run's under the bf16
// tolerances of test/Tolerances.h.
#ifndef MT_TEST_RUNTIME_CUDA_TWOGPUTRAINING_H
#define MT_TEST_RUNTIME_CUDA_TWOGPUTRAINING_H

#include "runtime/comm/Launcher.h"
#include "runtime/exec/Trainer.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace mt::twogpu {

using namespace std::chrono_literals;

inline constexpr int64_t kSteps = 20;

inline std::string gpuData() {
  const char *root = std::getenv("MT_GPU_DATA");
  return root ? root : "";
}

/// A 20-step CUDA run of plans/`plan` on the demo corpus, its metrics to
/// `metrics` (none when empty).
inline exec::TrainOptions options(const std::string &plan, const std::string &metrics) {
  exec::TrainOptions o;
  o.planDir = gpuData() + "/plans/" + plan;
  o.dataPath = gpuData() + "/corpus.bin";
  o.steps = kSteps;
  o.backend = "cuda";
  o.metricsPath = metrics;
  o.commTimeout = 120s;
  return o;
}

/// Every step's loss in a metrics file.
inline std::vector<double> losses(const std::string &metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);)
    out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

/// Runs this test binary's `rankTest` (a test that trains as one rank of
/// the job, skipped when run alone) as two ranks, with `environment`
/// (name, value) set for them; returns the losses it wrote to `metrics`,
/// which reaches the ranks as MT_TEST_METRICS.
inline std::vector<double>
trainOnTwoGpus(const std::string &rankTest, const std::string &metrics,
               std::vector<std::pair<std::string, std::string>> environment) {
  std::filesystem::remove(metrics);
  environment.push_back({"MT_TEST_METRICS", metrics});
  for (const auto &[name, value] : environment)
    EXPECT_EQ(setenv(name.c_str(), value.c_str(), 1), 0);
  auto exe = comm::currentExecutable();
  EXPECT_TRUE(exe.isOk()) << exe.message();
  std::ostringstream log;
  auto code = comm::launchLocal(2, {*exe, "--gtest_filter=" + rankTest}, 600s, log);
  for (const auto &[name, value] : environment)
    unsetenv(name.c_str());
  EXPECT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(code.isOk() ? *code : -1, 0) << log.str();
  return losses(metrics);
}

/// Checks the first step and all steps of `got` against `want` (the
/// one-GPU run) within the bf16 tolerances, that `got` trains, and reports
/// the worst relative difference.
inline void expectSameTraining(const std::string &what, const std::vector<double> &got,
                               const std::vector<double> &want) {
  namespace tol = mt::tolerance;
  ASSERT_EQ(got.size(), size_t(kSteps)) << what;
  ASSERT_EQ(want.size(), size_t(kSteps)) << what;
  double worst = 0;
  int64_t worstStep = 0;
  for (int64_t s = 0; s < kSteps; ++s) {
    const double err = std::fabs(got[s] - want[s]) / want[s];
    if (!(err <= worst)) { // NaN counts as the worst
      worst = err;
      worstStep = s;
    }
  }
  const double first = std::fabs(got[0] - want[0]) / want[0];
  cudatest::reportRow("train_step_loss(" + what + ")", "first step", first,
                      tol::kBf16FirstStepLossRel, first <= tol::kBf16FirstStepLossRel);
  cudatest::reportRow("train_step_loss(" + what + ")", "20 steps", worst,
                      tol::kBf16TrainingLossRel, worst <= tol::kBf16TrainingLossRel);
  EXPECT_LE(first, tol::kBf16FirstStepLossRel) << what << " step 1: " << got[0] << " vs "
                                               << want[0];
  EXPECT_LE(worst, tol::kBf16TrainingLossRel)
      << what << " step " << worstStep + 1 << ": " << got[worstStep] << " vs "
      << want[worstStep];
  EXPECT_LT(got.back(), got.front()) << what << " trains";
  std::printf("%s: loss %.6f -> %.6f vs one GPU %.6f -> %.6f; worst relative difference %.3g "
              "at step %lld\n",
              what.c_str(), got.front(), got.back(), want.front(), want.back(), worst,
              (long long)worstStep + 1);
}

} // namespace mt::twogpu

#endif // MT_TEST_RUNTIME_CUDA_TWOGPUTRAINING_H
