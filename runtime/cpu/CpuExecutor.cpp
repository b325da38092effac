// Kernel table of the CPU backend: plan instruction (runtime/plan/OpTable.inc)
// -> reference kernel call.
#include "runtime/cpu/CpuExecutor.h"

#include "runtime/cpu/Attention.h"
#include "runtime/cpu/Collectives.h"
#include "runtime/cpu/Dense.h"
#include "runtime/cpu/MoE.h"
#include "runtime/cpu/MoEPermute.h"
#include "runtime/cpu/Norm.h"
#include "runtime/cpu/Optimizer.h"
#include "runtime/cpu/RingAttention.h"
#include "runtime/cpu/VocabParallel.h"
#include "runtime/kernels/ContextParallel.h"
#include "runtime/kernels/MoE.h"
#include "runtime/kernels/Qkv.h"

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
  /// The optional last input `i` of rotary and attention ops: position ids.
  const int32_t *positions(int i) const { return in.inputs_size() > i ? ids(i) : nullptr; }
  float *out(int i) const { return m.f32(in.outputs(i)); }
};

/// The rank's coordinate and the size of the instruction's
/// context_parallel_axis ({0, 1} without one or on a single rank).
std::pair<int64_t, int64_t> contextParallelOf(const Attrs &a, const exec::RankContext *rank) {
  std::string axis = a.s("context_parallel_axis");
  if (axis.empty() || !rank)
    return {0, 1};
  return {rank->coordinate(axis), rank->axisSize(axis)};
}

/// The attention's shape; an error when its keys are not the gather of the
/// rank's context-parallel group.
Expected<AttentionShape> attentionOf(const Attrs &a, const exec::RankContext *rank) {
  AttentionShape shape{a.i("batch"), a.i("seq"), a.i("heads"), a.i("kv_heads"),
                       a.i("head_dim"), float(a.f("scale"))};
  std::tie(shape.cpRank, shape.cpSize) = contextParallelOf(a, rank);
  if (a.i("kv_seq") != shape.kvSeq())
    return Status::error("attention: kv_seq (" + std::to_string(a.i("kv_seq")) +
                         ") is not seq (" + std::to_string(shape.seq) + ") x the " +
                         std::to_string(shape.cpSize) + " ranks of context_parallel_axis '" +
                         a.s("context_parallel_axis") + "'");
  return shape;
}

/// The place of each token of a rotary's [batch, seq] slice in the whole
/// sequence under context parallelism (empty: none; positions are s).
std::vector<int32_t> contextParallelPositions(const Attrs &a, const exec::RankContext *rank) {
  auto [cpRank, cpSize] = contextParallelOf(a, rank);
  if (cpSize == 1)
    return {};
  int64_t batch = a.i("batch"), seq = a.i("seq");
  std::vector<int32_t> positions(size_t(batch * seq));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s)
      positions[size_t(b * seq + s)] =
          int32_t(kernels::contextParallelPosition(s, seq, cpRank, cpSize));
  return positions;
}

/// The permutation's shape; an error on an unknown drop_policy.
Expected<PermuteShape> permuteOf(const Attrs &a) {
  Expected<kernels::DropPolicy> policy = kernels::dropPolicyOf(a);
  if (!policy)
    return policy.status();
  return PermuteShape{a.i("tokens"), a.i("hidden"), a.i("experts"), a.i("top_k"),
                      a.i("rows"),   a.i("capacity"), *policy,     a.i("pad_to_capacity") != 0};
}

