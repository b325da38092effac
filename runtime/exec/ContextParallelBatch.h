// The slice of a micro-batch that one context-parallel rank reads.
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
/// keeps, in `inputIds`, `labels`, `lossMask` and, for packed documents
/// (neat_packing), `positionIds` ([rows, seq / cp.size] each; empty
/// without), the tokens of `cp`'s rank in the load-balanced layout
/// (runtime/kernels/ContextParallel.h: chunks r and 2·cp-1-r of 2·cp). The
/// plan weighs the rank's loss by its share of the micro-batch's loss
/// tokens (mt-partition-cp). Errors: `seq` not divisible by 2 · cp.size,
/// buffers of another size, position ids in the data but not asked for (or
/// the other way), and the dataset's.
Status fillContextParallelBatch(const io::Dataset &dataset, const io::BatchLayout &layout,
                                const io::BatchCoord &coord, int64_t seq, ContextParallelRank cp,
                                std::span<int32_t> inputIds, std::span<int32_t> labels,
                                std::span<float> lossMask, std::span<int32_t> positionIds);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_CONTEXTPARALLELBATCH_H
