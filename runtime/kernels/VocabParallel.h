// The slice of the vocabulary that one rank of a vocab-parallel embedding or
// cross-entropy holds, decoded from the instruction the same way for both
// backends (Megatron-Core's VocabUtility: rank r of the axis holds columns
// [r·V, (r+1)·V) of the logits, rows of the embedding table).
#ifndef MT_RUNTIME_KERNELS_VOCABPARALLEL_H
#define MT_RUNTIME_KERNELS_VOCABPARALLEL_H

#include <cstdint>

namespace mt::plan {
class Attrs;
}

namespace mt::kernels {

/// This rank's slice of the logits, [tokens, localVocab], starting at the
/// global column vocabStart, of which the first `columns` are real
/// vocabulary (the rest is padding and takes no part).
struct VocabSlice {
  int64_t tokens, localVocab, vocabStart, columns;
};

/// The columns of the slice starting at `vocabStart` that lie below
/// `validVocab` (the vocabulary before padding), clamped to [0, localVocab].
int64_t validColumns(int64_t localVocab, int64_t vocabStart, int64_t validVocab);

/// The slice of a vocab_parallel_* instruction (attributes tokens, vocab:
/// the local width, valid_vocab: the real vocabulary, default all of it) on
/// the rank at `coordinate` of the `axisSize` ranks of its axis.
VocabSlice vocabSliceOf(const plan::Attrs &a, int64_t coordinate, int64_t axisSize);

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_VOCABPARALLEL_H
