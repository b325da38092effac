// Two GPUs (label gpu2): a checkpoint that a two-GPU job saves (dp2, tp2)
// continues on one GPU with the losses of the uninterrupted one-GPU run;
// and a rank that hangs mid-run makes the other stop within --comm-timeout
// (NcclWatchdog), with an error naming the rank, the group and the call.
#include "test/runtime/cuda/TwoGpuTraining.h"

#include <chrono>
#include <csignal>
#include <thread>

#include <unistd.h>

namespace mt {
namespace {

using namespace twogpu;
namespace fs = std::filesystem;

// One rank of the jobs of SavedOnTwoGpusContinuesOnOne; skipped alone.
TEST(CheckpointResume, RankOfTwoGpuJob) { trainAsRank("demo-dp2"); }

TEST(CheckpointResume, SavedOnTwoGpusContinuesOnOne) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  namespace tol = mt::tolerance;
  const std::string tmp = ::testing::TempDir() + "/mt-resume";
  const Curves single = trainOnOneGpu("demo", tmp + "-one.jsonl");
  ASSERT_EQ(single.loss.size(), size_t(kSteps));
  const int64_t saved = kSteps / 2;
  for (const std::string plan : {"demo-dp2", "demo-tp2"}) {
    const std::string checkpoint = tmp + "-" + plan + "-checkpoint";
    fs::remove_all(checkpoint);
    const Curves first = trainOnTwoGpus("CheckpointResume.RankOfTwoGpuJob",
                                        tmp + "-" + plan + "-first.jsonl",
                                        {{"MT_TEST_PLAN", plan},
                                         {"MT_TEST_STEPS", std::to_string(saved)},
                                         {"MT_TEST_SAVE", checkpoint}});
    ASSERT_EQ(first.loss.size(), size_t(saved)) << plan;
    ASSERT_TRUE(fs::exists(checkpoint + "/trainer.json")) << plan;
    // The rest of the run on one GPU, from the two-GPU checkpoint.
    exec::TrainOptions o = options("demo", tmp + "-" + plan + "-resumed.jsonl");
    o.resumeDir = checkpoint;
    std::ostringstream log;
    auto resumed = exec::train(o, log);
    ASSERT_TRUE(resumed.isOk()) << resumed.message() << "\n" << log.str();
    const Curves rest = curves(o.metricsPath);
    ASSERT_EQ(rest.loss.size(), size_t(kSteps - saved)) << plan;
    double worstLoss = 0, worstNorm = 0;
    for (int64_t s = 0; s < kSteps; ++s) {
      const bool before = s < saved;
      const double loss = before ? first.loss[s] : rest.loss[s - saved];
      const double norm = before ? first.gradNorm[s] : rest.gradNorm[s - saved];
      worstLoss = std::max(worstLoss, std::fabs(loss - single.loss[s]) / single.loss[s]);
      worstNorm = std::max(worstNorm, std::fabs(norm - single.gradNorm[s]) / single.gradNorm[s]);
      EXPECT_LE(std::fabs(loss - single.loss[s]) / single.loss[s], tol::kBf16TrainingLossRel)
          << plan << (before ? " on two GPUs" : " resumed on one GPU") << ", step " << s + 1
          << ": loss " << loss << " vs " << single.loss[s];
      EXPECT_LE(std::fabs(norm - single.gradNorm[s]) / single.gradNorm[s],
                tol::kBf16TrainingGradNormRel)
          << plan << ", step " << s + 1 << ": grad_norm " << norm << " vs "
          << single.gradNorm[s];
    }
    cudatest::reportRow("resume_on_one_gpu(" + plan + ")", "loss, 20 steps", worstLoss,
                        tol::kBf16TrainingLossRel, worstLoss <= tol::kBf16TrainingLossRel);
    std::printf("%s saved after step %lld, resumed on one GPU: loss %.6f -> %.6f vs one GPU "
                "%.6f -> %.6f; worst relative difference loss %.3g, grad_norm %.3g\n",
                plan.c_str(), (long long)saved, first.loss.front(), rest.loss.back(),
                single.loss.front(), single.loss.back(), worstLoss, worstNorm);
  }
}

// The hang test's files, in the folder MT_TEST_HANG: rank 1's pid and the
// time it stopped itself, rank 0's error and the time it returned
// (milliseconds since the epoch: the two processes share that clock).
constexpr const char *kHangDir = "MT_TEST_HANG";
constexpr auto kCommTimeout = std::chrono::seconds(10);

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void writeText(const std::string &path, const std::string &text) {
  std::ofstream(path) << text;
}

std::string readText(const std::string &path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A rank of HungRankStopsTheOther: rank 1 stops itself (SIGSTOP) once rank 0
// has logged a step; rank 0 trains until its watchdog stops it, records the
// error, and kills rank 1 (whom no signal but SIGKILL ends now).
TEST(CommFailure, RankOfHangingJob) {
  const char *dir = std::getenv(kHangDir);
  if (!std::getenv("MT_RANK") || !dir)
    GTEST_SKIP() << "runs as a rank of CommFailure.HungRankStopsTheOther";
  const std::string folder = dir, metrics = folder + "/metrics.jsonl";
  const int rank = std::atoi(std::getenv("MT_RANK"));
  if (rank == 1)
    std::thread([folder, metrics] {
      for (int i = 0; i < 30000 && readText(metrics).empty(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      writeText(folder + "/rank1.pid", std::to_string(getpid()));
      writeText(folder + "/stopped", std::to_string(nowMs()));
      kill(getpid(), SIGSTOP);
    }).detach();
  exec::TrainOptions o = options("demo-dp2", metrics);
  o.steps = 1000000;
  o.commTimeout = kCommTimeout;
  std::ostringstream log;
  auto summary = exec::train(o, log);
  writeText(folder + "/ended", std::to_string(nowMs()));
  writeText(folder + "/error", summary.isOk() ? "no error" : summary.message());
  if (pid_t hung = std::atoi(readText(folder + "/rank1.pid").c_str()); hung > 0)
    kill(hung, SIGKILL);
}

TEST(CommFailure, HungRankStopsTheOther) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string folder = ::testing::TempDir() + "/mt-hang";
  fs::remove_all(folder);
  fs::create_directories(folder);
  ASSERT_EQ(setenv(kHangDir, folder.c_str(), 1), 0);
  auto exe = comm::currentExecutable();
  ASSERT_TRUE(exe.isOk()) << exe.message();
  std::ostringstream log;
  auto code = comm::launchLocal(2, {*exe, "--gtest_filter=CommFailure.RankOfHangingJob"}, 240s,
                                log);
  unsetenv(kHangDir);
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 128 + SIGKILL) << "rank 1 hung until rank 0 killed it\n" << log.str();
  const std::string error = readText(folder + "/error");
  std::printf("rank 0 stopped with: %s\n", error.c_str());
  for (const char *part : {"[rank 0/2", "over group 'dp.", "no progress within 10 s (--comm-timeout)",
                           "aborted this rank's NCCL communicators"})
    EXPECT_NE(error.find(part), std::string::npos) << "missing '" << part << "' in: " << error;
  const int64_t stopped = std::atoll(readText(folder + "/stopped").c_str());
  const int64_t ended = std::atoll(readText(folder + "/ended").c_str());
  ASSERT_GT(stopped, 0);
  const double seconds = double(ended - stopped) / 1000;
  std::printf("rank 0 returned %.1f s after rank 1 stopped (--comm-timeout 10 s)\n", seconds);
  EXPECT_LE(seconds, 10.0 + 20.0) << "within the timeout and a margin";
}

} // namespace
} // namespace mt
