// The CUDA backend's training against the CPU backend's (label gpu1): the
// same plan, initial weights and batches. Over 20 optimizer steps each
// step's loss and gradient norm, and after the first step every updated
// weight, are held to the bounds of test/Tolerances.h. The plans are
// compiled on a machine with the compiler (tools/gpu-check.sh --prepare)
// and found in $MT_GPU_DATA/plans/<model>, with the token file
// $MT_GPU_DATA/corpus.bin; a "-neat" model (neat_packing: position ids,
// attention per document) trains on the prepared SFT rows
// $MT_GPU_DATA/neat.sft instead.
#include "runtime/exec/Initialization.h"
#include "runtime/exec/Trainer.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace mt {
namespace {

namespace tol = mt::tolerance;
using cudatest::reportRow;

constexpr int64_t kSteps = 20;
constexpr uint64_t kSeed = 1234; // exec::TrainOptions' default

struct Step {
  double loss, gradNorm, lr;
};

/// $MT_GPU_DATA: the folder tools/gpu-check.sh --prepare writes (plans/,
/// corpus.bin, neat.sft); empty where it is unset.
std::string gpuData() {
  const char *root = std::getenv("MT_GPU_DATA");
  return root ? root : "";
}
constexpr const char *kNoGpuData =
    "MT_GPU_DATA must name the directory that tools/gpu-check.sh --prepare writes";

std::vector<Step> train(const std::string &plan, const std::string &data,
                        const std::string &backend, const std::string &metrics,
                        int64_t stepCount = kSteps, const std::string &saveDir = "",
                        const std::string &resumeDir = "", const std::string &exportHf = "",
                        std::string *profileReport = nullptr) {
  exec::TrainOptions o;
  o.planDir = plan;
  o.dataPath = data;
  o.steps = stepCount;
  o.seed = kSeed;
  o.backend = backend;
  o.metricsPath = metrics;
  o.saveDir = saveDir;
  o.resumeDir = resumeDir;
  o.exportHf = exportHf;
  o.profile = profileReport != nullptr; // --profile; its report is the log's
  std::ostringstream log;
  auto summary = exec::train(o, log);
  if (!summary)
    throw std::runtime_error(backend + ": " + summary.message() + "\n" + log.str());
  if (profileReport)
    *profileReport = log.str();
  std::vector<Step> steps;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    auto row = nlohmann::json::parse(line);
    steps.push_back({row["loss"].get<double>(), row["grad_norm"].get<double>(),
                     row["lr"].get<double>()});
  }
  return steps;
}

/// Worst |gpu - cpu| / cpu over the steps of one quantity; NaN is the worst.
struct Worst {
  double err = 0;
  size_t step = 0;
};
Worst worstRelative(const std::vector<Step> &gpu, const std::vector<Step> &cpu,
                    double Step::*field) {
  Worst w;
  for (size_t s = 0; s < cpu.size(); ++s) {
    const double err = std::fabs(gpu[s].*field - cpu[s].*field) / cpu[s].*field;
    if (!(err <= w.err))
      w = {err, s};
  }
  return w;
}

class TrainingStepTest : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    const std::string root = gpuData();
    ASSERT_FALSE(root.empty()) << kNoGpuData;
    model_ = GetParam();
    plan_ = root + "/plans/" + model_;
    data_ = root + (model_.ends_with("-neat") ? "/neat.sft" : "/corpus.bin");
    ASSERT_TRUE(std::filesystem::exists(plan_ + "/plan.pb")) << plan_;
    // Named after the test, not the model alone: ctest runs the tests of
    // one model side by side (-j), and a shared metrics file would be read
    // while another test truncates it.
    const ::testing::TestInfo *test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(test->test_suite_name()) + "-" + test->name();
    std::replace(name.begin(), name.end(), '/', '-');
    tmp_ = ::testing::TempDir() + "/mt-step-" + name;
  }
  std::string model_, plan_, data_, tmp_;
};

