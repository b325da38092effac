// Kernel table of the CPU backend: plan op name -> reference kernel call.
#include "runtime/cpu/CpuExecutor.h"

#include "runtime/cpu/Attention.h"
#include "runtime/cpu/Dense.h"
#include "runtime/cpu/Loss.h"
#include "runtime/cpu/MoE.h"
#include "runtime/cpu/Norm.h"
#include "runtime/cpu/Optimizer.h"
#include "runtime/cpu/VocabParallel.h"

#include <climits>
#include <cmath>
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

using Table = std::unordered_map<std::string, CpuExecutor::Kernel>;

/// A kernel that cannot fail and needs no rank context.
template <typename F> CpuExecutor::Kernel plain(F f) {
  return [f](const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &) {
    f(in, a, m);
    return Status::ok();
  };
}

void addDenseKernels(Table &t) {
  t["linear"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearForward(io.f(0), io.f(1), a.i("has_bias") ? io.f(2) : nullptr, io.out(0),
                  a.i("tokens"), a.i("in"), a.i("out"));
  });
  t["linear_grad_input"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearBackwardInput(io.f(0), io.f(1), io.out(0), a.i("tokens"), a.i("in"), a.i("out"));
  });
  t["linear_grad_weight"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearBackwardWeight(io.f(0), io.f(1), io.out(0), a.i("tokens"), a.i("in"), a.i("out"));
  });
  t["bias_add"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    biasAddForward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"));
  });
  t["bias_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    biasBackward(io.f(0), io.out(0), a.i("tokens"), a.i("out"));
  });
  t["swiglu"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    swigluForward(io.f(0), io.f(1), io.out(0), a.i("n"));
  });
  t["swiglu_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    swigluBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("n"));
  });
  t["gelu"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    geluForward(io.f(0), io.out(0), a.i("n"), a.i("approximate_tanh") != 0);
  });
  t["gelu_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    geluBackward(io.f(0), io.f(1), io.out(0), a.i("n"), a.i("approximate_tanh") != 0);
  });
  t["add"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    addForward(io.f(0), io.f(1), io.out(0), a.i("n"));
  });
  t["accumulate"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    accumulate(io.f(0), io.out(0), a.i("n"));
  });
  t["fill_zero"] = plain([](auto &in, auto &a, auto &m) {
    std::memset(m.data(in.outputs(0)), 0, size_t(a.i("n")) * sizeof(float));
  });
}

void addNormAndAttentionKernels(Table &t) {
  t["rmsnorm"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rmsnormForward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"), float(a.f("eps")));
  });
  t["rmsnorm_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rmsnormBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("rows"),
                    a.i("dim"), float(a.f("eps")));
  });
  t["layernorm"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    layernormForward(io.f(0), io.f(1), io.f(2), io.out(0), a.i("rows"), a.i("dim"),
                     float(a.f("eps")));
  });
  t["layernorm_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    layernormBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), io.out(2),
                      a.i("rows"), a.i("dim"), float(a.f("eps")));
  });
  t["rotary"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rotaryForward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                  a.i("head_dim"), kernels::rotaryParamsOf(a));
  });
  t["rotary_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rotaryBackward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                   a.i("head_dim"), kernels::rotaryParamsOf(a));
  });
  t["attention"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionForward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), attentionOf(a));
  });
  t["attention_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionBackward(io.f(0), io.f(1), io.f(2), io.f(3), io.f(5), io.f(4), io.out(0),
                      io.out(1), io.out(2), attentionOf(a));
  });
}

void addMoEAndLossKernels(Table &t) {
  t["moe_router"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    *io.out(2) = moeRouterForward(io.f(0), io.f(1), io.out(0), m.i32(in.outputs(1)), routerOf(a));
  });
  t["moe_router_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    moeRouterBackward(io.f(0), io.f(1), io.f(2), *io.f(3), io.out(0), io.out(1), routerOf(a));
  });
  t["expert_ffn"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    expertFfnForward(io.f(0), io.f(1), io.ids(2), io.f(3), io.f(4), io.f(5), io.out(0),
                     expertsOf(a));
  });
  t["expert_ffn_grad"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    expertFfnBackward(io.f(0), io.f(1), io.ids(2), io.f(3), io.f(4), io.f(5), io.f(6),
                      io.out(0), io.out(1), io.out(2), io.out(3), io.out(4), expertsOf(a));
  });
}

