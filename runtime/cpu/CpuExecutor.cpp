// Kernel table of the CPU backend: plan instruction (runtime/plan/OpTable.inc)
// -> reference kernel call.
#include "runtime/cpu/CpuExecutor.h"

#include "runtime/cpu/Attention.h"
#include "runtime/cpu/Dense.h"
#include "runtime/cpu/MoE.h"
#include "runtime/cpu/Norm.h"
#include "runtime/cpu/Optimizer.h"
#include "runtime/cpu/VocabParallel.h"

#include <climits>
#include <cmath>
#include <cstring>
#include <vector>

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

using plan::Op;
using Table = plan::PerOp<CpuExecutor::Kernel>;

/// A kernel that cannot fail and needs no rank context.
template <typename F> CpuExecutor::Kernel plain(F f) {
  return [f](const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &) {
    f(in, a, m);
    return Status::ok();
  };
}

void addDenseKernels(Table &t) {
  t[Op::linear] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearForward(io.f(0), io.f(1), a.i("has_bias") ? io.f(2) : nullptr, io.out(0),
                  a.i("tokens"), a.i("in"), a.i("out"));
  });
  t[Op::linear_grad_input] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearBackwardInput(io.f(0), io.f(1), io.out(0), a.i("tokens"), a.i("in"), a.i("out"));
  });
  t[Op::linear_grad_weight] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    linearBackwardWeight(io.f(0), io.f(1), io.out(0), a.i("tokens"), a.i("in"), a.i("out"));
  });
  t[Op::bias_add] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    biasAddForward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"));
  });
  t[Op::bias_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    biasBackward(io.f(0), io.out(0), a.i("tokens"), a.i("out"));
  });
  t[Op::swiglu] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    swigluForward(io.f(0), io.f(1), io.out(0), a.i("n"));
  });
  t[Op::swiglu_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    swigluBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("n"));
  });
  t[Op::gelu] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    geluForward(io.f(0), io.out(0), a.i("n"), a.i("approximate_tanh") != 0);
  });
  t[Op::gelu_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    geluBackward(io.f(0), io.f(1), io.out(0), a.i("n"), a.i("approximate_tanh") != 0);
  });
  t[Op::add] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    addForward(io.f(0), io.f(1), io.out(0), a.i("n"));
  });
  t[Op::accumulate] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    accumulate(io.f(0), io.out(0), a.i("n"));
  });
  t[Op::fill_zero] = plain([](auto &in, auto &a, auto &m) {
    std::memset(m.data(in.outputs(0)), 0, size_t(a.i("n")) * sizeof(float));
  });
}

void addNormAndAttentionKernels(Table &t) {
  t[Op::rmsnorm] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rmsnormForward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"), float(a.f("eps")));
  });
  t[Op::rmsnorm_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rmsnormBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("rows"),
                    a.i("dim"), float(a.f("eps")));
  });
  t[Op::layernorm] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    layernormForward(io.f(0), io.f(1), io.f(2), io.out(0), a.i("rows"), a.i("dim"),
                     float(a.f("eps")));
  });
  t[Op::layernorm_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    layernormBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), io.out(2),
                      a.i("rows"), a.i("dim"), float(a.f("eps")));
  });
  t[Op::rotary] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rotaryForward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                  a.i("head_dim"), kernels::rotaryParamsOf(a));
  });
  t[Op::rotary_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    rotaryBackward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                   a.i("head_dim"), kernels::rotaryParamsOf(a));
  });
  t[Op::attention] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionForward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), attentionOf(a));
  });
  t[Op::attention_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionBackward(io.f(0), io.f(1), io.f(2), io.f(3), io.f(5), io.f(4), io.out(0),
                      io.out(1), io.out(2), attentionOf(a));
  });
}

