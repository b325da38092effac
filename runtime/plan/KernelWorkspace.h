// The CUDA backend's kernel workspaces other than attention's, in the plain
// arithmetic that the kernels size them by (runtime/cuda/Norm.cu,
// Elementwise.cu) and that `mtc compile --explain` predicts them with
// (plan::sharedKernelWorkspaceBytes): included by nvcc-compiled code and
// by mtc alike.
#ifndef MT_RUNTIME_PLAN_KERNELWORKSPACE_H
#define MT_RUNTIME_PLAN_KERNELWORKSPACE_H

#include <algorithm>
#include <cstdint>

namespace mt::plan {

/// rmsnorm's backward: rows of up to this many columns take one warp each,
/// 8 warps to a block.
inline constexpr int64_t kRmsnormWarpRowMaxDim = 1024;
inline constexpr int64_t kRmsnormWarpsPerBlock = 8;
/// Row blocks of rmsnorm's backward (about what an H100 holds at once): the
/// partials of dw are reduced in a fixed order, so the count is a constant
/// rather than the device's multiprocessor count.
inline constexpr int64_t kRmsnormMaxBackwardBlocks = 1024;

/// Blocks of rmsnorm's backward over `rows` of `dim` (one fp32 dw partial
/// row each).
inline int64_t rmsnormBackwardBlocks(int64_t rows, int64_t dim) {
  const int64_t blocks = dim <= kRmsnormWarpRowMaxDim
                             ? (rows + kRmsnormWarpsPerBlock - 1) / kRmsnormWarpsPerBlock
                             : rows;
  return std::min(blocks, kRmsnormMaxBackwardBlocks);
}

/// Bytes of rmsnorm's backward workspace: its blocks' fp32 dw partials.
inline uint64_t rmsnormBackwardWorkspaceBytes(int64_t rows, int64_t dim) {
  return uint64_t(rmsnormBackwardBlocks(rows, dim) * dim) * sizeof(float);
}

/// Bytes of the embedding backward's workspace: one int32 per row of the
/// table.
inline uint64_t embeddingBackwardWorkspaceBytes(int64_t vocab) {
  return uint64_t(vocab) * sizeof(int32_t);
}

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_KERNELWORKSPACE_H