void addOptimizerKernels(Table &t) {
  t["check_finite"] = plain([](auto &, auto &, auto &) {}); // interpreted by run()
  t["clip_coefficient"] = plain([](auto &in, auto &a, auto &m) {
    *m.f32(in.outputs(0)) = kernels::clipCoefficient(a.f("max_norm"), *m.f32(in.inputs(0)));
  });
  t["lr_schedule"] = plain([](auto &in, auto &a, auto &m) {
    *m.f32(in.outputs(0)) = float(kernels::scheduledLearningRate(a, *m.i64(in.inputs(0))));
  });
  t["adamw"] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    AdamWParams p{*io.f(4),     a.f("beta1"), a.f("beta2"), a.f("eps"),
                  a.f("weight_decay"), *m.i64(in.inputs(5)), *io.f(6)};
    adamwStep(io.f(0), io.f(1), io.f(2), io.f(3), a.i("n"), p);
  });
}

/// Collectives and kernels whose work depends on the rank's place in the mesh.
class ParallelKernels {
public:
  using Rank = const exec::RankContext *;

  static Status allReduce(const Instruction &in, const Attrs &a, HostMemory &m,
                          const KernelContext &k) {
    Rank rank = k.rank;
    float *out = m.f32(in.outputs(0));
    if (in.inputs(0) != in.outputs(0))
      std::memcpy(out, m.f32(in.inputs(0)), size_t(a.i("n")) * sizeof(float));
    comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
    if (!group)
      return Status::ok();
    return group->allReduce(out, size_t(a.i("n")), comm::DType::F32,
                            a.i("average") ? comm::ReduceOp::Avg : comm::ReduceOp::Sum);
  }

  /// The group of an all_gather / reduce_scatter over `parts` ranks.
  static Expected<comm::Communicator *> partsGroup(const Attrs &a, Rank rank, const char *op) {
    comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
    if (!group || group->size() != a.i("parts"))
      return Status::error(std::string(op) + " over '" + a.s("axis") + "' expects " +
                           std::to_string(a.i("parts")) + " ranks in the group");
    return group;
  }

  /// Concatenates the group's [outer, run] blocks along the run: rank r's
  /// block lands at columns [r·run, (r+1)·run) of every outer row.
  static Status allGather(const Instruction &in, const Attrs &a, HostMemory &m,
                          const KernelContext &k) {
    int64_t outer = a.i("outer"), run = a.i("run"), parts = a.i("parts");
    auto group = partsGroup(a, k.rank, "all_gather");
    if (!group)
      return group.status();
    std::vector<float> all(size_t(outer * run * parts));
    if (Status s = (*group)->allGather(m.f32(in.inputs(0)), all.data(), size_t(outer * run),
                                       comm::DType::F32);
        !s)
      return s;
    float *out = m.f32(in.outputs(0));
    for (int64_t r = 0; r < parts; ++r)
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(out + (o * parts + r) * run, all.data() + (r * outer + o) * run,
                    size_t(run) * sizeof(float));
    return Status::ok();
  }

  /// Sums the group's full [outer, parts·run] inputs and keeps this rank's
  /// column block: the blocks are made rank-major for the reduce-scatter.
  static Status reduceScatter(const Instruction &in, const Attrs &a, HostMemory &m,
                              const KernelContext &k) {
    int64_t outer = a.i("outer"), run = a.i("run"), parts = a.i("parts");
    auto group = partsGroup(a, k.rank, "reduce_scatter");
    if (!group)
      return group.status();
    const float *full = m.f32(in.inputs(0));
    std::vector<float> blocks(size_t(outer * run * parts));
    for (int64_t r = 0; r < parts; ++r)
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(blocks.data() + (r * outer + o) * run, full + (o * parts + r) * run,
                    size_t(run) * sizeof(float));
    return (*group)->reduceScatter(blocks.data(), m.f32(in.outputs(0)), size_t(outer * run),
                                   comm::DType::F32, comm::ReduceOp::Sum);
  }

