// CPU kernels of the vocab-parallel embedding and cross-entropy: each rank of
// the tensor-parallel axis holds rows [vocabStart, vocabStart + localVocab)
// of the table / columns of the logits. The kernels are local: the plan's
// all_reduce instructions between them combine the ranks (Megatron-Core's
// tensor_parallel/cross_entropy.py in steps), so the full logits are never
// gathered. Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_VOCABPARALLEL_H
#define MT_RUNTIME_CPU_VOCABPARALLEL_H

#include "runtime/kernels/VocabParallel.h"

#include <cstdint>

namespace mt::cpu {

/// y[t] = table[ids[t] - vocabStart] when the id is in this rank's rows, else 0.
void embeddingForwardShard(const int32_t *ids, const float *table, float *y,
                           int64_t tokens, int64_t hidden, int64_t vocabStart,
                           int64_t localVocab);
/// dtable[ids[t] - vocabStart] += dy[t] for ids in this rank's rows.
void embeddingBackwardShard(const int32_t *ids, const float *dy, float *dtable,
                            int64_t tokens, int64_t hidden, int64_t vocabStart,
                            int64_t localVocab);

/// This rank's slice of the logits (runtime/kernels/VocabParallel.h).
using VocabShard = kernels::VocabSlice;
using kernels::validColumns;

/// rowMax[t] = max over the slice's columns of logits[t] (-inf when none):
/// Megatron's calculate_logits_max, before its all-reduce(max).
void vocabParallelLogitsMax(const float *logits, float *rowMax, const VocabShard &s);

/// With rowMax the full row's maximum: predicted[t] = logits[t, label] when
/// this slice holds the label, else 0; sumExp[t] = Σ over the slice's
/// columns of exp(logits[t] - rowMax[t]) (in fp64). Both before their
/// all-reduce(sum): Megatron's calculate_predicted_logits.
void vocabParallelPredictedLogits(const float *logits, const float *rowMax,
                                  const int32_t *labels, float *predicted, float *sumExp,
                                  const VocabShard &s);

/// Σ mask · (log(sumExp) + rowMax - predicted) / Σ mask over `tokens`
/// (fp64; 0 when Σ mask is 0) from the reduced rows: the mean
/// cross-entropy of crossEntropyForward (Loss.h).
float crossEntropyLoss(const float *rowMax, const float *predicted, const float *sumExp,
                       const float *mask, int64_t tokens);

/// dlogits[t, v] = dloss · mask[t] / Σmask · (exp(logits[t, v] - rowMax[t]) /
/// sumExp[t] - [vocabStart + v == label]) on the slice's columns, with the
/// reduced rowMax and sumExp: Megatron's calculate_gradients. Written, not
/// added: 0 on masked rows and padding columns. `dlogits` may be `logits`
/// (the plan computes the gradient in the logits' buffer).
void vocabParallelCrossEntropyBackward(const float *logits, const int32_t *labels,
                                       const float *mask, const float *rowMax,
                                       const float *sumExp, float dloss, float *dlogits,
                                       const VocabShard &s);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_VOCABPARALLEL_H
