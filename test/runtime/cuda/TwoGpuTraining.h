// The gpu2 training tests' common part: a 20-step `--backend cuda` run of a
// plan from bench/gpu-dp.sh --prepare's folder ($MT_GPU_DATA), as one GPU
// or as a two-rank job (one process per GPU, launched like mtrun --nproc 2),
// and the comparison of its losses and gradient norms with the one-GPU
// run's under the bf16 tolerances of test/Tolerances.h.
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

/// A 20-step CUDA run of plans/`plan` on the folder's `data` (the demo
/// corpus's tokens by default; neat.sft: packed documents with position
/// ids), its metrics to `metrics` (none when empty); --backend
/// MT_TEST_BACKEND where set.
inline exec::TrainOptions options(const std::string &plan, const std::string &metrics,
                                  const std::string &data = "corpus.bin") {
  exec::TrainOptions o;
  o.planDir = gpuData() + "/plans/" + plan;
  o.dataPath = gpuData() + "/" + data;
  o.steps = kSteps;
  const char *backend = std::getenv("MT_TEST_BACKEND");
  o.backend = backend ? backend : "cuda";
  o.metricsPath = metrics;
  o.commTimeout = 120s;
  return o;
}

/// Every step's loss and gradient norm, from a metrics file.
struct Curves {
  std::vector<double> loss, gradNorm;
  bool operator==(const Curves &) const = default;
};

inline Curves curves(const std::string &metrics) {
  Curves out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const auto step = nlohmann::json::parse(line);
    out.loss.push_back(step["loss"].get<double>());
    out.gradNorm.push_back(step["grad_norm"].get<double>());
  }
  return out;
}

/// The body of a rank test: trains plans/MT_TEST_PLAN (`defaultPlan` when
/// unset) as this rank on MT_TEST_DATA (options' default when unset), its
/// metrics to MT_TEST_METRICS, on LOCAL_RANK's GPU; where set, for
/// MT_TEST_STEPS steps, with --save MT_TEST_SAVE, --resume MT_TEST_RESUME
/// and, with MT_TEST_PROFILE_COMM=1, --profile-comm, whose report on rank 0
/// must then contain MT_TEST_PROFILE_LINE where set.
/// Skipped when the test runs alone (no MT_RANK).
inline void trainAsRank(const char *defaultPlan) {
  if (!std::getenv("MT_RANK"))
    GTEST_SKIP() << "runs as a rank of a two-GPU job this binary's tests start";
  const char *plan = std::getenv("MT_TEST_PLAN"), *metrics = std::getenv("MT_TEST_METRICS");
  if (!plan)
    plan = defaultPlan;
  ASSERT_TRUE(plan && metrics) << "MT_TEST_PLAN and MT_TEST_METRICS are set by the test";
  const char *data = std::getenv("MT_TEST_DATA");
  exec::TrainOptions o = data ? options(plan, metrics, data) : options(plan, metrics);
  if (const char *steps = std::getenv("MT_TEST_STEPS"))
    o.steps = std::atoll(steps);
  if (const char *save = std::getenv("MT_TEST_SAVE"))
    o.saveDir = save;
  if (const char *resume = std::getenv("MT_TEST_RESUME"))
    o.resumeDir = resume;
  const char *profileComm = std::getenv("MT_TEST_PROFILE_COMM");
  o.profileComm = profileComm && std::string(profileComm) == "1";
  std::ostringstream log;
  auto summary = exec::train(o, log);
  ASSERT_TRUE(summary.isOk()) << summary.message() << "\n" << log.str();
  if (o.profileComm && std::atoi(std::getenv("MT_RANK")) == 0) { // rank 0 reports
    EXPECT_NE(log.str().find("exposed communication per step: "), std::string::npos)
        << log.str();
    if (const char *line = std::getenv("MT_TEST_PROFILE_LINE")) {
      EXPECT_NE(log.str().find(line), std::string::npos) << line << " in\n" << log.str();
    }
  }
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, std::atoi(std::getenv("MT_LOCAL_RANK"))) << "each rank uses its own GPU";
}

/// The curves of the one-GPU run of plans/`plan` on `data`, its metrics to
/// `metrics`.
inline Curves trainOnOneGpu(const std::string &plan, const std::string &metrics,
                            const std::string &data = "corpus.bin") {
  std::ostringstream log;
  auto one = exec::train(options(plan, metrics, data), log);
  EXPECT_TRUE(one.isOk()) << one.message() << "\n" << log.str();
  return curves(metrics);
}

/// Runs this test binary's `rankTest` (a test that trains as one rank of
/// the job, skipped when run alone) as two ranks, with `environment`
/// (name, value) set for them; returns the curves it wrote to `metrics`,
/// which reaches the ranks as MT_TEST_METRICS.
inline Curves
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
  return curves(metrics);
}