GroupedMlpShape groupedOf(const Attrs &a) {
  return {a.i("rows"), a.i("hidden"), a.i("ffn"), a.i("experts")};
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
  t[Op::chunked_swiglu] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    chunkedSwigluForward(io.f(0), io.out(0), a.i("rows"), a.i("dim"));
  });
  t[Op::chunked_swiglu_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    chunkedSwigluBackward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"));
  });
  t[Op::chunked_swiglu_recompute_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    chunkedSwigluBackward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"), io.out(1));
  });
  t[Op::split_qkv] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Io io{in, m};
    Expected<kernels::QkvShape> s = kernels::qkvShapeOf(in.op(), a);
    if (!s)
      return s.status();
    splitQkv(io.f(0), io.out(0), io.out(1), io.out(2), s->rows, s->qDim, s->kvDim);
    return Status::ok();
  };
  t[Op::concat_qkv] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Io io{in, m};
    Expected<kernels::QkvShape> s = kernels::qkvShapeOf(in.op(), a);
    if (!s)
      return s.status();
    concatQkv(io.f(0), io.f(1), io.f(2), io.out(0), s->rows, s->qDim, s->kvDim);
    return Status::ok();
  };
  // The rotary forms: the split then the rotation of q and k in place; the
  // rotations' gradients (which add) into zeroed copies, then the packing.
  t[Op::split_qkv_rotary] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Io io{in, m};
    Expected<kernels::RotaryQkvShape> s = kernels::rotaryQkvShapeOf(in.op(), a);
    if (!s)
      return s.status();
    const kernels::QkvShape p = s->packed();
    float *q = io.out(0), *k = io.out(1);
    splitQkv(io.f(0), q, k, io.out(2), p.rows, p.qDim, p.kvDim);
    const kernels::RotaryParams rope = kernels::rotaryParamsOf(a);
    rotaryForward(q, q, s->batch, s->seq, s->heads, s->headDim, rope, io.positions(1));
    rotaryForward(k, k, s->batch, s->seq, s->kvHeads, s->headDim, rope, io.positions(1));
    return Status::ok();
  };
  t[Op::rotary_concat_qkv] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Io io{in, m};
    Expected<kernels::RotaryQkvShape> s = kernels::rotaryQkvShapeOf(in.op(), a);
    if (!s)
      return s.status();
    const kernels::QkvShape p = s->packed();
    std::vector<float> dq(size_t(p.rows * p.qDim), 0.0f), dk(size_t(p.rows * p.kvDim), 0.0f);
    const kernels::RotaryParams rope = kernels::rotaryParamsOf(a);
    rotaryBackward(io.f(0), dq.data(), s->batch, s->seq, s->heads, s->headDim, rope,
                   io.positions(3));
    rotaryBackward(io.f(1), dk.data(), s->batch, s->seq, s->kvHeads, s->headDim, rope,
                   io.positions(3));
    concatQkv(dq.data(), dk.data(), io.f(2), io.out(0), p.rows, p.qDim, p.kvDim);
    return Status::ok();
  };
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
  t[Op::add_rmsnorm] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    addRmsnormForward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("rows"),
                      a.i("dim"), float(a.f("eps")));
  });
  t[Op::add_rmsnorm_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    addRmsnormBackward(io.f(0), io.f(1), io.f(2), io.f(3), io.out(0), io.out(1), a.i("rows"),
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
  t[Op::rotary] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    Io io{in, m};
    std::vector<int32_t> cp = contextParallelPositions(a, k.rank);
    rotaryForward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                  a.i("head_dim"), kernels::rotaryParamsOf(a),
                  cp.empty() ? io.positions(1) : cp.data());
    return Status::ok();
  };
  t[Op::rotary_grad] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    Io io{in, m};
    std::vector<int32_t> cp = contextParallelPositions(a, k.rank);
    rotaryBackward(io.f(0), io.out(0), a.i("batch"), a.i("seq"), a.i("heads"),
                   a.i("head_dim"), kernels::rotaryParamsOf(a),
                   cp.empty() ? io.positions(1) : cp.data());
    return Status::ok();
  };
  t[Op::attention] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    Io io{in, m};
    Expected<AttentionShape> shape = attentionOf(a, k.rank);
    if (!shape)
      return shape.status();
    attentionForward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), *shape, io.positions(3));
    return Status::ok();
  };
  t[Op::attention_grad] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    Io io{in, m};
    Expected<AttentionShape> shape = attentionOf(a, k.rank);
    if (!shape)
      return shape.status();
    attentionBackward(io.f(0), io.f(1), io.f(2), io.f(3), io.f(5), io.f(4), io.out(0),
                      io.out(1), io.out(2), *shape, io.positions(6));
    return Status::ok();
  };
}

