// The alltoall dispatcher's count sums and chunk re-ordering: small
// single-block kernels for the counts and the chunk offsets, then one warp
// per output row copying 16 bytes at a time where the rows allow.
#include "runtime/cuda/ExpertDispatch.h"

#include "runtime/cuda/Check.h"
#include "runtime/plan/KernelWorkspace.h"

#include <algorithm>

namespace mt::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void countSumsKernel(const int32_t *mine, const int32_t *global, int parts,
                                int groups, int32_t *send, int32_t *recv,
                                int32_t *perLocalExpert, int32_t *splits) {
  for (int p = threadIdx.x; p < parts; p += blockDim.x) {
    int32_t sent = 0, received = 0;
    for (int g = 0; g < groups; ++g) {
      sent += mine[p * groups + g];
      received += global[p * groups + g];
    }
    send[p] = sent;
    recv[p] = received;
    if (splits) {
      splits[p] = sent;
      splits[parts + p] = received;
    }
  }
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    int32_t sum = 0;
    for (int p = 0; p < parts; ++p)
      sum += global[p * groups + g];
    perLocalExpert[g] = sum;
  }
}

__global__ void gatherCountSumsKernel(const int32_t *all, int parts, int experts, int first,
                                      int groups, int32_t *global, int32_t *offsets,
                                      int32_t *perLocalExpert) {
  for (int p = threadIdx.x; p < parts; p += blockDim.x) {
    int32_t before = 0;
    for (int e = 0; e < first; ++e)
      before += all[p * experts + e];
    offsets[p] = before;
    for (int g = 0; g < groups; ++g)
      global[p * groups + g] = all[p * experts + first + g];
  }
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    int32_t sum = 0;
    for (int p = 0; p < parts; ++p)
      sum += all[p * experts + first + g];
    perLocalExpert[g] = sum;
  }
}

/// offsets = outStart [chunks + 1] (where each chunk starts in the output,
/// in output order; the last entry is where the last one ends), srcStart
/// [chunks] (where the same chunk starts in the input), outEnd [chunks],
/// then a cursor per source [parts]. Forward: input (p, g), output (g, p);
/// inverse: the other way round. The (p, g) side is packed, or with
/// `blocks` parts blocks of blockRows rows, source p's chunks from row
/// blocks[p] of its block. One thread: chunks are few.
__global__ void sortChunksOffsetsKernel(const int32_t *counts, const int32_t *blocks,
                                        int64_t blockRows, int parts, int groups, bool inverse,
                                        int32_t *offsets) {
  const int chunks = parts * groups;
  int32_t *outStart = offsets, *srcStart = offsets + chunks + 1,
          *outEnd = offsets + 2 * chunks + 1, *cursor = offsets + 3 * chunks + 1;
  // Where source p's first chunk starts on the (p, g) side.
  int32_t packed = 0;
  for (int p = 0; p < parts; ++p) {
    cursor[p] = blocks ? int32_t(p * blockRows) + blocks[p] : packed;
    for (int g = 0; g < groups; ++g)
      packed += max(counts[p * groups + g], 0);
  }
  // Chunk (p, g) is counts[p·groups + g]; in (g, p) order it is the
  // (g·parts + p)-th, at `packed` on the (g, p) side.
  packed = 0;
  for (int g = 0; g < groups; ++g)
    for (int p = 0; p < parts; ++p) {
      const int c = p * groups + g, k = inverse ? c : g * parts + p; // k: output order
      const int32_t count = max(counts[c], 0);
      outStart[k] = inverse ? cursor[p] : packed;
      srcStart[k] = inverse ? packed : cursor[p];
      outEnd[k] = outStart[k] + count;
      cursor[p] += count;
      packed += count;
    }
  outStart[chunks] = outEnd[chunks - 1];
}

/// One warp per output row (grid-stride): the chunk holding it by binary
/// search over the output starts, then the row copied in units of Raw
/// (16 bytes: 8 bf16, or one bf16).
template <typename Raw>
__global__ void __launch_bounds__(kThreads)
sortChunksCopyKernel(const Raw *in, Raw *out, const int32_t *offsets, int chunks, int64_t rows,
                     int64_t rowUnits) {
  extern __shared__ int32_t shared[]; // outStart [chunks + 1], srcStart, outEnd [chunks]
  for (int i = threadIdx.x; i < 3 * chunks + 1; i += blockDim.x)
    shared[i] = offsets[i];
  __syncthreads();
  const int32_t *outStart = shared, *srcStart = shared + chunks + 1,
                *outEnd = shared + 2 * chunks + 1;
  const int64_t total = outStart[chunks];
  const int lane = threadIdx.x % 32, warpsPerBlock = blockDim.x / 32;
  for (int64_t r = int64_t(blockIdx.x) * warpsPerBlock + threadIdx.x / 32; r < rows;
       r += int64_t(gridDim.x) * warpsPerBlock) {
    int64_t src = -1;
    if (r < total) {
      int lo = 0, hi = chunks - 1; // the last chunk that starts at or before r
      while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (outStart[mid] <= r)
          lo = mid;
        else
          hi = mid - 1;
      }
      src = r < outEnd[lo] ? srcStart[lo] + (r - outStart[lo]) : -1;
      if (src >= rows)
        src = -1;
    }
    Raw *to = out + r * rowUnits;
    const Raw *from = src >= 0 ? in + src * rowUnits : nullptr;
    for (int64_t i = lane; i < rowUnits; i += 32)
      to[i] = from ? from[i] : Raw{};
  }
}

} // namespace

