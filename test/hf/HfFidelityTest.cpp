// One training step of our CPU backend against transformers on the tiny
// Llama / Qwen2 / Qwen3 / Qwen2-MoE / Qwen3-MoE / Mixtral fixtures of test/hf (made by
// make_fixtures.py), each imported from transformers 4's and 5's spelling of
// its config: logits, loss (with each MoE layer's aux loss), every gradient,
// the gradient norm, and every weight after one and after several AdamW
// steps.
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/exec/Weights.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanIO.h"
#include "test/Tolerances.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

namespace mt {
namespace {

struct Comparison {
  double maxDiff = 0, maxRef = 0;
};

Comparison compare(const float *ours, const std::vector<float> &ref) {
  Comparison c;
  for (size_t i = 0; i < ref.size(); ++i) {
    c.maxDiff = std::max(c.maxDiff, double(std::fabs(ours[i] - ref[i])));
    c.maxRef = std::max(c.maxRef, double(std::fabs(ref[i])));
  }
  return c;
}

class HfFidelity : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    // "NAME-transformers5": NAME's plan imported from the config.json
    // transformers 5 saved (test/hf/compile-plans.sh), same fixture.
    std::string model = GetParam();
    for (const char *variant : {"-transformers5", "-z"}) // same fixture (compile-plans.sh)
      if (size_t at = model.find(variant); at != std::string::npos)
        model.erase(at);
    fixture_ = std::string(MT_HF_FIXTURE_DIR) + "/" + model;
    auto plan = plan::readPlanDirectory(std::string(MT_HF_PLAN_DIR) + "/" + GetParam());
    ASSERT_TRUE(plan) << plan.message();
    plan_ = std::move(*plan);
    auto memory = exec::HostMemory::create(plan_);
    ASSERT_TRUE(memory) << memory.message();
    memory_ = std::move(*memory);
    auto expected = io::openSafetensors(fixture_ + "/expected.safetensors");
    ASSERT_TRUE(expected) << expected.message();
    expected_ = std::make_unique<io::SafetensorsFile>(std::move(*expected));
  }

  std::vector<float> reference(const std::string &name) {
    const io::TensorInfo *info = expected_->find(name);
    EXPECT_NE(info, nullptr) << name;
    if (!info)
      return {};
    std::vector<float> out(info->numElements());
    EXPECT_TRUE(expected_->readAsFloat32(name, out.data(), out.size()));
    return out;
  }

  void readIds(const std::string &name, uint32_t buffer) {
    const io::TensorInfo *info = expected_->find(name);
    ASSERT_NE(info, nullptr);
    ASSERT_EQ(int64_t(info->numElements()), memory_->elements(buffer));
    ASSERT_TRUE(expected_->readRaw(name, memory_->data(buffer), info->byteSize()));
  }

  /// The fixture's weights and batch in memory for one training step, as
  /// transformers ran it: every token in the loss, loss scale 1, no
  /// gradient yet.
  void loadStep() {
    ASSERT_TRUE(exec::loadHfWeights(plan_, *memory_, nullptr, fixture_));
    const plan::Bindings &b = plan_.bindings();
    readIds("input_ids", b.input_ids());
    readIds("labels", b.labels());
    std::fill_n(memory_->f32(b.loss_mask()), memory_->elements(b.loss_mask()), 1.0f);
    *memory_->f32(b.loss_scale()) = 1.0f;
    memory_->clear(plan::GRADIENTS);
  }

  /// The indices of the instructions of forward_backward (program 0) that
  /// run `op`, in program order.
  std::vector<int> instructionsOf(const std::string &op) const {
    std::vector<int> out;
    const auto &instrs = plan_.programs(0).instructions();
    for (int i = 0; i < instrs.size(); ++i)
      if (instrs[i].op() == op)
        out.push_back(i);
    return out;
  }

  std::string fixture_;
  plan::Plan plan_;
  std::unique_ptr<exec::HostMemory> memory_;
  std::unique_ptr<io::SafetensorsFile> expected_;
};