/// Expects the run `gpu` to follow the reference run `cpu` (named `ref` in
/// messages) within the bf16 training bounds of test/Tolerances.h, rows of
/// the report named after `model`.
void expectSameSteps(const std::vector<Step> &gpu, const std::vector<Step> &cpu,
                     const std::string &model, const char *ref) {
  ASSERT_EQ(cpu.size(), size_t(kSteps));
  ASSERT_EQ(gpu.size(), size_t(kSteps));

  const double firstLoss = std::fabs(gpu[0].loss - cpu[0].loss) / cpu[0].loss;
  const double firstNorm = std::fabs(gpu[0].gradNorm - cpu[0].gradNorm) / cpu[0].gradNorm;
  const Worst loss = worstRelative(gpu, cpu, &Step::loss);
  const Worst norm = worstRelative(gpu, cpu, &Step::gradNorm);
  reportRow("train_step_loss", model + " first step", firstLoss, tol::kBf16FirstStepLossRel,
            firstLoss <= tol::kBf16FirstStepLossRel);
  reportRow("train_step_grad_norm", model + " first step", firstNorm, tol::kBf16GradNormRel,
            firstNorm <= tol::kBf16GradNormRel);
  reportRow("train_step_loss", model + " 20 steps", loss.err, tol::kBf16TrainingLossRel,
            loss.err <= tol::kBf16TrainingLossRel);
  reportRow("train_step_grad_norm", model + " 20 steps", norm.err,
            tol::kBf16TrainingGradNormRel, norm.err <= tol::kBf16TrainingGradNormRel);
  EXPECT_LE(firstLoss, tol::kBf16FirstStepLossRel)
      << "step 1: cuda " << gpu[0].loss << ", " << ref << " " << cpu[0].loss;
  EXPECT_LE(firstNorm, tol::kBf16GradNormRel)
      << "step 1 grad norm: cuda " << gpu[0].gradNorm << ", " << ref << " " << cpu[0].gradNorm;
  EXPECT_LE(loss.err, tol::kBf16TrainingLossRel)
      << "step " << loss.step + 1 << ": cuda " << gpu[loss.step].loss << ", " << ref << " "
      << cpu[loss.step].loss;
  EXPECT_LE(norm.err, tol::kBf16TrainingGradNormRel)
      << "step " << norm.step + 1 << " grad norm: cuda " << gpu[norm.step].gradNorm << ", "
      << ref << " " << cpu[norm.step].gradNorm;
  for (size_t s = 0; s < cpu.size(); ++s)
    EXPECT_EQ(gpu[s].lr, cpu[s].lr) << "step " << s + 1; // one schedule, on the host
  // Training moves: the last loss is below the first on both backends.
  EXPECT_LT(gpu.back().loss, gpu.front().loss);
  EXPECT_LT(cpu.back().loss, cpu.front().loss);
  std::printf("%s: cuda loss %.5f -> %.5f, %s %.5f -> %.5f; worst loss %.2e (step %zu), "
              "grad norm %.2e (step %zu)\n",
              model.c_str(), gpu.front().loss, gpu.back().loss, ref, cpu.front().loss,
              cpu.back().loss, loss.err, loss.step + 1, norm.err, norm.step + 1);
}

TEST_P(TrainingStepTest, LossesAndGradientNormsMatchTheCpuBackend) {
  const auto cpu = train(plan_, data_, "cpu", tmp_ + "-cpu.jsonl");
  const auto gpu = train(plan_, data_, "cuda", tmp_ + "-cuda.jsonl");
  expectSameSteps(gpu, cpu, model_, "cpu");
}

// The MoE models with the experts' GEMMs on our grouped GEMM kernel
// (MT_MOE_GEMM=kernel): the row counts stay on the device, so the programs
// are captured as CUDA graphs from their second run on, and 20 steps still
// follow the CPU backend within the bf16 bounds.
class MoEKernelTest : public TrainingStepTest {
protected:
  void SetUp() override {
    TrainingStepTest::SetUp();
    if (const char *old = std::getenv("MT_MOE_GEMM"))
      saved_ = old;
    ::setenv("MT_MOE_GEMM", "kernel", 1);
  }
  void TearDown() override {
    if (saved_)
      ::setenv("MT_MOE_GEMM", saved_->c_str(), 1);
    else
      ::unsetenv("MT_MOE_GEMM");
  }
  std::optional<std::string> saved_;
};

