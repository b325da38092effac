// The CUDA kernels of the attention instructions: attention and its
// gradient (the mtc kernels or cuDNN, AttentionBackend), with context
// parallelism's keys gathered over cp (cp_comm_type all_gather); and ring
// attention's (p2p): one block of this rank's queries against one cp rank's
// keys (the mtc kernels with a context-parallel mask) and the log-sum-exp
// merge of two blocks (runtime/cuda/RingAttention.h). Packed documents
// (position ids) under cp: the same kernels mask each query to its
// document's keys by their places in the whole sequence.
#include "runtime/cuda/Attention.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/RingAttention.h"

#include <algorithm>
#include <string>
#include <tuple>

namespace mt::cuda {

const int32_t *positionIds(Lowerer &L, int i) {
  return L.instruction().inputs_size() > i ? L.i32In(i) : nullptr;
}

std::pair<int64_t, int64_t> contextParallelOf(Lowerer &L, const plan::Attrs &a) {
  const std::string axis = a.s("context_parallel_axis");
  const exec::RankContext *rank = L.resources().rank;
  if (axis.empty() || !rank)
    return {0, 1};
  return {rank->coordinate(axis), rank->axisSize(axis)};
}

namespace {

using plan::Attrs;

/// An attention instruction's shape, with the rank's place on its
/// context_parallel_axis; records why when the kernels cannot take it.
AttentionShape attentionShape(Lowerer &L, const Attrs &a) {
  AttentionShape shape{a.i("batch"), a.i("seq"),      a.i("heads"),
                       a.i("kv_heads"), a.i("head_dim"), float(a.f("scale"))};
  std::tie(shape.cpRank, shape.cpSize) = contextParallelOf(L, a);
  if (shape.headDim != 64 && shape.headDim != 128)
    L.fail("head_dim " + std::to_string(shape.headDim) +
           ": the CUDA attention kernels take 64 or 128");
  if (shape.kvHeads < 1 || shape.heads % shape.kvHeads != 0)
    L.fail("heads (" + std::to_string(shape.heads) + ") must be a multiple of kv_heads (" +
           std::to_string(shape.kvHeads) + ")");
  return shape;
}

/// attention's shape: its keys are the rank's own, or under cp the gather
/// of every cp rank's (kv_seq = seq x cp).
AttentionShape gatheredShape(Lowerer &L, const Attrs &a) {
  AttentionShape shape = attentionShape(L, a);
  if (a.i("kv_seq") != shape.kvSeq())
    L.fail("kv_seq (" + std::to_string(a.i("kv_seq")) + ") is not seq (" +
           std::to_string(shape.seq) + ") x the " + std::to_string(shape.cpSize) +
           " ranks of context_parallel_axis '" + a.s("context_parallel_axis") + "'");
  return shape;
}

/// A ring-attention block's shape: keys of the cp rank `step` places back.
/// Step 0 (the rank's own keys) without documents is plain causal
/// attention: places rise along a slice, so key j's is at most query i's
/// exactly when j <= i. With documents it keeps the cp shape (keys of the
/// rank itself): a document's start is a place in the whole sequence, not
/// an index into the slice's two chunks.
AttentionShape blockShape(Lowerer &L, const Attrs &a) {
  AttentionShape shape = attentionShape(L, a);
  const int64_t step = a.i("step");
  if (step < 0 || step >= shape.cpSize)
    L.fail("step (" + std::to_string(step) + ") is not in [0, " +
           std::to_string(shape.cpSize) + "), the ranks of context_parallel_axis '" +
           a.s("context_parallel_axis") + "'");
  if (step == 0 && !a.i("position_ids"))
    shape.cpRank = 0, shape.cpSize = 1;
  else
    shape.kvSource = (shape.cpRank - step + shape.cpSize) % shape.cpSize;
  return shape;
}

/// The backend of an attention instruction (Resources::attention resolved
/// for its shape; cuDNN's plans built here, outside graph capture) and the
/// workspace of its pass: the instruction's planned one where it holds the
/// pass's need, else null for the shared Resources::workspace, sized to it.
AttentionOptions attentionOptions(Lowerer &L, const AttentionShape &shape, bool documents,
                                  bool backward, void *&planned) {
  AttentionOptions options = L.resources().attention;
  auto plan = planAttention(shape, documents, options);
  if (!plan) {
    L.fail(plan.message());
    return {};
  }
  // At least a byte: cuDNN's variant pack gets a workspace address even
  // where its plan needs none.
  planned = L.workspaceFor(std::max<size_t>(1, backward ? plan->backwardBytes
                                                          : plan->forwardBytes));
  options.backend = plan->backend;
  return options;
}

void attention(Lowerer &L, const Attrs &a) {
  const bf16 *q = L.bfIn(0), *k = L.bfIn(1), *v = L.bfIn(2);
  bf16 *out = L.bfOut(0);
  float *lse = L.f32Out(1);
  const int32_t *pos = positionIds(L, 3);
  AttentionShape shape = gatheredShape(L, a);
  void *planned = nullptr;
  const AttentionOptions options = attentionOptions(L, shape, pos != nullptr, false, planned);
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t s) {
    return attentionForward(q, k, v, out, lse, shape, s, pos, options,
                            planned ? planned : r->workspace);
  });
}