  /// The first row of this rank's vocabulary slice.
  static int64_t vocabStart(const Attrs &a, Rank rank) {
    std::string axis = a.s("vocab_parallel_axis");
    return axis.empty() || !rank ? 0 : rank->coordinate(axis) * a.i("vocab");
  }

  /// The real vocabulary: columns at or past it are padding.
  static int64_t validVocab(const Attrs &a, Rank rank) {
    std::string axis = a.s("vocab_parallel_axis");
    int64_t full = a.i("vocab") * (axis.empty() || !rank ? 1 : rank->axisSize(axis));
    return a.i("valid_vocab", full);
  }

  /// A reduction over the vocab-parallel axis; the first failure is kept.
  static AxisReduce reducer(const Attrs &a, Rank rank, Status &failure) {
    std::string axis = a.s("vocab_parallel_axis");
    comm::Communicator *group = axis.empty() || !rank ? nullptr : rank->group(axis);
    return [group, &failure](float *data, int64_t count, bool max) {
      if (group && failure)
        failure = group->allReduce(data, size_t(count), comm::DType::F32,
                                   max ? comm::ReduceOp::Max : comm::ReduceOp::Sum);
    };
  }

  static Status globalNorm(const Instruction &in, const Attrs &a, HostMemory &m,
                           const KernelContext &k) {
    Rank rank = k.rank;
    std::string axis = a.s("sharded_axis"), replicated = a.s("replicated");
    comm::Communicator *group = axis.empty() || !rank ? nullptr : rank->group(axis);
    // Replicated gradients are held whole by every rank of the axis: each
    // counts 1/size so that the sum over the axis counts them once.
    double sum = 0, share = group ? 1.0 / group->size() : 1.0;
    for (int i = 0; i < in.inputs_size(); ++i) {
      double sq = sumOfSquares(m.f32(in.inputs(i)), m.elements(in.inputs(i)));
      sum += (size_t(i) < replicated.size() && replicated[i] == '1') ? sq * share : sq;
    }
    float total = float(sum);
    if (group)
      if (Status s = group->allReduce(&total, 1, comm::DType::F32, comm::ReduceOp::Sum); !s)
        return s;
    // Pipeline stages hold disjoint parameters: their sums add up.
    std::string stages = a.s("pipeline_axis");
    if (comm::Communicator *pp = stages.empty() || !rank ? nullptr : rank->group(stages))
      if (Status s = pp->allReduce(&total, 1, comm::DType::F32, comm::ReduceOp::Sum); !s)
        return s;
    *m.f32(in.outputs(0)) = std::sqrt(std::max(total, 0.0f));
    return Status::ok();
  }

