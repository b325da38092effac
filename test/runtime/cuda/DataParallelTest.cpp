// Data parallelism on two GPUs (label gpu2): `mtrun --backend cuda` ranks,
// one per GPU, train the demo model's dp2 plan for 20 steps, the gradients
// averaged over dp by NCCL, and every step's loss (the mean over dp) is
// held to the bf16 tolerance of test/Tolerances.h against the one-GPU run
// of the same global batch, with the all-reduce in the optimizer and
// overlapped with backward; the tp2 and tp2+sp plans of the demo model and
// a tiny Qwen3 likewise. The plans are compiled on a machine with the
// compiler (bench/gpu-dp.sh --prepare) into $MT_GPU_DATA/plans, the tokens
// in $MT_GPU_DATA/corpus.bin.
#include "runtime/comm/Launcher.h"
#include "runtime/exec/Trainer.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mt {
namespace {

namespace tol = mt::tolerance;
using namespace std::chrono_literals;

constexpr int64_t kSteps = 20;

std::string gpuData() {
  const char *root = std::getenv("MT_GPU_DATA");
  return root ? root : "";
}

exec::TrainOptions options(const std::string &plan, const std::string &metrics) {
  exec::TrainOptions o;
  o.planDir = gpuData() + "/plans/" + plan;
  o.dataPath = gpuData() + "/corpus.bin";
  o.steps = kSteps;
  o.backend = "cuda";
  o.metricsPath = metrics;
  o.commTimeout = 120s;
  return o;
}

std::vector<double> losses(const std::string &metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);)
    out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

// One rank of the jobs that LossesMatchOneGpu start (the plan MT_TEST_PLAN,
// default demo-dp2); skipped when run alone.
TEST(DataParallel, RankOfTwoGpuJob) {
  if (!std::getenv("MT_RANK"))
    GTEST_SKIP() << "runs as a rank of DataParallel.LossesMatchOneGpu";
  const char *metrics = std::getenv("MT_TEST_DP_METRICS");
  ASSERT_TRUE(metrics) << "MT_TEST_DP_METRICS is set by DataParallel.LossesMatchOneGpu";
  std::ostringstream log;
  const char *plan = std::getenv("MT_TEST_PLAN");
  auto summary = exec::train(options(plan ? plan : "demo-dp2", metrics), log);
  ASSERT_TRUE(summary.isOk()) << summary.message() << "\n" << log.str();
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, std::atoi(std::getenv("MT_LOCAL_RANK"))) << "each rank uses its own GPU";
}

/// The losses of a two-GPU job of this test's RankOfTwoGpuJob; `environment`
/// (name, value) reaches its ranks.
std::vector<double> trainOnTwoGpus(const std::string &metrics,
                                   const std::vector<std::pair<std::string, std::string>> &environment) {
  std::filesystem::remove(metrics);
  EXPECT_EQ(setenv("MT_TEST_DP_METRICS", metrics.c_str(), 1), 0);
  for (const auto &[name, value] : environment)
    EXPECT_EQ(setenv(name.c_str(), value.c_str(), 1), 0);
  auto exe = comm::currentExecutable();
  EXPECT_TRUE(exe.isOk()) << exe.message();
  std::ostringstream log;
  auto code = comm::launchLocal(2, {*exe, "--gtest_filter=DataParallel.RankOfTwoGpuJob"}, 600s,
                                log);
  for (const auto &[name, value] : environment)
    unsetenv(name.c_str());
  EXPECT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(code.isOk() ? *code : -1, 0) << log.str();
  return losses(metrics);
}

/// The worst relative difference of two runs' losses; reports and checks
/// the first step and all steps against the bf16 tolerances.
void expectSameTraining(const std::string &what, const std::vector<double> &got,
                        const std::vector<double> &want) {
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

// With the gradient all-reduce in the optimizer (MT_CUDA_OVERLAP=0) and
// overlapped with backward in buckets of at most 100,000 elements (dozens
// of buckets on the demo model, so their order against backward counts).
TEST(DataParallel, LossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/demo-dp2/plan.pb"));
  const std::string tmp = ::testing::TempDir() + "/mt-dp2";
  const auto reduced = trainOnTwoGpus(tmp + "-reduce.jsonl", {{"MT_CUDA_OVERLAP", "0"}});
  const auto overlapped =
      trainOnTwoGpus(tmp + "-overlap.jsonl", {{"MT_CUDA_BUCKET_ELEMENTS", "100000"}});
  std::ostringstream log;
  auto one = exec::train(options("demo", tmp + "-one.jsonl"), log);
  ASSERT_TRUE(one.isOk()) << one.message();
  const auto single = losses(tmp + "-one.jsonl");
  expectSameTraining("dp2", reduced, single);
  expectSameTraining("dp2 overlapped", overlapped, single);
  // The same sums, only earlier: the same bits.
  EXPECT_EQ(overlapped, reduced);
}

// Tensor parallelism (with and without sequence parallelism) on two GPUs
// against one GPU, from the same weights and data: the demo model and a
// tiny Qwen3 (tied embeddings; its per-head q/k norms see local heads).
TEST(TensorParallel, LossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-tp2";
  for (const char *model : {"demo", "tiny-qwen3-hd64"}) {
    std::ostringstream log;
    auto one = exec::train(options(model, tmp + "-" + model + "-one.jsonl"), log);
    ASSERT_TRUE(one.isOk()) << one.message() << "\n" << log.str();
    const auto single = losses(tmp + "-" + model + "-one.jsonl");
    for (const char *layout : {"-tp2", "-tp2-sp"}) {
      const std::string plan = std::string(model) + layout;
      ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
      expectSameTraining(plan, trainOnTwoGpus(tmp + "-" + plan + ".jsonl", {{"MT_TEST_PLAN", plan}}),
                         single);
    }
  }
}

// Pipeline parallelism has no CUDA lowering yet: refused before any rank
// connects, naming the axis.
TEST(DataParallel, PipelinePlansAreRefused) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must be set";
  std::ostringstream log;
  auto summary = exec::train(options("demo-pp2", ""), log);
  ASSERT_FALSE(summary.isOk());
  EXPECT_NE(summary.message().find("the CUDA backend runs data- and tensor-parallel plans (dp, "
                                   "tp) only for now; this plan has pp=2"),
            std::string::npos)
      << summary.message();
}

} // namespace
} // namespace mt