Status moeCountSums(const int32_t *mine, const int32_t *global, int64_t parts, int64_t groups,
                    int32_t *send, int32_t *recv, int32_t *perLocalExpert, int32_t *splits,
                    cudaStream_t stream) {
  if (parts <= 0 || groups <= 0)
    return Status::error("moeCountSums: parts " + std::to_string(parts) + " and groups " +
                         std::to_string(groups) + " must be positive");
  countSumsKernel<<<1, kThreads, 0, stream>>>(mine, global, int(parts), int(groups), send, recv,
                                              perLocalExpert, splits);
  MT_CUDA_CHECK_LAUNCH("countSumsKernel");
  return Status::ok();
}

Status moeGatherCountSums(const int32_t *all, int64_t parts, int64_t experts, int64_t first,
                          int64_t groups, int32_t *global, int32_t *offsets,
                          int32_t *perLocalExpert, cudaStream_t stream) {
  if (parts <= 0 || groups <= 0 || first < 0 || first + groups > experts)
    return Status::error("moeGatherCountSums: experts [" + std::to_string(first) + ", " +
                         std::to_string(first + groups) + ") of " + std::to_string(experts) +
                         " over " + std::to_string(parts) + " ranks");
  gatherCountSumsKernel<<<1, kThreads, 0, stream>>>(all, int(parts), int(experts), int(first),
                                                    int(groups), global, offsets,
                                                    perLocalExpert);
  MT_CUDA_CHECK_LAUNCH("gatherCountSumsKernel");
  return Status::ok();
}

size_t moeSortChunksWorkspaceBytes(const SortChunksShape &s) {
  return plan::moeSortChunksWorkspaceBytes(s.parts, s.groups);
}

Status moeSortChunks(const bf16 *in, const int32_t *counts, const int32_t *blockOffsets,
                     bf16 *out, void *workspace, const SortChunksShape &s,
                     cudaStream_t stream) {
  const int64_t chunks = s.parts * s.groups;
  if (s.parts <= 0 || s.groups <= 0 || chunks > kMaxSortChunks)
    return Status::error("moeSortChunks: " + std::to_string(s.parts) + " x " +
                         std::to_string(s.groups) + " chunks, expected 1 to " +
                         std::to_string(kMaxSortChunks));
  if (in == out && s.rows > 0)
    return Status::error("moeSortChunks: the output aliases the input");
  if (s.blocked != (blockOffsets != nullptr) || (s.blocked && s.rows % s.parts != 0))
    return Status::error("moeSortChunks: blocked chunks need offsets and rows (" +
                         std::to_string(s.rows) + ") divisible by parts (" +
                         std::to_string(s.parts) + ")");
  if (s.rows == 0 || s.hidden == 0)
    return Status::ok();
  auto *offsets = static_cast<int32_t *>(workspace);
  sortChunksOffsetsKernel<<<1, 1, 0, stream>>>(counts, blockOffsets, s.rows / s.parts,
                                               int(s.parts), int(s.groups), s.inverse, offsets);
  MT_CUDA_CHECK_LAUNCH("sortChunksOffsetsKernel");
  const size_t sharedBytes = size_t(3 * chunks + 1) * sizeof(int32_t);
  const int64_t blocks = std::min<int64_t>((s.rows + kThreads / 32 - 1) / (kThreads / 32), 4096);
  auto aligned = [](const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (s.hidden % 8 == 0 && aligned(in) && aligned(out))
    sortChunksCopyKernel<uint4><<<blocks, kThreads, sharedBytes, stream>>>(
        reinterpret_cast<const uint4 *>(in), reinterpret_cast<uint4 *>(out), offsets,
        int(chunks), s.rows, s.hidden / 8);
  else
    sortChunksCopyKernel<unsigned short><<<blocks, kThreads, sharedBytes, stream>>>(
        reinterpret_cast<const unsigned short *>(in), reinterpret_cast<unsigned short *>(out),
        offsets, int(chunks), s.rows, s.hidden);
  MT_CUDA_CHECK_LAUNCH("sortChunksCopyKernel");
  return Status::ok();
}

} // namespace mt::cuda