TEST_P(MoEKernelTest, LossesAndGradientNormsMatchTheCpuBackend) {
  const auto cpu = train(plan_, data_, "cpu", tmp_ + "-cpu.jsonl");
  const auto gpu = train(plan_, data_, "cuda", tmp_ + "-kernel.jsonl");
  expectSameSteps(gpu, cpu, model_ + " MT_MOE_GEMM=kernel", "cpu");
}

/// Instructions named `op` over every program of the plan in `planDir`.
int countOps(const std::string &planDir, const std::string &op) {
  auto plan = plan::readPlanDirectory(planDir);
  EXPECT_TRUE(plan.isOk()) << plan.message();
  int n = 0;
  if (plan.isOk())
    for (const plan::Program &p : plan->programs())
      for (const plan::Instruction &i : p.instructions())
        n += i.op() == op;
  return n;
}

// mt-fuse's linear-fc1 on the GPU: one cuBLASLt GEMM over the gate and up
// weights placed back to back (and one per gradient) trains as the two
// GEMMs of the plan compiled with --no-fuse linear-fc1 (<model>-no-fc1,
// from tools/gpu-check.sh --prepare) do, over 20 steps.
class FusedMlpTest : public TrainingStepTest {};

TEST_P(FusedMlpTest, TrainsAsTheUnfusedMlp) {
  const std::string unfused = plan_ + "-no-fc1";
  ASSERT_TRUE(std::filesystem::exists(unfused + "/plan.pb")) << unfused;
  ASSERT_GT(countOps(plan_, "chunked_swiglu"), 0) << plan_;
  ASSERT_EQ(countOps(unfused, "chunked_swiglu"), 0) << unfused;
  const auto ref = train(unfused, data_, "cuda", tmp_ + "-no-fc1.jsonl");
  const auto gpu = train(plan_, data_, "cuda", tmp_ + "-fc1.jsonl");
  expectSameSteps(gpu, ref, model_ + " linear-fc1", "cuda --no-fuse linear-fc1");
}

// mt-fuse's linear-qkv on the GPU: one GEMM over the q, k and v weights
// (and Qwen2's biases) placed back to back, split_qkv and concat_qkv (with
// rotary-qkv, split_qkv_rotary and rotary_concat_qkv where no per-head norm
// sits between the split and the rotary: Llama, Qwen2), trains as the three
// GEMMs of the plan compiled with --no-fuse linear-qkv (<model>-no-qkv,
// from tools/gpu-check.sh --prepare) do, over 20 steps.
class FusedQkvTest : public TrainingStepTest {};

TEST_P(FusedQkvTest, TrainsAsTheUnfusedProjections) {
  const std::string unfused = plan_ + "-no-qkv";
  ASSERT_TRUE(std::filesystem::exists(unfused + "/plan.pb")) << unfused;
  const bool rotated = countOps(plan_, "split_qkv_rotary") > 0;
  EXPECT_EQ(rotated, model_.find("qwen3") == std::string::npos) << plan_;
  for (const char *op : {"split_qkv", "concat_qkv", "split_qkv_rotary", "rotary_concat_qkv"}) {
    const bool rotary = std::string(op).find("rotary") != std::string::npos;
    EXPECT_EQ(countOps(plan_, op) > 0, rotary == rotated) << plan_ << " " << op;
    ASSERT_EQ(countOps(unfused, op), 0) << unfused << " " << op;
  }
  const auto ref = train(unfused, data_, "cuda", tmp_ + "-no-qkv.jsonl");
  const auto gpu = train(plan_, data_, "cuda", tmp_ + "-qkv.jsonl");
  expectSameSteps(gpu, ref, model_ + " linear-qkv", "cuda --no-fuse linear-qkv");
}

/// A tensor of an exported checkpoint, as floats.
std::vector<float> tensorOf(const io::SafetensorsFile &file, const std::string &name) {
  const io::TensorInfo *t = file.find(name);
  if (!t)
    return {};
  std::vector<float> v(t->numElements());
  if (!file.readAsFloat32(name, v.data(), v.size()))
    return {};
  return v;
}