/// A ring-attention block's shape: the rank's coordinate on its cp axis.
AttentionShape attentionBlockOf(const Attrs &a, const exec::RankContext *rank) {
  AttentionShape shape{a.i("batch"), a.i("seq"), a.i("heads"), a.i("kv_heads"),
                       a.i("head_dim"), float(a.f("scale"))};
  std::tie(shape.cpRank, shape.cpSize) = contextParallelOf(a, rank);
  return shape;
}

void addRingAttentionKernels(Table &t) {
  t[Op::attention_block] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    Io io{in, m};
    attentionBlockForward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1),
                          attentionBlockOf(a, k.rank), a.i("step"), io.positions(3));
    return Status::ok();
  };
  t[Op::attention_block_grad] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    Io io{in, m};
    attentionBlockBackward(io.f(0), io.f(1), io.f(2), io.f(3), io.f(4), io.f(5), io.f(6),
                           io.out(0), io.out(1), io.out(2), attentionBlockOf(a, k.rank),
                           a.i("step"), io.positions(7));
    return Status::ok();
  };
  t[Op::attention_merge] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionMergeForward(io.f(0), io.f(1), io.f(2), io.f(3), io.out(0), io.out(1),
                          a.i("batch"), a.i("seq"), a.i("heads"), a.i("head_dim"));
  });
  t[Op::attention_merge_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    attentionMergeBackward(io.f(0), io.f(1), io.f(2), io.f(3), io.f(4), io.f(5), io.f(6),
                           io.f(7), io.out(0), io.out(1), io.out(2), io.out(3), a.i("batch"),
                           a.i("seq"), a.i("heads"), a.i("head_dim"));
  });
}

void addMoEAndLossKernels(Table &t) {
  t[Op::moe_router] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Expected<RouterShape> shape = kernels::routerShapeOf(a);
    if (!shape)
      return shape.status();
    Io io{in, m};
    const float *counts = a.i("count_groups") ? io.f(2) : nullptr;
    RouterLosses losses =
        moeRouterForward(io.f(0), io.f(1), counts, io.out(0), m.i32(in.outputs(1)), *shape);
    *io.out(2) = losses.balance;
    *io.out(3) = losses.z;
    return Status::ok();
  };
  t[Op::moe_router_counts] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Expected<RouterShape> shape = kernels::routerShapeOf(a);
    if (!shape)
      return shape.status();
    Io io{in, m};
    moeRouterCounts(io.f(0), io.f(1), io.out(0), *shape);
    return Status::ok();
  };
  t[Op::moe_router_grad] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Expected<RouterShape> shape = kernels::routerShapeOf(a);
    if (!shape)
      return shape.status();
    Io io{in, m};
    const float *counts = a.i("count_groups") ? io.f(5) : nullptr;
    moeRouterBackward(io.f(0), io.f(1), counts, io.f(2), *io.f(3), *io.f(4), io.out(0),
                      io.out(1), *shape);
    return Status::ok();
  };
  t[Op::sigmoid_gate] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    sigmoidGateForward(io.f(0), io.f(1), io.out(0), a.i("rows"), a.i("dim"));
  });
  t[Op::sigmoid_gate_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    sigmoidGateBackward(io.f(0), io.f(1), io.f(2), io.out(0), io.out(1), a.i("rows"),
                        a.i("dim"));
  });
}

/// A kernel over the permuted rows: `f(io, m, shape)` once the shape decodes.
template <typename F> CpuExecutor::Kernel permuting(F f) {
  return [f](const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &) {
    Expected<PermuteShape> shape = permuteOf(a);
    if (!shape)
      return shape.status();
    f(Io{in, m}, m, *shape);
    return Status::ok();
  };
}

