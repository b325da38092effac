// Expert parallelism's device work around the NCCL all-to-all-v of the
// alltoall token dispatcher (Megatron-Core's MoEAlltoAllTokenDispatcher):
// the sums of the exchanged token counts, and the re-ordering of the
// received rows between rank-major and expert-major chunks. CPU references:
// the moe_exchange_counts kernel of runtime/cpu/CpuExecutor.cpp and
// cpu::moeSortChunks (runtime/cpu/MoEPermute.h).
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

/// moe_sort_chunks' operands: `rows` x `hidden` bf16 rows in parts x groups
/// chunks.
struct SortChunksShape {
  int64_t parts, groups, rows, hidden;
  bool inverse;
};

/// The most chunks (parts · groups) moeSortChunks takes: their offsets
/// are held in shared memory.
inline constexpr int64_t kMaxSortChunks = 4096;

/// Workspace of moeSortChunks: the chunks' offsets (2 · chunks + 1 i32).
size_t moeSortChunksWorkspaceBytes(const SortChunksShape &shape);

/// `in` [rows, hidden] holds chunks in (p, g) order, chunk (p, g) of
/// counts[p·groups + g] rows (i32 on the device, read there: no host
/// sync); `out` gets them in (g, p) order, or with `inverse` from (g, p)
/// back to (p, g) (Megatron-Core's sort_chunks_by_idxs). Rows of `out`
/// past the chunks are zero. A copy of whole rows: deterministic and
/// bit-identical to cpu::moeSortChunks. Negative counts count as 0, and
/// source rows at or past `rows` are not read (their rows are zero): the
/// host checks the counts before the all-to-all. `out` must not alias `in`.
Status moeSortChunks(const bf16 *in, const int32_t *counts, bf16 *out, void *workspace,
                     const SortChunksShape &shape, cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_EXPERTDISPATCH_H