/// A parameter of an exported checkpoint: grouped experts ('*' in the name)
/// are exported one tensor per expert and put back together here.
std::vector<float> parameterOf(const io::SafetensorsFile &file, const plan::Parameter &p) {
  if (!p.grouped_experts())
    return tensorOf(file, p.name());
  std::vector<float> all;
  for (int64_t e = 0; e < p.shape(0); ++e) {
    std::string name = p.name();
    name.replace(name.find('*'), 1, std::to_string(e));
    std::vector<float> one = tensorOf(file, name);
    if (one.empty())
      return {};
    all.insert(all.end(), one.begin(), one.end());
  }
  return all;
}

// After one step from the same weights, the weights whose update is
// determined were moved the same way by both backends: those the CPU moved
// by about lr (|g| >> eps) and those it did not move (no gradient: rows of
// unseen tokens). A tensor whose gradient is fp32 noise (the k_proj bias,
// 0 in exact arithmetic) has many weights in between and is left out. The
// plan is the model's without warm-up ("-first"), whose update 1 has the
// peak rate.
TEST_P(TrainingStepTest, FirstUpdateMatchesTheCpuBackend) {
  const std::string first = plan_ + "-first";
  ASSERT_TRUE(std::filesystem::exists(first + "/plan.pb"))
      << first << ": run tools/gpu-check.sh --prepare";
  const auto cpu = train(first, data_, "cpu", tmp_ + "-cpu1.jsonl", 1, "", "", tmp_ + "-cpu1.hf");
  const auto gpu = train(first, data_, "cuda", tmp_ + "-cuda1.jsonl", 1, "", "",
                         tmp_ + "-cuda1.hf");
  ASSERT_EQ(cpu.size(), 1u);
  const double lr = cpu[0].lr;
  ASSERT_GT(lr, 0.0);
  auto plan = plan::readPlanDirectory(first);
  ASSERT_TRUE(plan.isOk()) << plan.message();
  auto a = io::openSafetensors(tmp_ + "-cpu1.hf/model.safetensors");
  auto b = io::openSafetensors(tmp_ + "-cuda1.hf/model.safetensors");
  ASSERT_TRUE(a.isOk()) << a.message();
  ASSERT_TRUE(b.isOk()) << b.message();
  int compared = 0, trainable = 0;
  double worstMean = 0;
  std::string worstName;
  for (const plan::Parameter &p : plan->parameters()) {
    if (!p.trainable())
      continue;
    ++trainable;
    const std::vector<float> wc = parameterOf(*a, p), wg = parameterOf(*b, p);
    ASSERT_FALSE(wc.empty()) << p.name();
    ASSERT_EQ(wc.size(), wg.size()) << p.name();
    std::vector<float> w0(wc.size());
    exec::initializeRange(kSeed, p, 0, w0.data(), w0.size());
    int64_t determined = 0, moved = 0, count = 0;
    double apart = 0;
    for (size_t i = 0; i < wc.size(); ++i) {
      // Each update is below lr in magnitude on both backends.
      ASSERT_LE(std::fabs(wg[i] - wc[i]), 2.01 * lr) << p.name() << " [" << i << "]";
      const double step = std::fabs(wc[i] - w0[i]) / lr; // weight decay: < 0.01
      moved += step >= 0.01;
      determined += step >= 0.99;
      if (step >= 0.99 || step < 0.01) {
        apart += std::fabs(wg[i] - wc[i]) / lr;
        ++count;
      }
    }
    if (determined < 0.9 * double(moved)) // a gradient of fp32 noise
      continue;
    ++compared;
    apart /= double(count);
    if (!(apart <= worstMean)) {
      worstMean = apart;
      worstName = p.name();
    }
  }
  reportRow("train_step_update", model_ + " step 1, mean |dw| / lr", worstMean,
            tol::kBf16FirstUpdateMeanLr, worstMean <= tol::kBf16FirstUpdateMeanLr);
  EXPECT_LE(worstMean, tol::kBf16FirstUpdateMeanLr) << worstName;
  EXPECT_GT(compared, trainable / 2);
}