TEST_P(HfFidelity, OneTrainingStepMatchesTransformers) {
  auto executor = cpu::CpuExecutor::create(plan_, *memory_);
  ASSERT_TRUE(executor) << executor.message();
  loadStep();
  ASSERT_FALSE(HasFatalFailure());
  const plan::Bindings &b = plan_.bindings();
  // The logits' memory is reused later in the program: copy them when the
  // cross-entropy has read them, and each MoE layer's aux loss (the third
  // output of its router) when the router has written it.
  std::vector<int> ce = instructionsOf("cross_entropy"), routers = instructionsOf("moe_router");
  ASSERT_EQ(ce.size(), 1u);
  const auto &instrs = plan_.programs(0).instructions();
  uint32_t logitsBuffer = instrs[ce[0]].inputs(0);
  std::vector<float> ourLogits(memory_->elements(logitsBuffer)), ourAux;
  auto fb = executor->run("forward_backward", [&](int i) {
    if (i == ce[0])
      std::copy_n(memory_->f32(logitsBuffer), ourLogits.size(), ourLogits.begin());
    if (std::find(routers.begin(), routers.end(), i) != routers.end())
      ourAux.push_back(*memory_->f32(instrs[i].outputs(2)));
  });
  ASSERT_TRUE(fb) << fb.message();

  Comparison logits = compare(ourLogits.data(), reference("logits"));
  EXPECT_LE(logits.maxDiff, tolerance::kHfLogitsRel * logits.maxRef) << "logits";
  double loss = reference("loss")[0];
  EXPECT_NEAR(*memory_->f32(b.loss()), loss, tolerance::kHfLossRel * loss);
  // MoE: our loss is the language-model loss plus, per MoE layer,
  // router_aux_loss_coef x transformers' load_balancing_loss_func applied to
  // that layer's router logits alone (make_fixtures.py, Routers):
  //   coef * E * sum_e f_e P_e, f_e = tokens routed to e / tokens (top_k
  //   slots each), P_e = mean router probability of e.
  // mt.moe_router computes Megatron-Core's definition (below), top_k times
  // smaller for one coefficient; the importer passes
  // moe_aux_loss_coeff = router_aux_loss_coef * top_k, so the two agree.
  // transformers (5.17, modeling_qwen3_moe.py / modeling_mixtral.py) adds
  // coef x load_balancing_loss_func of all layers' logits at once when
  // output_router_logits is set: it pools counts and probabilities over the
  // layers, so it equals our sum only for one MoE layer (tiny-qwen3-moe:
  // pooled 0.2100, per-layer sum 0.4570). Megatron-Core's
  // switch_load_balancing_loss_func (megatron/core/transformer/moe/moe_utils.py)
  // is, per layer,
  // moe_aux_loss_coeff * E / (top_k * T^2) * sum_e (sum_t p_te) count_e.
  if (expected_->find("aux_loss")) {
    std::vector<float> aux = reference("aux_loss");
    ASSERT_EQ(ourAux.size(), aux.size()) << "MoE layers";
    double sum = 0;
    for (size_t l = 0; l < aux.size(); ++l) {
      EXPECT_NEAR(ourAux[l], aux[l], tolerance::kHfLossRel * aux[l]) << "aux loss, MoE layer " << l;
      sum += ourAux[l];
    }
    double lm = reference("lm_loss")[0];
    EXPECT_NEAR(*memory_->f32(b.loss()) - sum, lm, tolerance::kHfLossRel * lm) << "language-model loss";
    // The two terms mtrun reports beside the loss: transformers' language-
    // model loss and the sum of its per-layer aux losses.
    ASSERT_TRUE(b.has_lm_loss() && b.has_aux_loss()) << "MoE plan without lm_loss / aux_loss";
    EXPECT_NEAR(*memory_->f32(b.lm_loss()), lm, tolerance::kHfLossRel * lm) << "lm_loss binding";
    double hfAux = 0;
    for (float a : aux)
      hfAux += a;
    EXPECT_NEAR(*memory_->f32(b.aux_loss()), hfAux, tolerance::kHfLossRel * hfAux)
        << "aux_loss binding";
    EXPECT_FALSE(b.has_z_loss()) << "a z_loss without moe_z_loss_coeff";
  } else {
    EXPECT_TRUE(ourAux.empty());
    if (routers.empty()) { // a dense model reports its loss alone
      EXPECT_FALSE(b.has_lm_loss() || b.has_aux_loss());
    }
  }
  for (const plan::Parameter &p : plan_.parameters()) {
    Comparison g = compare(memory_->f32(p.grad_buffer()), reference("grad." + p.name()));
    EXPECT_LE(g.maxDiff, tolerance::kHfGradientRel * g.maxRef) << "gradient of " << p.name();
    EXPECT_GT(g.maxRef, 0.0) << p.name();
  }

  *memory_->i64(b.step()) = 1;
  auto opt = executor->run("optimizer_step");
  ASSERT_TRUE(opt) << opt.message();
  ASSERT_FALSE(opt->skipped);
  double norm = reference("grad_norm")[0];
  EXPECT_NEAR(*memory_->f32(b.grad_norm()), norm, tolerance::kHfGradNormRel * norm);
  // AdamW's first step moves a weight by about lr * sign(gradient): only
  // where the reference gradient is larger than the gradient tolerance, or
  // exactly 0 (rows of unseen tokens), is the update determined; the k_proj
  // bias, whose gradient is 0 in exact arithmetic, is fp32 noise.
  for (const plan::Parameter &p : plan_.parameters()) {
    std::vector<float> grad = reference("grad." + p.name());
    std::vector<float> updated = reference("updated." + p.name());
    double maxGrad = 0;
    for (float g : grad)
      maxGrad = std::max(maxGrad, double(std::fabs(g)));
    const float *ours = memory_->f32(p.param_buffer());
    int64_t compared = 0;
    double worst = 0;
    for (size_t i = 0; i < grad.size(); ++i) {
      if (grad[i] != 0 && std::fabs(grad[i]) <= 10 * tolerance::kHfGradientRel * maxGrad)
        continue;
      worst = std::max(worst, double(std::fabs(ours[i] - updated[i])));
      ++compared;
    }
    EXPECT_LE(worst, tolerance::kHfUpdatedAbs) << "updated " << p.name();
    EXPECT_GT(compared, int64_t(grad.size()) / 2) << "updated " << p.name();
  }
}

