// The CUDA kernel of each dense, norm, rotary and loss instruction:
// operand views resolved once, launched with the attributes the plan gives
// (runtime/plan/OpTable.inc declares them; the plan loader has checked every
// operand's size).
#include "runtime/cuda/Add.h"
#include "runtime/cuda/AdamW.h"
#include "runtime/cuda/Check.h"
#include "runtime/cuda/CrossEntropy.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/Norm.h"
#include "runtime/cuda/TokenScaling.h"
#include "runtime/kernels/ContextParallel.h"
#include "runtime/kernels/Qkv.h"
#include "runtime/kernels/Rotary.h"

#include <cmath>
#include <vector>

namespace mt::cuda {
namespace {

using plan::Attrs;
void linear(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0), *w = L.bfIn(1);
  const bf16 *bias = a.i("has_bias") ? L.bfIn(2) : nullptr;
  bf16 *y = L.bfOut(0);
  int64_t t = a.i("tokens"), in = a.i("in"), out = a.i("out");
  GemmRunner *g = L.resources().gemm.get();
  L.emit([=](cudaStream_t s) { return g->linearForward(x, w, bias, y, t, in, out, s); });
}

void linearGradInput(Lowerer &L, const Attrs &a) {
  const bf16 *dy = L.bfIn(0), *w = L.bfIn(1);
  bool add = false;
  bf16 *dx = L.bfOutOrSum(0, add);
  int64_t t = a.i("tokens"), in = a.i("in"), out = a.i("out");
  GemmRunner *g = L.resources().gemm.get();
  L.emit([=](cudaStream_t s) {
    return g->linearBackwardInput(dy, w, dx, t, in, out, s, add);
  });
}

void linearGradWeight(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0), *dy = L.bfIn(1);
  float *dw = nullptr;
  std::function<bool()> adds = L.f32OutOrSum(0, dw);
  int64_t t = a.i("tokens"), in = a.i("in"), out = a.i("out");
  GemmRunner *g = L.resources().gemm.get();
  L.emit([=](cudaStream_t s) {
    return g->linearBackwardWeight(x, dy, dw, t, in, out, s, adds());
  });
}

void biasAddOp(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0), *b = L.bfIn(1);
  bf16 *y = L.bfOut(0);
  int64_t rows = a.i("rows"), dim = a.i("dim");
  L.emit([=](cudaStream_t s) { return biasAdd(x, b, y, rows, dim, s); });
}

void biasGradOp(Lowerer &L, const Attrs &a) {
  const bf16 *dy = L.bfIn(0);
  float *db = L.f32Sum(0);
  int64_t t = a.i("tokens"), out = a.i("out");
  L.emit([=](cudaStream_t s) { return biasGrad(dy, db, t, out, s); });
}

void swiglu(Lowerer &L, const Attrs &a) {
  const bf16 *gate = L.bfIn(0), *up = L.bfIn(1);
  bf16 *y = L.bfOut(0);
  int64_t n = a.i("n");
  L.emit([=](cudaStream_t s) { return swigluForward(gate, up, y, n, s); });
}

void swigluGrad(Lowerer &L, const Attrs &a) {
  const bf16 *gate = L.bfIn(0), *up = L.bfIn(1), *dy = L.bfIn(2);
  bf16 *dgate = L.bfOut(0), *dup = L.bfOut(1);
  int64_t n = a.i("n");
  L.emit([=](cudaStream_t s) { return swigluBackward(gate, up, dy, dgate, dup, n, s); });
}

void chunkedSwiglu(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0);
  bf16 *y = L.bfOut(0);
  int64_t rows = a.i("rows"), dim = a.i("dim");
  L.emit([=](cudaStream_t s) { return chunkedSwigluForward(x, y, rows, dim, s); });
}

/// chunked_swiglu_grad, and chunked_swiglu_recompute_grad's second output.
void chunkedSwigluGrad(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0), *dy = L.bfIn(1);
  bf16 *dx = L.bfOut(0);
  bf16 *y = L.instruction().outputs_size() > 1 ? L.bfOut(1) : nullptr;
  int64_t rows = a.i("rows"), dim = a.i("dim");
  L.emit([=](cudaStream_t s) { return chunkedSwigluBackward(x, dy, dx, rows, dim, s, y); });
}

void splitQkvOp(Lowerer &L, const Attrs &a) {
  Expected<kernels::QkvShape> shape = kernels::qkvShapeOf("split_qkv", a);
  if (!shape)
    return L.fail(shape.message());
  const bf16 *x = L.bfIn(0);
  bf16 *q = L.bfOut(0), *k = L.bfOut(1), *v = L.bfOut(2);
  const kernels::QkvShape d = *shape;
  L.emit([=](cudaStream_t s) { return splitQkv(x, q, k, v, d.rows, d.qDim, d.kvDim, s); });
}