// A checkpoint written from the GPU and resumed there continues the same
// run: the weights and AdamW moments round-trip through the host, and the
// step's kernels are deterministic.
TEST(CudaBackendTest, ResumeContinuesTheSameRun) {
  const std::string root = gpuData();
  ASSERT_FALSE(root.empty()) << kNoGpuData;
  const std::string plan = root + "/plans/demo", data = root + "/corpus.bin";
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

// --profile times the replayed CUDA graphs from events inside them: the run
// is the one without it (the same losses and gradient norms, bit for bit),
// and the report has the step's classes, each op marked as timed in a graph.
TEST(CudaBackendTest, ProfileTimesTheReplayedGraphsWithoutChangingTheRun) {
  const std::string root = gpuData();
  ASSERT_FALSE(root.empty()) << kNoGpuData;
  const std::string plan = root + "/plans/demo", data = root + "/corpus.bin";
  const std::string tmp = ::testing::TempDir() + "/mt-profile";
  const auto plain = train(plan, data, "cuda", tmp + "-plain.jsonl", 4);
  std::string report;
  const auto profiled = train(plan, data, "cuda", tmp + "-profiled.jsonl", 4, "", "", "", &report);
  ASSERT_EQ(profiled.size(), plain.size());
  for (size_t s = 0; s < plain.size(); ++s) {
    EXPECT_EQ(profiled[s].loss, plain[s].loss) << "step " << s + 1;
    EXPECT_EQ(profiled[s].gradNorm, plain[s].gradNorm) << "step " << s + 1;
  }
  EXPECT_NE(report.find("inside the replayed CUDA graph"), std::string::npos) << report;
  EXPECT_NE(report.find("\n  GEMM (linear) "), std::string::npos) << report;
  EXPECT_NE(report.find("\n  optimizer "), std::string::npos) << report;
  // Per step: the 3 steps after the first, whatever the micro-batches.
  EXPECT_NE(report.find("mean over 3 steps"), std::string::npos) << report;
  // The demo's forward_backward replays as a graph: its ops' rows end in "in
  // graph"; its optimizer checks the gradient norm on the host, runs eagerly
  // and so has host times.
  auto row = [&](const char *op) {
    const size_t at = report.find(op);
    return at == std::string::npos ? std::string()
                                   : report.substr(at + 1, report.find('\n', at + 1) - at - 1);
  };
  EXPECT_TRUE(row("\n  linear ").ends_with("in graph")) << report;
  const std::string adamw = row("\n  adamw ");
  EXPECT_FALSE(adamw.empty()) << report;
  EXPECT_FALSE(adamw.ends_with("in graph")) << report;
}

/// A model's name as a test name (GoogleTest's rule: alphanumerics and '_').
std::string caseName(const ::testing::TestParamInfo<std::string> &info) {
  std::string name = info.param;
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Models, MoEKernelTest,
                         ::testing::Values("tiny-moe-hd64", "tiny-mixtral-hd64",
                                           "tiny-qwen2-moe-hd64"),
                         caseName);

INSTANTIATE_TEST_SUITE_P(Models, FusedMlpTest,
                         ::testing::Values("tiny-llama-hd64", "tiny-qwen3-hd64"),
                         caseName);
INSTANTIATE_TEST_SUITE_P(Models, FusedQkvTest,
                         ::testing::Values("tiny-llama-hd64", "tiny-qwen2-hd64",
                                           "tiny-qwen3-hd64"),
                         caseName);

/// Trains the demo plan with one memory option ($MT_GPU_DATA/plans/<planName>)
/// and the plain demo plan on the GPU, and expects 20 steps of the same
/// losses and gradient norms within the bf16 training bounds, the learning
/// rates exactly; report rows are named after `option`. Prints whether the
/// two runs were bit for bit the same.
void expectSameAsWithout(const char *option, const char *planName) {
  const std::string root = gpuData();
  ASSERT_FALSE(root.empty()) << kNoGpuData;
  const std::string data = root + "/corpus.bin";
  const std::string tmp = ::testing::TempDir() + "/mt-" + planName;
  const auto plain = train(root + "/plans/demo", data, "cuda", tmp + "-plain.jsonl");
  const auto with = train(root + "/plans/" + planName, data, "cuda", tmp + "-option.jsonl");
  ASSERT_EQ(plain.size(), size_t(kSteps));
  ASSERT_EQ(with.size(), size_t(kSteps));
  const Worst loss = worstRelative(with, plain, &Step::loss);
  const Worst norm = worstRelative(with, plain, &Step::gradNorm);
  const std::string row = std::string(option) + "(cuda)";
  reportRow(row, "demo 20 steps loss", loss.err, tol::kBf16TrainingLossRel,
            loss.err <= tol::kBf16TrainingLossRel);
  reportRow(row, "demo 20 steps grad norm", norm.err, tol::kBf16TrainingGradNormRel,
            norm.err <= tol::kBf16TrainingGradNormRel);
  EXPECT_LE(loss.err, tol::kBf16TrainingLossRel)
      << "step " << loss.step + 1 << ": " << option << " " << with[loss.step].loss << ", not "
      << plain[loss.step].loss;
  EXPECT_LE(norm.err, tol::kBf16TrainingGradNormRel)
      << "step " << norm.step + 1 << " grad norm: " << option << " " << with[norm.step].gradNorm
      << ", not " << plain[norm.step].gradNorm;
  for (size_t s = 0; s < plain.size(); ++s)
    EXPECT_EQ(with[s].lr, plain[s].lr) << "step " << s + 1;
  EXPECT_LT(with.back().loss, with.front().loss); // it trains
  std::printf("%s: worst loss %.2e, grad norm %.2e; %s\n", option, loss.err, norm.err,
              loss.err == 0 && norm.err == 0 ? "bit for bit the run without it"
                                             : "not bit for bit");
}

// The memory options on the GPU, each against the plain demo plan:
// optimizer_offload (master weights and AdamW state in pinned host memory,
// AdamW on the host, the plan's copies on a copy stream), grad_offload (the
// main gradients in pinned host memory, staged on the GPU around each
// program's uses, the norm summed on the host), both, and param_offload (the
// weights in pinned host memory, each staged on the GPU in fp32 and bf16 for
// each run of a program's uses, the optimizer's update copied back) alone
// and with the other two; the host AdamW rounds as PyTorch's CPU AdamW, the
// GPU's kernel as its CUDA one, and the host's norm sums in another order
// than the GPU's: not bit for bit, but all fp32. Activation recompute
// (mt-recompute's clones of the forward run again before their backward):
// full (uniform, one layer per unit) and selective (core_attn, layernorm and
// mlp together).
class MemoryOptionTest
    : public ::testing::TestWithParam<std::pair<const char *, const char *>> {};

TEST_P(MemoryOptionTest, MatchesTheRunWithoutIt) {
  expectSameAsWithout(GetParam().first, GetParam().second);
}

// The plans tools/gpu-check.sh --prepare compiles, by option.
INSTANTIATE_TEST_SUITE_P(
    Options, MemoryOptionTest,
    ::testing::Values(std::pair{"optimizer_offload", "demo-offload"},
                      std::pair{"grad_offload", "demo-grad-offload"},
                      std::pair{"grad_optimizer_offload", "demo-grad-optimizer-offload"},
                      std::pair{"param_offload", "demo-param-offload"},
                      std::pair{"param_optimizer_offload", "demo-param-optimizer-offload"},
                      std::pair{"param_grad_offload", "demo-param-grad-offload"},
                      std::pair{"param_grad_optimizer_offload",
                                "demo-param-grad-optimizer-offload"},
                      std::pair{"recompute_full", "demo-recompute-full"},
                      std::pair{"recompute_selective", "demo-recompute-selective"}),
    [](const auto &info) { return std::string(info.param.first); });

INSTANTIATE_TEST_SUITE_P(Models, TrainingStepTest,
                         ::testing::Values("demo", "tiny-llama-hd64", "tiny-qwen2-hd64",
                                           "tiny-qwen3-hd64", "tiny-qwen3-hd64-neat",
                                           "tiny-moe-hd64", "tiny-mixtral-hd64",
                                           "tiny-qwen2-moe-hd64"),
                         caseName);

} // namespace
} // namespace mt