void addMoEAndLossKernels(Table &t) {
  t[Op::moe_router] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    *io.out(2) = moeRouterForward(io.f(0), io.f(1), io.out(0), m.i32(in.outputs(1)), routerOf(a));
  });
  t[Op::moe_router_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    moeRouterBackward(io.f(0), io.f(1), io.f(2), *io.f(3), io.out(0), io.out(1), routerOf(a));
  });
  t[Op::expert_ffn] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    expertFfnForward(io.f(0), io.f(1), io.ids(2), io.f(3), io.f(4), io.f(5), io.out(0),
                     expertsOf(a));
  });
  t[Op::expert_ffn_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    expertFfnBackward(io.f(0), io.f(1), io.ids(2), io.f(3), io.f(4), io.f(5), io.f(6),
                      io.out(0), io.out(1), io.out(2), io.out(3), io.out(4), expertsOf(a));
  });
}

/// The reduced rows of a cross-entropy over the whole vocabulary: the
/// vocab-parallel steps with one slice, so that every layout computes alike.
struct WholeRows {
  VocabShard shard;
  std::vector<float> rowMax, predicted, sumExp;
  WholeRows(const float *logits, const int32_t *labels, int64_t tokens, int64_t vocab)
      : shard{tokens, vocab, 0, vocab}, rowMax(size_t(tokens)), predicted(size_t(tokens)),
        sumExp(size_t(tokens)) {
    vocabParallelLogitsMax(logits, rowMax.data(), shard);
    vocabParallelPredictedLogits(logits, rowMax.data(), labels, predicted.data(),
                                 sumExp.data(), shard);
  }
};

void addLossKernels(Table &t) {
  t[Op::cross_entropy] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    WholeRows r(io.f(0), io.ids(1), a.i("tokens"), a.i("vocab"));
    *io.out(0) = crossEntropyLoss(r.rowMax.data(), r.predicted.data(), r.sumExp.data(),
                                  io.f(2), a.i("tokens"));
  });
  t[Op::cross_entropy_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    WholeRows r(io.f(0), io.ids(1), a.i("tokens"), a.i("vocab"));
    vocabParallelCrossEntropyBackward(io.f(0), io.ids(1), io.f(2), r.rowMax.data(),
                                      r.sumExp.data(), *io.f(3), io.out(0), r.shard);
  });
  t[Op::cross_entropy_loss] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    *io.out(0) = crossEntropyLoss(io.f(0), io.f(1), io.f(2), io.f(3), a.i("tokens"));
  });
}