void concatQkvOp(Lowerer &L, const Attrs &a) {
  Expected<kernels::QkvShape> shape = kernels::qkvShapeOf("concat_qkv", a);
  if (!shape)
    return L.fail(shape.message());
  const bf16 *dq = L.bfIn(0), *dk = L.bfIn(1), *dv = L.bfIn(2);
  bf16 *x = L.bfOut(0);
  const kernels::QkvShape d = *shape;
  L.emit([=](cudaStream_t s) { return concatQkv(dq, dk, dv, x, d.rows, d.qDim, d.kvDim, s); });
}

/// bf16 activations, or fp32 scalars (the loss plus the MoE aux losses).
void addOp(Lowerer &L, const Attrs &a) {
  int64_t n = a.i("n");
  if (L.isBf16(L.instruction().outputs(0))) {
    const bf16 *x = L.bfIn(0), *y = L.bfIn(1);
    bf16 *out = L.bfOut(0);
    L.emit([=](cudaStream_t s) { return add(x, y, out, n, s); });
  } else {
    const float *x = L.f32In(0), *y = L.f32In(1);
    float *out = L.f32Out(0);
    L.emit([=](cudaStream_t s) { return add(x, y, out, n, s); });
  }
}

void accumulateOp(Lowerer &L, const Attrs &a) {
  bool isBf16 = false;
  void *out = L.sumOut(0, isBf16);
  int64_t n = a.i("n");
  if (isBf16) {
    const bf16 *x = L.bfIn(0);
    L.emit([=](cudaStream_t s) { return accumulate(x, static_cast<bf16 *>(out), n, s); });
  } else {
    const float *x = L.f32In(0);
    L.emit([=](cudaStream_t s) { return accumulate(x, static_cast<float *>(out), n, s); });
  }
}

/// calculate_per_token_loss: a micro-batch's token count, and values scaled
/// by a scalar on the device (the loss by the count, the gradients by the
/// step's count).
void numTokensOp(Lowerer &L, const Attrs &a) {
  const float *mask = L.f32In(0);
  float *count = L.f32Out(0);
  const int64_t n = a.i("n");
  L.emit([=](cudaStream_t s) { return numTokens(mask, count, n, s); });
}

void scaleByOp(Lowerer &L, const Attrs &a) {
  const float *x = L.f32In(0), *factor = L.f32In(1);
  float *y = L.f32Out(0);
  const int64_t n = a.i("n");
  const bool inverse = a.i("inverse") == 1;
  L.emit([=](cudaStream_t s) { return scaleBy(x, factor, inverse, y, n, s); });
}

/// rmsnorm, and mt.add_rmsnorm: the norm kernel's fused residual add (one
/// read of each row, both the sum and the normalized row written).
void rmsnorm(Lowerer &L, const Attrs &a) {
  const bool fused = plan::isOp(L.instruction(), plan::Op::add_rmsnorm);
  const bf16 *x = L.bfIn(0), *residual = fused ? L.bfIn(1) : nullptr;
  const bf16 *w = L.bfIn(fused ? 2 : 1);
  bf16 *sum = fused ? L.bfOut(0) : nullptr, *y = L.bfOut(fused ? 1 : 0);
  int64_t rows = a.i("rows"), dim = a.i("dim");
  float eps = float(a.f("eps"));
  L.emit([=](cudaStream_t s) {
    return rmsnormForward(x, residual, sum, w, y, rows, dim, eps, s);
  });
}

/// rmsnorm_grad, and mt.add_rmsnorm_grad: the norm backward adds its
/// dresidual (input 3) in fp32 before its one rounding of dx.
void rmsnormGrad(Lowerer &L, const Attrs &a) {
  const bool fused = plan::isOp(L.instruction(), plan::Op::add_rmsnorm_grad);
  const bf16 *x = L.bfIn(0), *w = L.bfIn(1), *dy = L.bfIn(2);
  const bf16 *dresidual = fused ? L.bfIn(3) : nullptr;
  bf16 *dx = L.bfOut(0);
  float *dw = L.f32Sum(1);
  int64_t rows = a.i("rows"), dim = a.i("dim");
  float eps = float(a.f("eps"));
  L.needWorkspace(rmsnormBackwardWorkspaceBytes(rows, dim));
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t s) {
    return rmsnormBackward(x, w, dy, dresidual, dx, dw, r->workspace, rows, dim, eps, s);
  });
}

