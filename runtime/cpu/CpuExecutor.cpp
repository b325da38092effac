// Kernel table of the CPU backend: plan op name -> reference kernel call.
#include "runtime/cpu/CpuExecutor.h"

#include "runtime/cpu/Attention.h"
#include "runtime/cpu/Dense.h"
#include "runtime/cpu/Loss.h"
#include "runtime/cpu/MoE.h"
#include "runtime/cpu/Norm.h"
#include "runtime/cpu/Optimizer.h"

#include <cblas.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

namespace mt::cpu {
namespace {

using plan::Attrs;
using plan::Instruction;
using exec::HostMemory;

struct Io {
  const Instruction &in;
  HostMemory &m;
  float *f(int i) const { return m.f32(in.inputs(i)); }
  int32_t *ids(int i) const { return m.i32(in.inputs(i)); }
  float *out(int i) const { return m.f32(in.outputs(i)); }
};

RotaryParams rotaryOf(const Attrs &a) {
  RotaryParams p;
  p.theta = a.f("theta");
  p.scalingFactor = a.f("scaling_factor", 0);
  p.lowFreqFactor = a.f("low_freq_factor", 0);
  p.highFreqFactor = a.f("high_freq_factor", 0);
  p.originalMaxPosition = a.i("original_max_position", 0);
  return p;
}

AttentionShape attentionOf(const Attrs &a) {
  return {a.i("batch"), a.i("seq"), a.i("heads"), a.i("kv_heads"), a.i("head_dim"),
          float(a.f("scale"))};
}

RouterShape routerOf(const Attrs &a) {
  return {a.i("tokens"), a.i("hidden"), a.i("experts"), a.i("top_k"),
          a.i("norm_topk_prob") != 0, float(a.f("aux_loss_coeff"))};
}

ExpertShape expertsOf(const Attrs &a) {
  return {a.i("tokens"), a.i("hidden"), a.i("ffn"), a.i("experts"), a.i("top_k")};
}

/// The learning rate of mt.lr_schedule at 1-based `step`.
double scheduledLr(const Attrs &a, int64_t step) {
  double maxLr = a.f("max_lr"), minLr = a.f("min_lr");
  int64_t warmup = a.i("warmup_steps"), decay = a.i("decay_steps");
  if (warmup > 0 && step <= warmup)
    return maxLr * double(step) / double(warmup);
  std::string style = a.s("style");
  if (style == "constant" || decay <= warmup)
    return maxLr;
  double p = std::clamp(double(step - warmup) / double(decay - warmup), 0.0, 1.0);
  double f = style == "linear" ? 1.0 - p : 0.5 * (1.0 + std::cos(M_PI * p));
  return minLr + (maxLr - minLr) * f;
}

using Table = std::unordered_map<std::string, CpuExecutor::Kernel>;

void addDenseKernels(Table &t) {
  t["embedding"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    embeddingForward(io.ids(0), io.f(1), io.out(0), a.i("tokens"), a.i("hidden"));
  };
  t["embedding_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    embeddingBackward(io.ids(0), io.f(1), io.out(0), a.i("tokens"), a.i("vocab"), a.i("hidden"));
  };
  t["linear"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearForward(io.f(0), io.f(1), a.i("has_bias") ? io.f(2) : nullptr, io.out(0),
                  a.i("tokens"), a.i("in"), a.i("out"));
  };
  t["linear_grad_input"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearBackwardInput(io.f(0), io.f(1), io.out(0), a.i("tokens"), a.i("in"), a.i("out"));
  };
  t["linear_grad_weight"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearBackwardWeight(io.f(0), io.f(1), io.out(0), a.i("tokens"), a.i("in"), a.i("out"));
  };
  t["bias_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    biasBackward(io.f(0), io.out(0), a.i("tokens"), a.i("out"));
  };
  t["swiglu"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    swigluForward(io.f(0), io.f(1), io.out(0), a.i("n"));
  };
  t["swiglu_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    swigluBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("n"));
  };
  t["gelu"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    geluForward(io.f(0), io.out(0), a.i("n"), a.i("approximate_tanh") != 0);
  };
  t["gelu_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    geluBackward(io.f(0), io.f(1), io.out(0), a.i("n"), a.i("approximate_tanh") != 0);
  };
  t["add"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    addForward(io.f(0), io.f(1), io.out(0), a.i("n"));
  };
  t["accumulate"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    accumulate(io.f(0), io.out(0), a.i("n"));
  };
  t["fill_zero"] = [](auto &in, auto &a, auto &m) {
    std::memset(m.data(in.outputs(0)), 0, size_t(a.i("n")) * sizeof(float));
  };
}

void addNormAndAttentionKernels(Table &t) {
  t["rmsnorm"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rmsnormForward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"), float(a.f("eps")));
  };
  t["rmsnorm_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rmsnormBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("rows"),
                    a.i("dim"), float(a.f("eps")));
  };
  t["layernorm"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    layernormForward(io.f(0), io.f(1), io.f(2), io.out(0), a.i("rows"), a.i("dim"),
                     float(a.f("eps")));
  };
  t["layernorm_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    layernormBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), io.out(2),
                      a.i("rows"), a.i("dim"), float(a.f("eps")));
  };
  t["rotary"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rotaryForward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                  a.i("head_dim"), rotaryOf(a));
  };
  t["rotary_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rotaryBackward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                   a.i("head_dim"), rotaryOf(a));
  };
  t["attention"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionForward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), attentionOf(a));
  };
  t["attention_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionBackward(io.f(0), io.f(1), io.f(2), io.f(3), io.f(5), io.f(4), io.out(0),
                      io.out(1), io.out(2), attentionOf(a));
  };
}