void attentionGrad(Lowerer &L, const Attrs &a) {
  const bf16 *q = L.bfIn(0), *k = L.bfIn(1), *v = L.bfIn(2), *out = L.bfIn(3),
             *dout = L.bfIn(4);
  const float *lse = L.f32In(5);
  const int32_t *pos = positionIds(L, 6);
  bf16 *dq = L.bfOut(0), *dk = L.bfOut(1), *dv = L.bfOut(2);
  AttentionShape shape = gatheredShape(L, a);
  void *planned = nullptr;
  const AttentionOptions options = attentionOptions(L, shape, pos != nullptr, true, planned);
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t s) {
    return attentionBackward(q, k, v, out, lse, dout, dq, dk, dv,
                             planned ? planned : r->workspace, shape, s, pos, options);
  });
}

void attentionBlock(Lowerer &L, const Attrs &a) {
  const bf16 *q = L.bfIn(0), *k = L.bfIn(1), *v = L.bfIn(2);
  bf16 *out = L.bfOut(0);
  float *lse = L.f32Out(1);
  const int32_t *pos = positionIds(L, 3);
  const AttentionShape shape = blockShape(L, a);
  L.emit([=](cudaStream_t s) {
    return mtcAttentionForward(q, k, v, out, lse, shape, s, pos);
  });
}

/// The block's gradients with its lse's: the ring's steps sum a query's
/// gradient into one buffer, so each is written or added as the plan asks.
void attentionBlockGrad(Lowerer &L, const Attrs &a) {
  const bf16 *q = L.bfIn(0), *k = L.bfIn(1), *v = L.bfIn(2), *out = L.bfIn(3),
             *dout = L.bfIn(5);
  const float *lse = L.f32In(4), *dlse = L.f32In(6);
  const int32_t *pos = positionIds(L, 7);
  AttentionGradExtras extras{dlse};
  bf16 *dq = L.bfOutOrSum(0, extras.addDq), *dk = L.bfOutOrSum(1, extras.addDk),
       *dv = L.bfOutOrSum(2, extras.addDv);
  const AttentionShape shape = blockShape(L, a);
  void *planned = L.workspaceFor(attentionBackwardWorkspaceBytes(shape));
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t s) {
    return mtcAttentionBackward(q, k, v, out, lse, dout, dq, dk, dv,
                                planned ? planned : r->workspace, shape, s, pos, extras);
  });
}

MergeShape mergeShape(const Attrs &a) {
  return {a.i("batch"), a.i("seq"), a.i("heads"), a.i("head_dim")};
}

void attentionMerge(Lowerer &L, const Attrs &a) {
  const bf16 *outA = L.bfIn(0), *outB = L.bfIn(2);
  const float *lseA = L.f32In(1), *lseB = L.f32In(3);
  bf16 *out = L.bfOut(0);
  float *lse = L.f32Out(1);
  const MergeShape shape = mergeShape(a);
  L.emit([=](cudaStream_t s) {
    return attentionMergeForward(outA, lseA, outB, lseB, out, lse, shape, s);
  });
}

void attentionMergeGrad(Lowerer &L, const Attrs &a) {
  const bf16 *outA = L.bfIn(0), *outB = L.bfIn(2), *out = L.bfIn(4), *dout = L.bfIn(6);
  const float *lseA = L.f32In(1), *lseB = L.f32In(3), *lse = L.f32In(5), *dlse = L.f32In(7);
  MergeGradAdds adds{.dlseA = true, .dlseB = true}; // fp32 outputs: added into
  bf16 *doutA = L.bfOutOrSum(0, adds.doutA), *doutB = L.bfOutOrSum(2, adds.doutB);
  float *dlseA = L.f32Sum(1), *dlseB = L.f32Sum(3);
  const MergeShape shape = mergeShape(a);
  L.emit([=](cudaStream_t s) {
    return attentionMergeBackward(outA, lseA, outB, lseB, out, lse, dout, dlse, doutA, dlseA,
                                  doutB, dlseB, shape, adds, s);
  });
}

} // namespace

void addAttentionLowerings(LoweringTable &t) {
  using plan::Op;
  t[Op::attention] = attention;
  t[Op::attention_grad] = attentionGrad;
  t[Op::attention_block] = attentionBlock;
  t[Op::attention_block_grad] = attentionBlockGrad;
  t[Op::attention_merge] = attentionMerge;
  t[Op::attention_merge_grad] = attentionMergeGrad;
}

} // namespace mt::cuda