/// make_fixtures.py --steps: several optimizer steps, each accumulating
/// micro-batches with a partial loss mask, under warmup + cosine decay and
/// active clipping, against transformers + torch.optim.AdamW.
TEST_P(HfFidelity, SeveralStepsWithAccumulationMaskScheduleAndClipping) {
  auto stepsPlan = plan::readPlanDirectory(std::string(MT_HF_PLAN_DIR) + "/" + GetParam() +
                                           "-steps");
  ASSERT_TRUE(stepsPlan) << stepsPlan.message();
  const plan::Plan &plan = *stepsPlan;
  auto allocated = exec::HostMemory::create(plan);
  ASSERT_TRUE(allocated.isOk()) << allocated.message();
  exec::HostMemory &memory = **allocated;
  auto file = io::openSafetensors(fixture_ + "/expected-steps.safetensors");
  ASSERT_TRUE(file) << file.message();
  auto read = [&](const std::string &name) {
    const io::TensorInfo *info = file->find(name);
    EXPECT_NE(info, nullptr) << name;
    std::vector<float> out(info ? info->numElements() : 0);
    if (info) {
      EXPECT_TRUE(file->readAsFloat32(name, out.data(), out.size())) << name;
    }
    return out;
  };
  auto readIds = [&](const std::string &name) {
    const io::TensorInfo *info = file->find(name);
    EXPECT_NE(info, nullptr) << name;
    std::vector<int32_t> out(info ? info->numElements() : 0);
    if (info) {
      EXPECT_TRUE(file->readRaw(name, out.data(), info->byteSize())) << name;
    }
    return out;
  };
  std::vector<int32_t> ids = readIds("input_ids"), labels = readIds("labels");
  std::vector<float> mask = read("loss_mask");
  std::vector<float> losses = read("loss"), norms = read("grad_norm"), lrs = read("lr");
  const plan::Training &t = plan.training();
  const int64_t steps = int64_t(losses.size()), micro = t.micro_batches_per_step();
  const int64_t tokens = t.micro_batch() * t.seq();
  ASSERT_EQ(int64_t(ids.size()), steps * micro * tokens) << "fixture and plan disagree";

  auto executor = cpu::CpuExecutor::create(plan, memory);
  ASSERT_TRUE(executor) << executor.message();
  ASSERT_TRUE(exec::loadHfWeights(plan, memory, nullptr, fixture_));
  std::map<std::string, std::vector<float>> initial;
  for (const plan::Parameter &p : plan.parameters()) {
    const float *w = memory.f32(p.param_buffer());
    initial[p.name()].assign(w, w + memory.elements(p.param_buffer()));
  }
  const plan::Bindings &b = plan.bindings();
  for (int64_t s = 0; s < steps; ++s) {
    memory.clear(plan::GRADIENTS);
    double loss = 0;
    for (int64_t m = 0; m < micro; ++m) {
      size_t at = size_t((s * micro + m) * tokens);
      for (int64_t i = 0; i < tokens; ++i) {
        memory.i32(b.input_ids())[i] = ids[at + i];
        memory.i32(b.labels())[i] = labels[at + i];
        memory.f32(b.loss_mask())[i] = mask[at + i];
      }
      *memory.f32(b.loss_scale()) = float(1.0 / double(micro));
      auto fb = executor->run("forward_backward");
      ASSERT_TRUE(fb) << fb.message();
      loss += *memory.f32(b.loss()) / double(micro);
    }
    EXPECT_NEAR(loss, losses[s], tolerance::kHfLossRel * losses[s]) << "step " << s + 1;
    *memory.i64(b.step()) = s + 1;
    auto opt = executor->run("optimizer_step");
    ASSERT_TRUE(opt) << opt.message();
    ASSERT_FALSE(opt->skipped);
    EXPECT_NEAR(*memory.f32(b.grad_norm()), norms[s], tolerance::kHfGradientRel * norms[s])
        << "step " << s + 1;
    EXPECT_NEAR(*memory.f32(b.learning_rate()), lrs[s], tolerance::kFp32RoundingRel * lrs[s])
        << "step " << s + 1;
  }
  // Each weight moved by the sum of its updates; compared elementwise
  // against the largest movement of its tensor (see Tolerances.h).
  for (const plan::Parameter &p : plan.parameters()) {
    std::vector<float> ref = read("updated." + p.name());
    const std::vector<float> &w0 = initial[p.name()];
    ASSERT_EQ(ref.size(), w0.size()) << p.name();
    double maxMove = 0, worst = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      maxMove = std::max(maxMove, double(std::fabs(ref[i] - w0[i])));
    const float *ours = memory.f32(p.param_buffer());
    for (size_t i = 0; i < ref.size(); ++i)
      worst = std::max(worst, double(std::fabs(ours[i] - ref[i])));
    EXPECT_GT(maxMove, 0.0) << p.name() << " did not move";
    EXPECT_LE(worst, tolerance::kHfMovementRel * maxMove) << "updated " << p.name();
  }
}

