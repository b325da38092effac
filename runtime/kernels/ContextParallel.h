// Context parallelism's load-balanced sequence layout, as both backends and
// the data loader place tokens: Megatron-Core's get_batch_on_this_cp_rank.
#ifndef MT_RUNTIME_KERNELS_CONTEXTPARALLEL_H
#define MT_RUNTIME_KERNELS_CONTEXTPARALLEL_H

#include <cstdint>

// The CUDA attention kernels mask by these places too (runtime/cuda/Attention.cu).
#ifdef __CUDACC__
#define MT_HOST_DEVICE __host__ __device__
#else
#define MT_HOST_DEVICE
#endif

namespace mt::kernels {

/// The place in the whole sequence of token `local` of the slice that the
/// rank at coordinate `rank` of `size` cp ranks holds. The sequence of
/// S = localSeq · size tokens is cut into 2·size chunks of localSeq / 2;
/// rank r holds chunks r and 2·size-1-r, in that order, so that every rank
/// has the same causal attention work (Megatron-Core,
/// megatron/core/utils.py, get_batch_on_this_cp_rank). `localSeq` is even.
MT_HOST_DEVICE inline int64_t contextParallelPosition(int64_t local, int64_t localSeq, int64_t rank,
                                       int64_t size) {
  const int64_t chunk = localSeq / 2;
  const int64_t index = local < chunk ? rank : 2 * size - 1 - rank;
  return index * chunk + local % chunk;
}

/// How many tokens of the slice of cp rank `rank` sit at places before
/// `place` of the whole sequence: the inverse of contextParallelPosition.
/// Places rise along a slice (chunk rank precedes chunk 2·size-1-rank), so
/// these are the slice's first rows: the ring attention kernels bound the
/// rows one block of queries or keys can see by it.
MT_HOST_DEVICE inline int64_t contextParallelRowsBefore(int64_t place, int64_t localSeq,
                                                        int64_t rank, int64_t size) {
  const int64_t chunk = localSeq / 2;
  const int64_t first = place - rank * chunk, second = place - (2 * size - 1 - rank) * chunk;
  return (first < 0 ? 0 : first > chunk ? chunk : first) +
         (second < 0 ? 0 : second > chunk ? chunk : second);
}

/// The place in the whole sequence of token `gathered` of the all-gather
/// over the cp ranks of their slices ([size · localSeq], rank-major).
MT_HOST_DEVICE inline int64_t contextParallelGatheredPosition(int64_t gathered, int64_t localSeq,
                                               int64_t size) {
  return contextParallelPosition(gathered % localSeq, localSeq, gathered / localSeq, size);
}

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_CONTEXTPARALLEL_H