void addMoEPermuteKernels(Table &t) {
  t[Op::moe_permute] = permuting([](const Io &io, HostMemory &m, const PermuteShape &s) {
    moePermuteForward(io.f(0), io.f(1), io.ids(2), io.out(0), m.i32(io.in.outputs(1)),
                      m.i32(io.in.outputs(2)), s);
  });
  t[Op::moe_permute_grad] = permuting([](const Io &io, HostMemory &, const PermuteShape &s) {
    moePermuteBackward(io.f(0), io.ids(1), io.out(0), s);
  });
  t[Op::moe_unpermute] = permuting([](const Io &io, HostMemory &, const PermuteShape &s) {
    moeUnpermuteForward(io.f(0), io.f(1), io.ids(2), io.out(0), s);
  });
  t[Op::moe_unpermute_grad] = permuting([](const Io &io, HostMemory &, const PermuteShape &s) {
    moeUnpermuteBackward(io.f(0), io.f(1), io.ids(2), io.f(3), io.out(0), io.out(1), s);
  });
  t[Op::moe_sort_chunks] = [](auto &in, auto &a, auto &m, const KernelContext &) {
    Io io{in, m};
    return moeSortChunks(io.f(0), io.ids(1), a.i("offsets", 0) ? io.ids(2) : nullptr, io.out(0),
                         a.i("parts"), a.i("groups"), a.i("rows"), a.i("hidden"),
                         a.i("inverse") != 0);
  };
  t[Op::moe_grouped_mlp] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    groupedMlpForward(io.f(0), io.ids(1), io.f(2), io.f(3), io.f(4), io.out(0), io.out(1),
                      groupedOf(a));
  });
  t[Op::moe_grouped_mlp_grad] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    groupedMlpBackward(io.f(0), io.ids(1), io.f(2), io.f(3), io.f(4), io.f(5), io.f(6),
                       io.out(0), io.out(1), io.out(2), io.out(3), groupedOf(a));
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
  t[Op::scale] = plain([](auto &in, auto &a, auto &m) {
    const float *x = m.f32(in.inputs(0));
    float *y = m.f32(in.outputs(0));
    const float factor = float(a.f("factor"));
    for (int64_t i = 0; i < a.i("n"); ++i)
      y[i] = x[i] * factor;
  });
  t[Op::scale_by] = plain([](auto &in, auto &a, auto &m) {
    const float *x = m.f32(in.inputs(0));
    float *y = m.f32(in.outputs(0));
    const float factor = *m.f32(in.inputs(1));
    const bool inverse = a.i("inverse", 0) == 1;
    for (int64_t i = 0; i < a.i("n"); ++i)
      y[i] = !inverse ? x[i] * factor : factor == 0.0f ? 0.0f : x[i] / factor;
  });
  t[Op::num_tokens] = plain([](auto &in, auto &a, auto &m) {
    const float *mask = m.f32(in.inputs(0));
    double count = 0;
    for (int64_t i = 0; i < a.i("n"); ++i)
      count += mask[i];
    *m.f32(in.outputs(0)) = float(count);
  });
  t[Op::check_finite] = plain([](auto &, auto &, auto &) {}); // interpreted by run()
  t[Op::clip_coefficient] = plain([](auto &in, auto &a, auto &m) {
    *m.f32(in.outputs(0)) = kernels::clipCoefficient(a.f("max_norm"), *m.f32(in.inputs(0)));
  });
  t[Op::lr_schedule] = plain([](auto &in, auto &a, auto &m) {
    *m.f32(in.outputs(0)) = float(kernels::scheduledLearningRate(a, *m.i64(in.inputs(0))));
  });
  // optimizer_offload's copies: host and device arenas are all host memory here.
  for (Op copy : {Op::copy_to_host, Op::copy_to_device})
    t[copy] = plain([](auto &in, auto &a, auto &m) {
      std::memcpy(m.data(in.outputs(0)), m.data(in.inputs(0)), size_t(a.i("n")) * sizeof(float));
    });
  t[Op::adamw] = plain([](auto &in, auto &a, auto &m) {
    Io io{in, m};
    AdamWParams p{*io.f(4),     a.f("beta1"), a.f("beta2"), a.f("eps"),
                  a.f("weight_decay"), *m.i64(in.inputs(5)), *io.f(6)};
    adamwStep(io.f(0), io.f(1), io.f(2), io.f(3), a.i("n"), p);
  });
}