/// compile-plans.sh's --moe-z-loss-coeff of tiny-qwen3-moe-z.
constexpr double kZLossCoeff = 0.01;

/// Megatron-Core's z_loss_func (ST-MoE's router z-loss) of one router, in
/// fp64 from its input x [tokens, hidden] and weight w [experts, hidden]:
/// coeff · mean_t logsumexp_e(x_t · w_e)².
double zLossOf(const float *x, const float *w, int64_t tokens, int64_t hidden,
               int64_t experts) {
  double sum = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> logits(experts, 0.0);
    for (int64_t e = 0; e < experts; ++e)
      for (int64_t h = 0; h < hidden; ++h)
        logits[e] += double(x[t * hidden + h]) * double(w[e * hidden + h]);
    const double mx = *std::max_element(logits.begin(), logits.end());
    double s = 0;
    for (double l : logits)
      s += std::exp(l - mx);
    const double lse = mx + std::log(s);
    sum += lse * lse;
  }
  return kZLossCoeff * sum / double(tokens);
}

using HfFidelityZLoss = HfFidelity;

// With moe_z_loss_coeff the loss is lm_loss + aux_loss + z_loss, three
// terms mtrun reports apart (Megatron-Core logs load_balancing_loss and
// z_loss apart): each router's z-loss output is the formula above on the
// router's own input and weight, the z_loss binding is their sum over the
// MoE layers, aux_loss stays transformers' load-balancing loss alone (no
// z-loss in it) and lm_loss transformers' language-model loss; the three
// add up to the loss.
TEST_P(HfFidelityZLoss, ZLossIsReportedApartAndIsTheRoutersLogSumExpSquared) {
  auto executor = cpu::CpuExecutor::create(plan_, *memory_);
  ASSERT_TRUE(executor) << executor.message();
  loadStep();
  ASSERT_FALSE(HasFatalFailure());
  const plan::Bindings &b = plan_.bindings();
  const std::vector<int> routers = instructionsOf("moe_router");
  ASSERT_FALSE(routers.empty());
  const auto &instrs = plan_.programs(0).instructions();
  std::vector<double> ourAux, ourZ, wantZ;
  auto fb = executor->run("forward_backward", [&](int i) {
    if (std::find(routers.begin(), routers.end(), i) == routers.end())
      return;
    const plan::Instruction &in = instrs[i];
    const plan::Attrs a(in);
    ourAux.push_back(*memory_->f32(in.outputs(2)));
    ourZ.push_back(*memory_->f32(in.outputs(3)));
    wantZ.push_back(zLossOf(memory_->f32(in.inputs(0)), memory_->f32(in.inputs(1)),
                            a.i("tokens"), a.i("hidden"), a.i("experts")));
  });
  ASSERT_TRUE(fb) << fb.message();
  std::vector<float> hfAux = reference("aux_loss");
  ASSERT_EQ(ourZ.size(), hfAux.size()) << "MoE layers";
  double zSum = 0, auxSum = 0;
  for (size_t l = 0; l < ourZ.size(); ++l) {
    EXPECT_GT(wantZ[l], 0.0) << "MoE layer " << l;
    EXPECT_NEAR(ourZ[l], wantZ[l], tolerance::kFp32ChainRel * wantZ[l]) << "z-loss, MoE layer " << l;
    EXPECT_NEAR(ourAux[l], hfAux[l], tolerance::kHfLossRel * hfAux[l])
        << "load-balancing loss, MoE layer " << l;
    zSum += ourZ[l], auxSum += hfAux[l];
  }
  ASSERT_TRUE(b.has_lm_loss() && b.has_aux_loss() && b.has_z_loss());
  const double lm = reference("lm_loss")[0];
  const float bound[3] = {*memory_->f32(b.lm_loss()), *memory_->f32(b.aux_loss()),
                          *memory_->f32(b.z_loss())};
  EXPECT_NEAR(bound[0], lm, tolerance::kHfLossRel * lm) << "lm_loss binding";
  EXPECT_NEAR(bound[1], auxSum, tolerance::kHfLossRel * auxSum) << "aux_loss binding";
  EXPECT_NEAR(bound[2], zSum, tolerance::kFp32ChainRel * zSum) << "z_loss binding";
  // The loss is (lm + aux) + z in fp32, the order the importer adds them.
  EXPECT_EQ(*memory_->f32(b.loss()), (bound[0] + bound[1]) + bound[2]);
}

INSTANTIATE_TEST_SUITE_P(ZLoss, HfFidelityZLoss, ::testing::Values("tiny-qwen3-moe-z"),
                         [](const auto &info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFidelity,
                         ::testing::Values("tiny-llama", "tiny-qwen2", "tiny-qwen3",
                                           "tiny-qwen2-vocab95", "tiny-qwen3-moe",
                                           "tiny-qwen3-moe-noaux", "tiny-mixtral",
                                           "tiny-qwen2-moe",
                                           "tiny-llama-transformers5",
                                           "tiny-qwen2-transformers5",
                                           "tiny-qwen3-transformers5",
                                           "tiny-qwen2-vocab95-transformers5",
                                           "tiny-qwen3-moe-transformers5",
                                           "tiny-qwen3-moe-noaux-transformers5",
                                           "tiny-mixtral-transformers5",
                                           "tiny-qwen2-moe-transformers5"),
                         [](const auto &info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

} // namespace
} // namespace mt
