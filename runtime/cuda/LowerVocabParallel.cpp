// The local steps of the vocab-parallel cross-entropy on the GPU; the plan's
// all_reduce instructions between them are lowered in LowerCollectives.cpp.
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/VocabParallel.h"
#include "runtime/kernels/VocabParallel.h"

namespace mt::cuda {
namespace {

using plan::Attrs;

/// This rank's slice of the logits: its coordinate on `axis` times the
/// local width; columns at or past valid_vocab are padding.
VocabSlice sliceOf(Lowerer &L, const Attrs &a) {
  const exec::RankContext *rank = L.resources().rank;
  const std::string axis = a.s("axis");
  return kernels::vocabSliceOf(a, rank ? rank->coordinate(axis) : 0,
                               rank ? rank->axisSize(axis) : 1);
}

void logitsMax(Lowerer &L, const Attrs &a) {
  const bf16 *logits = L.bfIn(0);
  float *rowMax = L.f32Out(0);
  const VocabSlice s = sliceOf(L, a);
  L.emit([=](cudaStream_t st) { return vocabParallelLogitsMax(logits, rowMax, s, st); });
}

void predictedLogits(Lowerer &L, const Attrs &a) {
  const bf16 *logits = L.bfIn(0);
  const float *rowMax = L.f32In(1);
  const int32_t *labels = L.i32In(2);
  float *predicted = L.f32Out(0), *sumExp = L.f32Out(1);
  const VocabSlice s = sliceOf(L, a);
  L.emit([=](cudaStream_t st) {
    return vocabParallelPredictedLogits(logits, rowMax, labels, predicted, sumExp, s, st);
  });
}

void loss(Lowerer &L, const Attrs &a) {
  const float *rowMax = L.f32In(0), *predicted = L.f32In(1), *sumExp = L.f32In(2),
              *mask = L.f32In(3);
  float *out = L.f32Out(0);
  const int64_t tokens = a.i("tokens");
  L.emit([=](cudaStream_t st) {
    return crossEntropyLoss(rowMax, predicted, sumExp, mask, out, tokens, st);
  });
}

void grad(Lowerer &L, const Attrs &a) {
  const bf16 *logits = L.bfIn(0);
  const int32_t *labels = L.i32In(1);
  const float *mask = L.f32In(2), *rowMax = L.f32In(3), *sumExp = L.f32In(4),
              *dloss = L.f32In(5);
  bf16 *dlogits = L.bfOut(0);
  auto total = L.resources().allocate(sizeof(float));
  if (!total)
    return L.fail(total.message());
  float *maskTotal = static_cast<float *>(*total);
  const VocabSlice s = sliceOf(L, a);
  L.emit([=](cudaStream_t st) {
    return vocabParallelCrossEntropyBackward(logits, labels, mask, rowMax, sumExp, dloss,
                                             dlogits, maskTotal, s, st);
  });
}

} // namespace

void addVocabParallelLowerings(LoweringTable &t) {
  using plan::Op;
  t[Op::vocab_parallel_logits_max] = logitsMax;
  t[Op::vocab_parallel_predicted_logits] = predictedLogits;
  t[Op::cross_entropy_loss] = loss;
  t[Op::vocab_parallel_cross_entropy_grad] = grad;
}

} // namespace mt::cuda
