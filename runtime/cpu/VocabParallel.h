// CPU kernels of the vocab-parallel embedding and cross-entropy: each rank of
// the tensor-parallel axis holds rows [vocabStart, vocabStart + localVocab)
// of the table / columns of the logits. The cross-entropy reduces over the
// axis through a callback, so the full logits are never gathered.
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_VOCABPARALLEL_H
#define MT_RUNTIME_CPU_VOCABPARALLEL_H

#include <cstdint>
#include <functional>

namespace mt::cpu {

/// Element-wise reduction of `count` floats over the ranks of the axis, in
/// place: `max` selects maximum, else sum. Identical results on all ranks.
using AxisReduce = std::function<void(float *data, int64_t count, bool max)>;

/// y[t] = table[ids[t] - vocabStart] when the id is in this rank's rows, else 0.
void embeddingForwardShard(const int32_t *ids, const float *table, float *y,
                           int64_t tokens, int64_t hidden, int64_t vocabStart,
                           int64_t localVocab);
/// dtable[ids[t] - vocabStart] += dy[t] for ids in this rank's rows.
void embeddingBackwardShard(const int32_t *ids, const float *dy, float *dtable,
                            int64_t tokens, int64_t hidden, int64_t vocabStart,
                            int64_t localVocab);

/// The masked mean cross-entropy of crossEntropyForward (Loss.h) over
/// logits split by columns: local logits [tokens, localVocab]. Columns whose
/// global index is >= validVocab (vocabulary padding) take no part; their
/// gradient is 0.
float crossEntropyForwardShard(const float *logits, const int32_t *labels,
                               const float *mask, int64_t tokens, int64_t localVocab,
                               int64_t vocabStart, int64_t validVocab,
                               const AxisReduce &reduce);
void crossEntropyBackwardShard(const float *logits, const int32_t *labels,
                               const float *mask, float dloss, float *dlogits,
                               int64_t tokens, int64_t localVocab, int64_t vocabStart,
                               int64_t validVocab, const AxisReduce &reduce);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_VOCABPARALLEL_H