/// The device cos/sin table of a rotary instruction for positions below
/// maxSeq, shared by equal ones.
const RotaryTable *rotaryTable(Lowerer &L, const Attrs &a, int64_t maxSeq) {
  kernels::RotaryParams p = kernels::rotaryParamsOf(a);
  auto key = std::make_tuple(p.theta, p.scalingFactor, p.lowFreqFactor, p.highFreqFactor,
                             p.originalMaxPosition, maxSeq, a.i("head_dim"));
  auto &tables = L.resources().rotaryTables;
  if (auto it = tables.find(key); it != tables.end())
    return &it->second;
  auto table = RotaryTable::create(p, maxSeq, a.i("head_dim"));
  if (!table) {
    L.fail(table.message());
    return nullptr;
  }
  return &tables.emplace(key, std::move(*table)).first->second;
}

/// The places in the whole sequence of a context-parallel [batch, seq]
/// slice (runtime/kernels/ContextParallel.h) as device position ids, made
/// once per shape and rank (cpu: contextParallelPositions).
const int32_t *contextParallelPlaces(Lowerer &L, int64_t batch, int64_t seq, int64_t cpRank,
                                     int64_t cpSize) {
  auto &made = L.resources().contextParallelPlaces;
  const auto key = std::make_tuple(batch, seq, cpRank, cpSize);
  if (auto it = made.find(key); it != made.end())
    return it->second;
  std::vector<int32_t> places(size_t(batch * seq));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s)
      places[size_t(b * seq + s)] =
          int32_t(kernels::contextParallelPosition(s, seq, cpRank, cpSize));
  auto device = L.resources().allocate(places.size() * sizeof(int32_t));
  if (!device) {
    L.fail(device.message());
    return nullptr;
  }
  if (cudaError_t e = cudaMemcpy(*device, places.data(), places.size() * sizeof(int32_t),
                                 cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    L.fail(std::string("copying the context-parallel positions: ") + cudaGetErrorString(e));
    return nullptr;
  }
  return made[key] = static_cast<const int32_t *>(*device);
}

/// Rotary embeddings; under context parallelism at each token's place in
/// the whole sequence; with packed documents at its position id, which a
/// cp slice's tokens take up to the whole row's length (the kernels clamp
/// ids into the table, so it covers the row: kernels::rotaryTableRows).
template <bool kBackward> void rotary(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0);
  const int32_t *pos = positionIds(L, 1);
  bf16 *y = L.bfOut(0);
  int64_t batch = a.i("batch"), seq = a.i("seq"), heads = a.i("heads");
  const auto [cpRank, cpSize] = contextParallelOf(L, a);
  if (cpSize > 1) {
    if (pos)
      return L.fail("rotary: position ids (documents packed in a row) under context "
                    "parallelism are not supported");
    if (!(pos = contextParallelPlaces(L, batch, seq, cpRank, cpSize)))
      return;
  }
  const RotaryTable *table =
      rotaryTable(L, a, kernels::rotaryTableRows(seq, cpSize, L.plan().training().seq()));
  if (!table)
    return;
  L.emit([=](cudaStream_t s) {
    return kBackward ? rotaryBackward(x, y, batch, seq, heads, *table, s, pos)
                     : rotaryForward(x, y, batch, seq, heads, *table, s, pos);
  });
}

/// split_qkv_rotary and rotary_concat_qkv: q and k rotated straight out of
/// (or into) their columns of the packed [q | k | v] rows, v copied.
template <bool kBackward> void rotaryQkvOp(Lowerer &L, const Attrs &a) {
  Expected<kernels::RotaryQkvShape> shape = kernels::rotaryQkvShapeOf(L.instruction().op(), a);
  if (!shape)
    return L.fail(shape.message());
  const kernels::RotaryQkvShape r = *shape;
  const kernels::QkvShape p = r.packed();
  const int64_t dim = p.qDim + 2 * p.kvDim;
  const RowSpan packedQ{dim, 0}, packedK{dim, p.qDim}, packedV{dim, p.qDim + p.kvDim};
  const RotaryTable *table =
      rotaryTable(L, a, kernels::rotaryTableRows(r.seq, 1, L.plan().training().seq()));
  if (!table)
    return;
  QkvRotaryParts parts{};
  const int32_t *pos = nullptr;
  if constexpr (kBackward) {
    bf16 *dx = L.bfOut(0);
    parts = {{L.bfIn(0), L.bfIn(1), L.bfIn(2)}, {dx, dx, dx}, {}, {packedQ, packedK, packedV}};
    pos = positionIds(L, 3);
  } else {
    const bf16 *x = L.bfIn(0);
    parts = {{x, x, x}, {L.bfOut(0), L.bfOut(1), L.bfOut(2)}, {packedQ, packedK, packedV}, {}};
    pos = positionIds(L, 1);
  }
  L.emit([=](cudaStream_t s) {
    return rotaryQkv(parts, r.batch, r.seq, r.heads, r.kvHeads, *table, kBackward, s, pos);
  });
}