/// Kernels whose work depends on the rank's place in the mesh (its
/// collectives: runtime/cpu/Collectives.cpp).
class ParallelKernels {
public:
  using Rank = const exec::RankContext *;

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
    std::vector<kernels::HostGradient> grads;
    for (uint32_t id : in.inputs())
      grads.push_back({m.f32(id), m.elements(id)});
    *m.f32(in.outputs(0)) = float(kernels::weightedSumOfSquares(grads, replicated, replicas));
    return Status::ok();
  }

  static void add(Table &t) {
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
    addRingAttentionKernels(t);
    addMoEAndLossKernels(t);
    addMoEPermuteKernels(t);
    addLossKernels(t);
    addOptimizerKernels(t);
    ParallelKernels::add(t);
    addCollectiveKernels(t);
    return t;
  }();
  return table;
}

/// The GEMM dimensions of a linear op (the Gemm family) must fit OpenBLAS's
/// 32-bit ints (a larger one would be truncated, not refused, by cblas_sgemm).
Status checkBlasDims(const Instruction &instr) {
  const plan::OpSignature *op = plan::findOp(instr.op());
  if (!op || op->family != plan::OpFamily::Gemm)
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
  for (const plan::Program &program : plan.programs())
    for (const plan::Instruction &instr : program.instructions())
      if (Status s = checkBlasDims(instr); !s)
        return Status::error("program '" + program.name() + "': op '" + instr.op() + "': " +
                             s.message());
  if (Status s = plan::checkInstructions(plan); !s) // plans built in memory
    return s;
  for (const plan::Program &program : plan.programs()) {
    auto resolved = plan::resolveKernels(program, kernelTable(), "CPU");
    if (!resolved)
      return resolved.status();
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
  // Before anything of this program reuses the activation memory that holds
  // the deferred gathers' inputs.
  if (Status s = runDeferred(); !s)
    return s;
  for (int i = 0; i < program->instructions_size(); ++i) {
    const plan::Instruction &instr = program->instructions(i);
    if (plan::isOp(instr, plan::Op::check_finite)) {
      float value = *memory_->f32(instr.inputs(0));
      if (!std::isfinite(value))
        return ProgramResult{true, "'" + plan_->buffers(instr.inputs(0)).name() + "' is " +
                                       std::to_string(value)};
      continue;
    }
    if (plan::Attrs(instr).i("deferred") == 1) {
      deferred_.push_back({&instr, name, i, memory_->slot()});
      continue;
    }
    if (Status s = runInstruction(instr, name, i); !s)
      return s;
    if (afterEach)
      afterEach(i);
  }
  return ProgramResult{};
}

Status CpuExecutor::runInstruction(const plan::Instruction &instr, const std::string &name,
                                   int i) {
  if (Status s = (*kernels_.at(name)[size_t(i)])(instr, plan::Attrs(instr), *memory_, context_);
      !s)
    return Status::error((context_.rank ? context_.rank->describe() + " " : std::string()) +
                         "program '" + name + "' instruction " + std::to_string(i) + " (" +
                         instr.op() + (instr.location().empty() ? "" : ", " + instr.location()) +
                         "): " + s.message());
  return Status::ok();
}

Status CpuExecutor::runDeferred() {
  const int64_t slot = memory_->slot();
  std::vector<Deferred> deferred;
  deferred.swap(deferred_);
  for (const Deferred &d : deferred) {
    memory_->setSlot(d.slot);
    Status s = runInstruction(*d.instruction, d.program, d.index);
    memory_->setSlot(slot);
    if (!s)
      return s;
  }
  return Status::ok();
}

} // namespace mt::cpu
