// The CUDA backend's training against the CPU backend's (label gpu1): the
// same plan, initial weights and batches for 20 optimizer steps, each step's
// loss held to the bf16 tolerance of test/Tolerances.h. The plans are
// compiled on a machine with the compiler (tools/gpu-check.sh --prepare)
// and found in $MT_GPU_DATA/plans/<model>, with the token file
// $MT_GPU_DATA/corpus.bin.
#include "runtime/exec/Trainer.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace mt {
namespace {

namespace tol = mt::tolerance;
using cudatest::reportRow;

constexpr int64_t kSteps = 20;

struct Step {
  double loss, gradNorm;
};

std::vector<Step> train(const std::string &plan, const std::string &data,
                        const std::string &backend, const std::string &metrics,
                        int64_t stepCount = kSteps, const std::string &saveDir = "",
                        const std::string &resumeDir = "") {
  exec::TrainOptions o;
  o.planDir = plan;
  o.dataPath = data;
  o.steps = stepCount;
  o.backend = backend;
  o.metricsPath = metrics;
  o.saveDir = saveDir;
  o.resumeDir = resumeDir;
  std::ostringstream log;
  auto summary = exec::train(o, log);
  if (!summary)
    throw std::runtime_error(backend + ": " + summary.message() + "\n" + log.str());
  std::vector<Step> steps;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    auto row = nlohmann::json::parse(line);
    steps.push_back({row["loss"].get<double>(), row["grad_norm"].get<double>()});
  }
  return steps;
}

class TrainingStepTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainingStepTest, LossesMatchTheCpuBackend) {
  const char *root = std::getenv("MT_GPU_DATA");
  ASSERT_TRUE(root && *root) << "MT_GPU_DATA must name the directory that "
                                "tools/gpu-check.sh --prepare writes";
  const std::string model = GetParam();
  const std::string plan = std::string(root) + "/plans/" + model;
  const std::string data = std::string(root) + "/corpus.bin";
  ASSERT_TRUE(std::filesystem::exists(plan + "/plan.pb")) << plan;
  const std::string tmp = ::testing::TempDir() + "/mt-step-" + model;
  const auto cpu = train(plan, data, "cpu", tmp + "-cpu.jsonl");
  const auto gpu = train(plan, data, "cuda", tmp + "-cuda.jsonl");
  ASSERT_EQ(cpu.size(), size_t(kSteps));
  ASSERT_EQ(gpu.size(), size_t(kSteps));

  const double first = std::fabs(gpu[0].loss - cpu[0].loss) / cpu[0].loss;
  double worst = 0;
  int64_t worstStep = 0;
  for (int64_t s = 0; s < kSteps; ++s) {
    const double err = std::fabs(gpu[s].loss - cpu[s].loss) / cpu[s].loss;
    if (!(err <= worst)) { // NaN counts as the worst
      worst = err;
      worstStep = s;
    }
  }
  const std::string shape = model + " first step";
  reportRow("train_step_loss", shape, first, tol::kBf16FirstStepLossRel,
            first <= tol::kBf16FirstStepLossRel);
  reportRow("train_step_loss", model + " 20 steps", worst, tol::kBf16TrainingLossRel,
            worst <= tol::kBf16TrainingLossRel);
  EXPECT_LE(first, tol::kBf16FirstStepLossRel)
      << "step 1: cuda " << gpu[0].loss << ", cpu " << cpu[0].loss;
  EXPECT_LE(worst, tol::kBf16TrainingLossRel)
      << "step " << worstStep + 1 << ": cuda " << gpu[worstStep].loss << ", cpu "
      << cpu[worstStep].loss;
  // Training moves: the last loss is below the first on both backends.
  EXPECT_LT(gpu.back().loss, gpu.front().loss);
  EXPECT_LT(cpu.back().loss, cpu.front().loss);
  std::printf("%s: cuda loss %.5f -> %.5f, cpu %.5f -> %.5f; grad norm step 1 cuda %.5f "
              "cpu %.5f\n",
              model.c_str(), gpu.front().loss, gpu.back().loss, cpu.front().loss,
              cpu.back().loss, gpu[0].gradNorm, cpu[0].gradNorm);
}

// A checkpoint written from the GPU and resumed there continues the same
// run: the weights and AdamW moments round-trip through the host, and the
// step's kernels are deterministic.
TEST(CudaBackendTest, ResumeContinuesTheSameRun) {
  const char *root = std::getenv("MT_GPU_DATA");
  ASSERT_TRUE(root && *root) << "MT_GPU_DATA must be set";
  const std::string plan = std::string(root) + "/plans/demo";
  const std::string data = std::string(root) + "/corpus.bin";
  const std::string tmp = ::testing::TempDir() + "/mt-resume";
  std::filesystem::remove_all(tmp + "-ckpt");
  const auto straight = train(plan, data, "cuda", tmp + "-straight.jsonl", 6);
  const auto first = train(plan, data, "cuda", tmp + "-first.jsonl", 3, tmp + "-ckpt");
  // --steps counts from the start of the run: the resumed run ends at step 6.
  const auto second = train(plan, data, "cuda", tmp + "-second.jsonl", 6, "", tmp + "-ckpt");
  ASSERT_EQ(straight.size(), 6u);
  ASSERT_EQ(first.size() + second.size(), 6u);
  double worst = 0;
  for (size_t s = 0; s < 6; ++s) {
    const double resumed = s < 3 ? first[s].loss : second[s - 3].loss;
    worst = std::max(worst, std::fabs(resumed - straight[s].loss) / straight[s].loss);
  }
  reportRow("resume(cuda)", "demo 3+3 steps vs 6", worst, tol::kBitExact,
            worst <= tol::kBitExact);
  EXPECT_LE(worst, tol::kBitExact);
}

// What the CUDA backend does not run yet is refused before anything runs,
// with the op and instruction named.
TEST(CudaBackendTest, RefusesOpsWithoutKernels) {
  const char *root = std::getenv("MT_GPU_DATA");
  ASSERT_TRUE(root && *root) << "MT_GPU_DATA must be set";
  exec::TrainOptions o;
  o.planDir = std::string(root) + "/plans/tiny-moe-hd64";
  o.dataPath = std::string(root) + "/corpus.bin";
  o.steps = 1;
  o.backend = "cuda";
  std::ostringstream log;
  auto summary = exec::train(o, log);
  ASSERT_FALSE(summary.isOk());
  EXPECT_NE(summary.message().find("op 'moe_router' has no CUDA kernel"), std::string::npos)
      << summary.message();
  EXPECT_NE(summary.message().find("program 'forward_backward' instruction"),
            std::string::npos)
      << summary.message();
}

INSTANTIATE_TEST_SUITE_P(Models, TrainingStepTest,
                         ::testing::Values("demo", "tiny-llama-hd64", "tiny-qwen2-hd64",
                                           "tiny-qwen3-hd64"),
                         [](const auto &info) {
                           std::string name = info.param;
                           for (char &c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           return name;
                         });

} // namespace
} // namespace mt