/// The first row of this rank's slice of a vocab-parallel table (0 when
/// the table is whole): its coordinate on the axis times the local rows.
int64_t vocabStart(Lowerer &L, const Attrs &a) {
  const std::string axis = a.s("vocab_parallel_axis");
  const exec::RankContext *rank = L.resources().rank;
  return axis.empty() || !rank ? 0 : rank->coordinate(axis) * a.i("vocab");
}

void embedding(Lowerer &L, const Attrs &a) {
  const int32_t *ids = L.i32In(0);
  const bf16 *table = L.bfIn(1);
  bf16 *y = L.bfOut(0);
  int64_t t = a.i("tokens"), h = a.i("hidden"), v = a.i("vocab"), start = vocabStart(L, a);
  L.emit([=](cudaStream_t s) { return embeddingForward(ids, table, y, t, h, s, start, v); });
}

void embeddingGrad(Lowerer &L, const Attrs &a) {
  const int32_t *ids = L.i32In(0);
  const bf16 *dy = L.bfIn(1);
  float *dtable = L.f32Sum(0);
  int64_t t = a.i("tokens"), v = a.i("vocab"), h = a.i("hidden"), start = vocabStart(L, a);
  L.needWorkspace(embeddingBackwardWorkspaceBytes(v));
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t s) {
    return embeddingBackward(ids, dy, dtable, r->workspace, t, v, h, s, start);
  });
}

void crossEntropy(Lowerer &L, const Attrs &a) {
  const bf16 *logits = L.bfIn(0);
  const int32_t *labels = L.i32In(1);
  const float *mask = L.f32In(2);
  float *loss = L.f32Out(0);
  int64_t t = a.i("tokens"), v = a.i("vocab");
  auto stats = L.resources().allocate(size_t(t + 1) * sizeof(float));
  if (!stats)
    return L.fail(stats.message());
  float *lse = static_cast<float *>(*stats);
  L.resources().crossEntropyStats[logits] = lse;
  L.emit([=](cudaStream_t s) {
    return crossEntropyForward(logits, labels, mask, lse, loss, lse + t, t, v, s);
  });
}

void crossEntropyGrad(Lowerer &L, const Attrs &a) {
  const bf16 *logits = L.bfIn(0);
  const int32_t *labels = L.i32In(1);
  const float *mask = L.f32In(2), *seed = L.f32In(3);
  bf16 *dlogits = L.bfOut(0);
  int64_t t = a.i("tokens"), v = a.i("vocab");
  auto &stats = L.resources().crossEntropyStats;
  auto it = stats.find(logits);
  if (it == stats.end())
    return L.fail("no cross_entropy of these logits runs before it");
  const float *lse = it->second;
  L.emit([=](cudaStream_t s) {
    return crossEntropyBackward(logits, labels, mask, lse, lse + t, seed, dlogits, t, v, s);
  });
}

} // namespace

void addDenseLowerings(LoweringTable &t) {
  using plan::Op;
  t[Op::linear] = linear;
  t[Op::linear_grad_input] = linearGradInput;
  t[Op::linear_grad_weight] = linearGradWeight;
  t[Op::bias_add] = biasAddOp;
  t[Op::bias_grad] = biasGradOp;
  t[Op::swiglu] = swiglu;
  t[Op::swiglu_grad] = swigluGrad;
  t[Op::chunked_swiglu] = chunkedSwiglu;
  t[Op::chunked_swiglu_grad] = chunkedSwigluGrad;
  t[Op::chunked_swiglu_recompute_grad] = chunkedSwigluGrad;
  t[Op::split_qkv] = splitQkvOp;
  t[Op::concat_qkv] = concatQkvOp;
  t[Op::split_qkv_rotary] = rotaryQkvOp<false>;
  t[Op::rotary_concat_qkv] = rotaryQkvOp<true>;
  t[Op::add] = addOp;
  t[Op::accumulate] = accumulateOp;
  t[Op::num_tokens] = numTokensOp;
  t[Op::scale_by] = scaleByOp;
  t[Op::rmsnorm] = rmsnorm;
  t[Op::rmsnorm_grad] = rmsnormGrad;
  t[Op::add_rmsnorm] = rmsnorm;
  t[Op::add_rmsnorm_grad] = rmsnormGrad;
  t[Op::rotary] = rotary<false>;
  t[Op::rotary_grad] = rotary<true>;
  t[Op::embedding] = embedding;
  t[Op::embedding_grad] = embeddingGrad;
  t[Op::cross_entropy] = crossEntropy;
  t[Op::cross_entropy_grad] = crossEntropyGrad;
}

} // namespace mt::cuda
