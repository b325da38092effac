// Data parallelism on two GPUs (label gpu2): `mtrun --backend cuda` ranks,
// one per GPU, train the demo model's dp2 plan for 20 steps, the gradients
// averaged over dp by NCCL, and every step's loss (the mean over dp) is
// held to the bf16 tolerance of test/Tolerances.h against the one-GPU run
// of the same global batch, with the all-reduce in the optimizer and
// overlapped with backward. The plans are compiled on a machine with the
// compiler (bench/gpu-dp.sh --prepare) into $MT_GPU_DATA/plans, the tokens
// in $MT_GPU_DATA/corpus.bin.
#include "test/runtime/cuda/TwoGpuTraining.h"

namespace mt {
namespace {

using namespace twogpu;

// One rank of the job that LossesMatchOneGpu starts; skipped when run alone.
TEST(DataParallel, RankOfTwoGpuJob) {
  if (!std::getenv("MT_RANK"))
    GTEST_SKIP() << "runs as a rank of DataParallel.LossesMatchOneGpu";
  const char *metrics = std::getenv("MT_TEST_METRICS");
  ASSERT_TRUE(metrics) << "MT_TEST_METRICS is set by DataParallel.LossesMatchOneGpu";
  std::ostringstream log;
  auto summary = exec::train(options("demo-dp2", metrics), log);
  ASSERT_TRUE(summary.isOk()) << summary.message() << "\n" << log.str();
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, std::atoi(std::getenv("MT_LOCAL_RANK"))) << "each rank uses its own GPU";
}

/// The curves of a dp2 job of this test's RankOfTwoGpuJob.
Curves trainOnTwoGpus(const std::string &metrics,
                      const std::vector<std::pair<std::string, std::string>> &environment) {
  return twogpu::trainOnTwoGpus("DataParallel.RankOfTwoGpuJob", metrics, environment);
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
  const auto single = curves(tmp + "-one.jsonl");
  expectSameTraining("dp2", reduced, single);
  expectSameTraining("dp2 overlapped", overlapped, single);
  // The same sums, only earlier: the same bits.
  EXPECT_EQ(overlapped, reduced);
}

// Tensor parallelism has no CUDA lowering yet: refused before any rank
// connects, naming the axis.
TEST(DataParallel, TensorParallelPlansAreRefused) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must be set";
  std::ostringstream log;
  auto summary = exec::train(options("demo-tp2", ""), log);
  ASSERT_FALSE(summary.isOk());
  EXPECT_NE(summary.message().find("the CUDA backend runs data-parallel and pipeline-parallel "
                                   "plans (dp, pp) only for now; this plan has tp=2"),
            std::string::npos)
      << summary.message();
}

} // namespace
} // namespace mt