void addMoEAndLossKernels(Table &t) {
  t["moe_router"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    *io.out(2) = moeRouterForward(io.f(0), io.f(1), io.out(0), m.i32(in.outputs(1)), routerOf(a));
  };
  t["moe_router_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    moeRouterBackward(io.f(0), io.f(1), io.f(2), *io.f(3), io.out(0), io.out(1), routerOf(a));
  };
  t["expert_ffn"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    expertFfnForward(io.f(0), io.f(1), io.ids(2), io.f(3), io.f(4), io.f(5), io.out(0),
                     expertsOf(a));
  };
  t["expert_ffn_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    expertFfnBackward(io.f(0), io.f(1), io.ids(2), io.f(3), io.f(4), io.f(5), io.f(6),
                      io.out(0), io.out(1), io.out(2), io.out(3), io.out(4), expertsOf(a));
  };
  t["cross_entropy"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    *io.out(0) = crossEntropyForward(io.f(0), io.ids(1), io.f(2), a.i("tokens"), a.i("vocab"));
  };
  t["cross_entropy_grad"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    crossEntropyBackward(io.f(0), io.ids(1), io.f(2), *io.f(3), io.out(0), a.i("tokens"),
                         a.i("vocab"));
  };
}

void addOptimizerKernels(Table &t) {
  t["global_norm"] = [](auto &in, auto &, auto &m) {
    double sum = 0;
    for (uint32_t id : in.inputs())
      sum += sumOfSquares(m.f32(id), m.elements(id));
    *m.f32(in.outputs(0)) = float(std::sqrt(sum));
  };
  t["check_finite"] = [](auto &, auto &, auto &) {}; // interpreted by run()
  t["clip_coefficient"] = [](auto &in, auto &a, auto &m) {
    double maxNorm = a.f("max_norm"), norm = *m.f32(in.inputs(0));
    double coef = maxNorm > 0 ? std::min(1.0, maxNorm / (norm + 1.0e-6)) : 1.0;
    *m.f32(in.outputs(0)) = float(coef);
  };
  t["lr_schedule"] = [](auto &in, auto &a, auto &m) {
    *m.f32(in.outputs(0)) = float(scheduledLr(a, *m.i64(in.inputs(0))));
  };
  t["adamw"] = [](auto &in, auto &a, auto &m) {
    Io io{in, m};
    AdamWParams p{*io.f(4),     a.f("beta1"), a.f("beta2"), a.f("eps"),
                  a.f("weight_decay"), *m.i64(in.inputs(5)), *io.f(6)};
    adamwStep(io.f(0), io.f(1), io.f(2), io.f(3), a.i("n"), p);
  };
}

const Table &kernelTable() {
  static const Table table = [] {
    Table t;
    addDenseKernels(t);
    addNormAndAttentionKernels(t);
    addMoEAndLossKernels(t);
    addOptimizerKernels(t);
    return t;
  }();
  return table;
}

} // namespace

Expected<CpuExecutor> CpuExecutor::create(const plan::Plan &plan, exec::HostMemory &memory) {
  // The kernels parallelize with OpenMP; OpenBLAS threads on top of them
  // oversubscribe the cores (measured: twice slower on 2 cores).
  if (!std::getenv("OPENBLAS_NUM_THREADS"))
    openblas_set_num_threads(1);
  CpuExecutor executor(plan, memory);
  for (const plan::Program &program : plan.programs()) {
    auto &resolved = executor.kernels_[program.name()];
    for (const plan::Instruction &instr : program.instructions()) {
      auto it = kernelTable().find(instr.op());
      if (it == kernelTable().end())
        return Status::error("program '" + program.name() + "': op '" + instr.op() +
                             "' has no CPU kernel");
      resolved.push_back(&it->second);
    }
  }
  return executor;
}

Expected<ProgramResult> CpuExecutor::run(const std::string &name,
                                         const std::function<void(int)> &afterEach) {
  const plan::Program *program = nullptr;
  for (const plan::Program &p : plan_->programs())
    if (p.name() == name)
      program = &p;
  if (!program)
    return Status::error("the plan has no program '" + name + "'");
  const auto &kernels = kernels_.at(name);
  for (int i = 0; i < program->instructions_size(); ++i) {
    const plan::Instruction &instr = program->instructions(i);
    if (instr.op() == "check_finite") {
      float value = *memory_->f32(instr.inputs(0));
      if (!std::isfinite(value))
        return ProgramResult{true, "'" + plan_->buffers(instr.inputs(0)).name() + "' is " +
                                       std::to_string(value)};
      continue;
    }
    (*kernels[i])(instr, plan::Attrs(instr), *memory_);
    if (afterEach)
      afterEach(i);
  }
  return ProgramResult{};
}

} // namespace mt::cpu
