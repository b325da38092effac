// The slice of a micro-batch that one context-parallel rank reads, and its
// share of the micro-batch's loss.
#ifndef MT_RUNTIME_EXEC_CONTEXTPARALLELBATCH_H
#define MT_RUNTIME_EXEC_CONTEXTPARALLELBATCH_H

#include "runtime/io/Dataset.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <span>

namespace mt::exec {

/// Where a context-parallel rank stands: its coordinate on cp and cp's size.
struct ContextParallelRank {
  int64_t rank = 0, size = 1;
};

/// Reads the micro-batch `coord` of `layout` (rows of `seq` tokens) and
/// keeps, in `inputIds`, `labels` and `lossMask` ([rows, seq / cp.size]
/// each), the tokens of `cp`'s rank in the load-balanced layout
/// (runtime/kernels/ContextParallel.h: chunks r and 2·cp-1-r of 2·cp).
/// Returns the rank's share of the micro-batch's loss, n_r / N: its
/// unmasked tokens over the whole micro-batch's (0 when N is 0). Its
/// cross-entropy is the mean over its own n_r tokens; weighted by the share
/// and summed over cp it is the mean over all N, the single rank's
/// (Megatron-Core's loss_func sums the losses and the token counts over
/// the cp group). Errors: `seq` not divisible by 2 · cp.size, and the
/// dataset's (data with position ids is refused: packed documents are not
/// split over cp).
Expected<double> fillContextParallelBatch(const io::Dataset &dataset,
                                          const io::BatchLayout &layout,
                                          const io::BatchCoord &coord, int64_t seq,
                                          ContextParallelRank cp, std::span<int32_t> inputIds,
                                          std::span<int32_t> labels,
                                          std::span<float> lossMask);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_CONTEXTPARALLELBATCH_H
