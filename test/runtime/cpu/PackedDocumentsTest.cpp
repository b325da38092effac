// neat_packing end to end on the CPU backend: samples packed into one row by
// chat::buildRows (LLaMA-Factory's knapsack and position ids), written and
// read back as prepared SFT data, give a tiny Qwen3's training step the same
// loss and parameter gradients as the same samples one per row. The plans
// (tiny-qwen3 with --neat-packing, micro-batch 1; and without, micro-batch
// 3, seq 24 each) come from compile-plans.sh (a ctest fixture).
#include "runtime/chat/Supervised.h"
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/exec/Memory.h"
#include "runtime/io/Dataset.h"
#include "runtime/plan/PlanIO.h"
#include "test/Tolerances.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

namespace mt {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kSeq = 24;

/// A compiled plan with its memory and CPU executor.
struct Step {
  plan::Plan plan;
  std::unique_ptr<exec::HostMemory> memory;
  std::unique_ptr<cpu::CpuExecutor> executor;
};

Step load(const std::string &name) {
  Step s;
  auto plan = plan::readPlanDirectory(std::string(MT_RULE_PLAN_DIR) + "/" + name);
  EXPECT_TRUE(plan.isOk()) << plan.message();
  if (!plan)
    return s;
  s.plan = std::move(*plan);
  auto memory = exec::HostMemory::create(s.plan);
  EXPECT_TRUE(memory.isOk()) << memory.message();
  s.memory = std::move(*memory);
  auto executor = cpu::CpuExecutor::create(s.plan, *s.memory);
  EXPECT_TRUE(executor.isOk()) << executor.message();
  s.executor = std::make_unique<cpu::CpuExecutor>(std::move(*executor));
  return s;
}

/// The same small random weights in both plans: drawn from the name.
void fillWeights(Step &s) {
  for (const plan::Parameter &p : s.plan.parameters()) {
    std::mt19937 rng(uint32_t(std::hash<std::string>{}(p.name()) & 0xffffffffu));
    std::uniform_real_distribution<float> weight(-0.2f, 0.2f);
    float *w = s.memory->f32(p.param_buffer());
    for (int64_t i = 0; i < s.memory->elements(p.param_buffer()); ++i)
      w[i] = p.init() == plan::ONES ? 1.0f + weight(rng) : weight(rng);
  }
}

/// Three samples of 7, 5 and 9 tokens, every token labelled (as
/// train_on_prompt does) but the first two of each: the last token of one
/// sample would otherwise be trained on the next one's first label.
std::vector<chat::EncodedSample> samples(uint32_t vocab) {
  std::mt19937 rng(3);
  std::vector<chat::EncodedSample> out;
  for (int n : {7, 5, 9}) {
    chat::EncodedSample s;
    for (int i = 0; i < n; ++i) {
      s.inputIds.push_back(1 + uint32_t(rng() % (vocab - 1)));
      s.labels.push_back(i < 2 ? io::kIgnoreIndex : int32_t(s.inputIds.back()));
    }
    out.push_back(s);
  }
  out[1].labels[0] = int32_t(out[1].inputIds[0]); // a labelled first token
  return out;
}

/// Writes the rows as mt-prepare-sft does and fills the plan's inputs with
/// micro-batch 0 of step 0, as mtrun does.
void fillInputs(Step &s, const io::SftRows &rows, const std::string &path) {
  ASSERT_TRUE(io::writeSftFile(path, rows));
  io::DatasetOptions o;
  o.seqLen = kSeq;
  o.shuffle = false;
  auto d = io::Dataset::open(path, o);
  ASSERT_TRUE(d) << d.message();
  const plan::Bindings &b = s.plan.bindings();
  const size_t n = size_t(s.plan.training().micro_batch() * kSeq);
  std::span<int32_t> positions;
  if (b.has_position_ids())
    positions = {s.memory->i32(b.position_ids()), n};
  io::BatchLayout layout{s.plan.training().micro_batch(), 1, 1};
  Status st = d->fillBatch(layout, {}, {s.memory->i32(b.input_ids()), n},
                           {s.memory->i32(b.labels()), n}, {s.memory->f32(b.loss_mask()), n},
                           positions);
  ASSERT_TRUE(st) << st.message();
  *s.memory->f32(b.loss_scale()) = 1.0f;
}

/// Loss and the gradient of every parameter after one forward-backward.
std::pair<float, std::map<std::string, std::vector<float>>> runStep(Step &s) {
  auto r = s.executor->run("forward_backward");
  EXPECT_TRUE(r.isOk()) << r.message();
  std::map<std::string, std::vector<float>> grads;
  for (const plan::Parameter &p : s.plan.parameters()) {
    const float *g = s.memory->f32(p.grad_buffer());
    grads[p.name()].assign(g, g + s.memory->elements(p.grad_buffer()));
  }
  return {*s.memory->f32(s.plan.bindings().loss()), grads};
}

TEST(PackedDocuments, PackedRowTrainsAsSamplesOneRowEach) {
  Step packed = load("tiny-qwen3-neat"), rows = load("tiny-qwen3-rows");
  ASSERT_TRUE(packed.executor && rows.executor);
  ASSERT_TRUE(packed.plan.bindings().has_position_ids());
  ASSERT_FALSE(rows.plan.bindings().has_position_ids());
  ASSERT_EQ(packed.plan.training().micro_batch(), 1);
  ASSERT_EQ(rows.plan.training().micro_batch(), 3);
  const auto vocab = uint32_t(packed.plan.training().vocab_size());
  fillWeights(packed);
  fillWeights(rows);

  chat::SftOptions o;
  o.cutoffLen = kSeq;
  o.neatPacking = true;
  io::SftRows neat = chat::buildRows(samples(vocab), o, 0, vocab);
  ASSERT_EQ(neat.rows(), 1) << "7 + 5 + 9 tokens fit one row of " << kSeq;
  o.neatPacking = false;
  io::SftRows single = chat::buildRows(samples(vocab), o, 0, vocab);
  ASSERT_EQ(single.rows(), 3);
  const fs::path dir = fs::temp_directory_path() / ("mt-packed-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fillInputs(packed, neat, (dir / "neat.sft").string());
  fillInputs(rows, single, (dir / "rows.sft").string());
  fs::remove_all(dir);

  auto [packedLoss, packedGrads] = runStep(packed);
  auto [rowsLoss, rowsGrads] = runStep(rows);
  ASSERT_TRUE(std::isfinite(packedLoss));
  EXPECT_NEAR(packedLoss, rowsLoss, tolerance::kParallelRel * std::abs(rowsLoss));
  ASSERT_EQ(packedGrads.size(), rowsGrads.size());
  double worst = 0;
  for (const auto &[name, want] : rowsGrads) {
    const std::vector<float> &got = packedGrads.at(name);
    ASSERT_EQ(got.size(), want.size()) << name;
    double scale = 0;
    for (float g : want)
      scale = std::max(scale, double(std::abs(g)));
    ASSERT_GT(scale, 0.0) << name << ": no gradient";
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::abs(double(got[i]) - want[i]) / scale);
      ASSERT_NEAR(got[i], want[i], tolerance::kPackedGradientRel * scale)
          << name << " element " << i;
    }
  }
  std::printf("loss %.7f (rows %.7f); worst gradient difference %.2e of the tensor's largest\n",
              packedLoss, rowsLoss, worst);
}

} // namespace
} // namespace mt
