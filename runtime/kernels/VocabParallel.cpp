// The vocab-parallel slice of a rank, from the instruction's attributes.
#include "runtime/kernels/VocabParallel.h"

#include "runtime/plan/OpRegistry.h"

#include <algorithm>

namespace mt::kernels {

int64_t validColumns(int64_t localVocab, int64_t vocabStart, int64_t validVocab) {
  return std::clamp<int64_t>(validVocab - vocabStart, 0, localVocab);
}

VocabSlice vocabSliceOf(const plan::Attrs &a, int64_t coordinate, int64_t axisSize) {
  const int64_t local = a.i("vocab"), start = coordinate * local;
  return {a.i("tokens"), local, start,
          validColumns(local, start, a.i("valid_vocab", local * axisSize))};
}

} // namespace mt::kernels