void addOptimizerKernels(Table &t) {
  t[Op::sqrt] = plain([](auto &in, auto &, auto &m) {
    *m.f32(in.outputs(0)) = std::sqrt(std::max(*m.f32(in.inputs(0)), 0.0f));
  });
  t[Op::check_finite] = plain([](auto &, auto &, auto &) {}); // interpreted by run()
  t[Op::clip_coefficient] = plain([](auto &in, auto &a, auto &m) {
    *m.f32(in.outputs(0)) = kernels::clipCoefficient(a.f("max_norm"), *m.f32(in.inputs(0)));
  });
  t[Op::lr_schedule] = plain([](auto &in, auto &a, auto &m) {
    *m.f32(in.outputs(0)) = float(kernels::scheduledLearningRate(a, *m.i64(in.inputs(0))));
  });
  t[Op::adamw] = plain([](auto &in, auto &a, auto &m) {
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
    std::optional<comm::ReduceOp> op = comm::reduceOpNamed(a.s("reduce"));
    if (!op) // the plan loader checked it
      return Status::error("all_reduce: reduce '" + a.s("reduce") + "' is not sum, max or mean");
    comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
    if (!group)
      return Status::ok();
    return group->allReduce(out, size_t(a.i("n")), comm::DType::F32, *op);
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

  /// The first row of this rank's vocabulary slice on the axis named by
  /// the attribute `axisAttr` (none: the whole vocabulary).
  static int64_t vocabStart(const Attrs &a, Rank rank, const char *axisAttr) {
    std::string axis = a.s(axisAttr);
    return axis.empty() || !rank ? 0 : rank->coordinate(axis) * a.i("vocab");
  }

  /// This rank's slice of the logits of a vocab-parallel cross-entropy step;
  /// columns at or past valid_vocab (the real vocabulary) are padding.
  static VocabShard shardOf(const Attrs &a, Rank rank) {
    std::string axis = a.s("axis");
    return kernels::vocabSliceOf(a, rank ? rank->coordinate(axis) : 0,
                                 rank ? rank->axisSize(axis) : 1);
  }

  /// Replicated gradients are held whole by `replicas` ranks whose sums an
  /// all_reduce adds: each counts 1/replicas there, so once in the total.
  static Status sumSquares(const Instruction &in, const Attrs &a, HostMemory &m,
                           const KernelContext &) {
    std::string replicated = a.s("replicated");
    int64_t replicas = a.i("replicas", 1);
    if (replicas < 1)
      return Status::error("sum_squares: replicas is " + std::to_string(replicas) +
                           ", expected >= 1");
    double sum = 0;
    for (int i = 0; i < in.inputs_size(); ++i) {
      double sq = sumOfSquares(m.f32(in.inputs(i)), m.elements(in.inputs(i)));
      sum += (size_t(i) < replicated.size() && replicated[i] == '1') ? sq / double(replicas) : sq;
    }
    *m.f32(in.outputs(0)) = float(sum);
    return Status::ok();
  }

  static void add(Table &t) {
    t[Op::all_reduce] = allReduce;
    t[Op::send] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      if (!k.pipeline || !k.rank)
        return Status::error("send outside a pipeline");
      int64_t to = a.i("peer_virtual_stage") % k.rank->axisSize("pp");
      return k.pipeline->send(to, k.microBatch, in.inputs(0), m.f32(in.inputs(0)), a.i("n"));
    };
    t[Op::recv] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      if (!k.pipeline || !k.rank)
        return Status::error("recv outside a pipeline");
      int64_t from = a.i("peer_virtual_stage") % k.rank->axisSize("pp");
      return k.pipeline->receive(from, k.microBatch, in.outputs(0), m.f32(in.outputs(0)),
                                 a.i("n"));
    };
    t[Op::all_gather] = allGather;
    t[Op::reduce_scatter] = reduceScatter;
    t[Op::sum_squares] = sumSquares;
    t[Op::embedding] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      Io io{in, m};
      embeddingForwardShard(io.ids(0), io.f(1), io.out(0), a.i("tokens"), a.i("hidden"),
                            vocabStart(a, k.rank, "vocab_parallel_axis"), a.i("vocab"));
      return Status::ok();
    };
    t[Op::embedding_grad] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      Io io{in, m};
      embeddingBackwardShard(io.ids(0), io.f(1), io.out(0), a.i("tokens"), a.i("hidden"),
                             vocabStart(a, k.rank, "vocab_parallel_axis"), a.i("vocab"));
      return Status::ok();
    };
    t[Op::vocab_parallel_logits_max] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
      Io io{in, m};
      vocabParallelLogitsMax(io.f(0), io.out(0), shardOf(a, k.rank));
      return Status::ok();
    };
    t[Op::vocab_parallel_predicted_logits] = [](auto &in, auto &a, auto &m,
                                               const KernelContext &k) {
      Io io{in, m};
      vocabParallelPredictedLogits(io.f(0), io.f(1), io.ids(2), io.out(0), io.out(1),
                                   shardOf(a, k.rank));
      return Status::ok();
    };
    t[Op::vocab_parallel_cross_entropy_grad] = [](auto &in, auto &a, auto &m,
                                                 const KernelContext &k) {
      Io io{in, m};
      vocabParallelCrossEntropyBackward(io.f(0), io.ids(1), io.f(2), io.f(3), io.f(4), *io.f(5),
                                        io.out(0), shardOf(a, k.rank));
      return Status::ok();
    };
  }
};

const Table &kernelTable() {
  static const Table table = [] {
    Table t;
    addDenseKernels(t);
    addNormAndAttentionKernels(t);
    addMoEAndLossKernels(t);
    addLossKernels(t);
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
    auto resolved = plan::resolveKernels(program, kernelTable(), "CPU");
    if (!resolved)
      return resolved.status();
    for (const plan::Instruction &instr : program.instructions())
      if (Status s = checkBlasDims(instr); !s)
        return Status::error("program '" + program.name() + "': op '" + instr.op() + "': " +
                             s.message());
    executor.kernels_[program.name()] = std::move(*resolved);
  }
  return executor;
}

bool CpuExecutor::hasKernel(plan::Op op) { return bool(kernelTable()[op]); }

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