/// Checks step 1 and all 20 steps of one curve against the one-GPU run's
/// within `firstTolerance` and `allTolerance` (relative), and reports the
/// worst difference.
inline void expectSameCurve(const std::string &what, const char *quantity,
                            const std::vector<double> &got, const std::vector<double> &want,
                            double firstTolerance, double allTolerance) {
  ASSERT_EQ(got.size(), size_t(kSteps)) << what << " " << quantity;
  ASSERT_EQ(want.size(), size_t(kSteps)) << what << " " << quantity;
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
  const std::string row = std::string("train_step_") + quantity + "(" + what + ")";
  cudatest::reportRow(row, "first step", first, firstTolerance, first <= firstTolerance);
  cudatest::reportRow(row, "20 steps", worst, allTolerance, worst <= allTolerance);
  EXPECT_LE(first, firstTolerance) << what << " " << quantity << " step 1: " << got[0]
                                   << " vs " << want[0];
  EXPECT_LE(worst, allTolerance) << what << " " << quantity << " step " << worstStep + 1
                                 << ": " << got[worstStep] << " vs " << want[worstStep];
  std::printf("%s: %s %.6f -> %.6f vs one GPU %.6f -> %.6f; worst relative difference %.3g "
              "at step %lld\n",
              what.c_str(), quantity, got.front(), got.back(), want.front(), want.back(), worst,
              (long long)worstStep + 1);
}

/// `got` trains as `want` (the one-GPU run): the loss within the bf16
/// training tolerances, and the gradient norm too (it tells apart what the
/// loss moves too little to show within 20 steps, e.g. a tied embedding's
/// halves that are not summed), and the loss falls.
inline void expectSameTraining(const std::string &what, const Curves &got,
                               const Curves &want) {
  namespace tol = mt::tolerance;
  expectSameCurve(what, "loss", got.loss, want.loss, tol::kBf16FirstStepLossRel,
                  tol::kBf16TrainingLossRel);
  expectSameCurve(what, "grad_norm", got.gradNorm, want.gradNorm, tol::kBf16GradNormRel,
                  tol::kBf16TrainingGradNormRel);
  if (!got.loss.empty()) {
    EXPECT_LT(got.loss.back(), got.loss.front()) << what << " trains";
  }
}

/// A checkpoint of the two-GPU plan `plan` stays whole and reshardable: its
/// 20-step run (`rankTest`'s job) against 10 steps saved (--save) then
/// resumed (--resume) to step 20 on the same two GPUs, which continue it
/// bit for bit, and on one GPU with the one-GPU plan `onePlan` of the same
/// model and global batch, which trains as it does within the bf16
/// tolerances. `tmp` prefixes the metrics and the checkpoint.
inline void expectSaveResumes(const std::string &rankTest, const std::string &plan,
                              const std::string &onePlan, const std::string &tmp) {
  const std::string checkpoint = tmp + "-ckpt";
  std::filesystem::remove_all(checkpoint);
  const Curves straight = trainOnTwoGpus(rankTest, tmp + "-straight.jsonl", {{"MT_TEST_PLAN", plan}});
  const Curves first =
      trainOnTwoGpus(rankTest, tmp + "-first.jsonl",
                     {{"MT_TEST_PLAN", plan}, {"MT_TEST_STEPS", "10"}, {"MT_TEST_SAVE", checkpoint}});
  const Curves two = trainOnTwoGpus(rankTest, tmp + "-two.jsonl",
                                    {{"MT_TEST_PLAN", plan}, {"MT_TEST_RESUME", checkpoint}});
  std::filesystem::remove(tmp + "-one.jsonl");
  exec::TrainOptions o = options(onePlan, tmp + "-one.jsonl");
  o.resumeDir = checkpoint;
  std::ostringstream log;
  auto resumed = exec::train(o, log);
  ASSERT_TRUE(resumed.isOk()) << resumed.message() << "\n" << log.str();
  const Curves one = curves(tmp + "-one.jsonl");
  ASSERT_EQ(straight.loss.size(), size_t(kSteps)) << plan;
  ASSERT_EQ(first.loss.size(), size_t(kSteps / 2)) << plan;
  ASSERT_EQ(two.loss.size(), size_t(kSteps / 2)) << plan << " resumed";
  ASSERT_EQ(one.loss.size(), size_t(kSteps / 2)) << plan << " resumed on one GPU";
  auto half = [](const std::vector<double> &v, bool second) {
    return second ? std::vector<double>(v.begin() + kSteps / 2, v.end())
                  : std::vector<double>(v.begin(), v.begin() + kSteps / 2);
  };
  EXPECT_EQ(first.loss, half(straight.loss, false)) << plan;
  EXPECT_EQ(two.loss, half(straight.loss, true)) << plan << " resumed";
  EXPECT_EQ(two.gradNorm, half(straight.gradNorm, true)) << plan << " resumed";
  Curves joined = first;
  joined.loss.insert(joined.loss.end(), one.loss.begin(), one.loss.end());
  joined.gradNorm.insert(joined.gradNorm.end(), one.gradNorm.begin(), one.gradNorm.end());
  expectSameTraining(plan + " saved at step 10, resumed on one GPU", joined, straight);
}

} // namespace mt::twogpu

#endif // MT_TEST_RUNTIME_CUDA_TWOGPUTRAINING_H
