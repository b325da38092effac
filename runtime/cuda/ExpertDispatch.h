// Expert parallelism's device work around the NCCL collectives of the
// token dispatchers (Megatron-Core's MoEAlltoAllTokenDispatcher and
// MoEAllGatherTokenDispatcher): the sums of the exchanged or gathered
// token counts, and the re-ordering of the received rows between
// rank-major and expert-major chunks. CPU references: the
// moe_exchange_counts and moe_gather_counts kernels of
// runtime/cpu/CpuExecutor.cpp and cpu::moeSortChunks
// (runtime/cpu/MoEPermute.h).
#ifndef MT_RUNTIME_CUDA_EXPERTDISPATCH_H
#define MT_RUNTIME_CUDA_EXPERTDISPATCH_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// The sums of moe_exchange_counts, on the device (i32 throughout):
/// `mine` [parts, groups] is this rank's rows per expert (rank p holds
/// experts [p·groups, (p+1)·groups)), `global` [parts, groups] the rows
/// rank p sends to each local expert of this rank. Writes
/// send[p] = Σ_g mine[p, g], recv[p] = Σ_g global[p, g] and
/// perLocalExpert[g] = Σ_p global[p, g] (Megatron-Core's input_splits,
/// output_splits and tokens_per_expert), and, when `splits` is not null,
/// splits [2·parts] = send then recv: one block the host copies at once.
Status moeCountSums(const int32_t *mine, const int32_t *global, int64_t parts, int64_t groups,
                    int32_t *send, int32_t *recv, int32_t *perLocalExpert, int32_t *splits,
                    cudaStream_t stream);

/// moe_gather_counts' sums, on the device (i32 throughout): `all`
/// [parts, experts] is every rank's rows per expert, as gathered; this
/// rank's experts are [first, first + groups). Writes
/// global[p, g] = all[p, first + g], offsets[p] = Σ_{e < first} all[p, e]
/// and perLocalExpert[g] = Σ_p global[p, g].
Status moeGatherCountSums(const int32_t *all, int64_t parts, int64_t experts, int64_t first,
                          int64_t groups, int32_t *global, int32_t *offsets,
                          int32_t *perLocalExpert, cudaStream_t stream);

/// moe_sort_chunks' operands: `rows` x `hidden` bf16 rows in parts x groups
/// chunks; `blocked`: the (p, g) side is parts blocks of rows / parts rows,
/// source p's chunks from the block's row offsets[p] (the allgather
/// dispatcher), else packed.
struct SortChunksShape {
  int64_t parts, groups, rows, hidden;
  bool inverse;
  bool blocked = false;
};

/// The most chunks (parts · groups) moeSortChunks takes: their offsets
/// (3 · chunks + 1 i32) are held in the 48 KiB of dynamic shared memory a
/// kernel gets without opting in.
inline constexpr int64_t kMaxSortChunks = 4000;

/// Workspace of moeSortChunks: the chunks' offsets (3 · chunks + 1 i32)
/// and a cursor per source (parts i32).
size_t moeSortChunksWorkspaceBytes(const SortChunksShape &shape);

/// `in` [rows, hidden] holds chunks in (p, g) order, chunk (p, g) of
/// counts[p·groups + g] rows (i32 on the device, read there: no host
/// sync); `out` gets them in (g, p) order, or with `inverse` from (g, p)
/// back to (p, g) (Megatron-Core's sort_chunks_by_idxs). Rows of `out`
/// past the chunks are zero. A copy of whole rows: deterministic and
/// bit-identical to cpu::moeSortChunks. Negative counts count as 0, and
/// source rows at or past `rows` are not read (their rows are zero): the
/// host checks the counts before the all-to-all. `offsets` [parts] (on
/// the device) with shape.blocked, else null; rows between the chunks of
/// a blocked `out` are zero too. `out` must not alias `in`.
Status moeSortChunks(const bf16 *in, const int32_t *counts, const int32_t *offsets, bf16 *out,
                     void *workspace, const SortChunksShape &shape, cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_EXPERTDISPATCH_H