  static void add(Table &t) {
    t["all_reduce"] = allReduce;
    t["send"] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      if (!k.pipeline || !k.rank)
        return Status::error("send outside a pipeline");
      int64_t to = a.i("peer_virtual_stage") % k.rank->axisSize("pp");
      return k.pipeline->send(to, k.microBatch, in.inputs(0), m.f32(in.inputs(0)), a.i("n"));
    };
    t["recv"] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      if (!k.pipeline || !k.rank)
        return Status::error("recv outside a pipeline");
      int64_t from = a.i("peer_virtual_stage") % k.rank->axisSize("pp");
      return k.pipeline->receive(from, k.microBatch, in.outputs(0), m.f32(in.outputs(0)),
                                 a.i("n"));
    };
    t["all_gather"] = allGather;
    t["reduce_scatter"] = reduceScatter;
    t["global_norm"] = globalNorm;
    t["embedding"] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      Rank rank = k.rank;
      Io io{in, m};
      embeddingForwardShard(io.ids(0), io.f(1), io.out(0), a.i("tokens"), a.i("hidden"),
                            vocabStart(a, rank), a.i("vocab"));
      return Status::ok();
    };
    t["embedding_grad"] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      Rank rank = k.rank;
      Io io{in, m};
      embeddingBackwardShard(io.ids(0), io.f(1), io.out(0), a.i("tokens"), a.i("hidden"),
                             vocabStart(a, rank), a.i("vocab"));
      return Status::ok();
    };
    t["cross_entropy"] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      Rank rank = k.rank;
      Io io{in, m};
      Status failure;
      *io.out(0) = crossEntropyForwardShard(io.f(0), io.ids(1), io.f(2), a.i("tokens"),
                                            a.i("vocab"), vocabStart(a, rank),
                                            validVocab(a, rank), reducer(a, rank, failure));
      return failure;
    };
    t["cross_entropy_grad"] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      Rank rank = k.rank;
      Io io{in, m};
      Status failure;
      crossEntropyBackwardShard(io.f(0), io.ids(1), io.f(2), *io.f(3), io.out(0),
                                a.i("tokens"), a.i("vocab"), vocabStart(a, rank),
                                validVocab(a, rank), reducer(a, rank, failure));
      return failure;
    };
  }
};

const Table &kernelTable() {
  static const Table table = [] {
    Table t;
    addDenseKernels(t);
    addNormAndAttentionKernels(t);
    addMoEAndLossKernels(t);
    addOptimizerKernels(t);
    ParallelKernels::add(t);
    return t;
  }();
  return table;
}

/// The GEMM dimensions of a linear op must fit OpenBLAS's 32-bit ints (a
/// larger one would be truncated, not refused, by cblas_sgemm).
Status checkBlasDims(const Instruction &instr) {
  if (instr.op().rfind("linear", 0) != 0)
    return Status::ok();
  for (const char *name : {"tokens", "in", "out"})
    if (int64_t v = Attrs(instr).i(name); v > INT32_MAX)
      return Status::error("attribute '" + std::string(name) + "' = " + std::to_string(v) +
                           " exceeds " + std::to_string(INT32_MAX) +
                           ", the largest GEMM dimension of the CPU backend's 32-bit BLAS");
  return Status::ok();
}

} // namespace

Expected<CpuExecutor> CpuExecutor::create(const plan::Plan &plan, exec::HostMemory &memory,
                                          const exec::RankContext *rank) {
  CpuExecutor executor(plan, memory, rank);
  for (const plan::Program &program : plan.programs()) {
    auto &resolved = executor.kernels_[program.name()];
    for (const plan::Instruction &instr : program.instructions()) {
      auto it = kernelTable().find(instr.op());
      if (it == kernelTable().end())
        return Status::error("program '" + program.name() + "': op '" + instr.op() +
                             "' has no CPU kernel");
      if (Status s = checkBlasDims(instr); !s)
        return Status::error("program '" + program.name() + "': op '" + instr.op() + "': " +
                             s.message());
      resolved.push_back(&it->second);
    }
  }
  return executor;
}

Expected<std::unique_ptr<exec::PipelineChannels>> CpuExecutor::openPipeline() {
  if (!context_.rank)
    return Status::error("pipeline channels need the job's ranks (a plan with pp > 1)");
  return std::unique_ptr<exec::PipelineChannels>(
      std::make_unique<exec::HostPipelineChannels>(*context_.rank));
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
    if (Status s = (*kernels[i])(instr, plan::Attrs(instr), *memory_, context_); !s)
      return Status::error((context_.rank ? context_.rank->describe() + " " : std::string()) + "program '" +
                           name + "' instruction " + std::to_string(i) + " (" + instr.op() +
                           (instr.location().empty() ? "" : ", " + instr.location()) +
                           "): " + s.message());
    if (afterEach)
      afterEach(i);
  }
  return ProgramResult{};
}

} // namespace mt::cpu
