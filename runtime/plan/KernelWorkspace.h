// The CUDA backend's kernel workspaces other than attention's, in the plain
// arithmetic that the kernels size them by (runtime/cuda/Norm.cu,
// Elementwise.cu, MoERouter.cu, MoEPermute.cu, MoEExperts.cu,
// ExpertDispatch.cu) and that `mtc compile --explain` predicts them with
// (plan::kernelWorkspace): included by nvcc-compiled code and by mtc alike.
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

/// The kernels' sub-buffers of a workspace start at multiples of 256 bytes.
inline uint64_t workspacePart(uint64_t bytes) { return (bytes + 255) / 256 * 256; }

/// Bytes of the router's workspace (moe_router and its gradient): probs and
/// dlogits [tokens, experts] fp32, weights and indices [tokens, topK], the
/// log-sum-exp [tokens], per (balance group, expert) an fp64 probability sum
/// and an int32 count, x in fp32 [tokens, hidden]. `balanceGroups`: 1, or
/// tokens / seq with seq_aux_loss.
inline uint64_t moeRouterWorkspaceBytes(int64_t tokens, int64_t hidden, int64_t experts,
                                        int64_t topK, int64_t balanceGroups) {
  const uint64_t te = uint64_t(tokens * experts), tk = uint64_t(tokens * topK),
                 ge = uint64_t(balanceGroups * experts);
  return 2 * workspacePart(4 * te) + 2 * workspacePart(4 * tk) +
         workspacePart(4 * uint64_t(tokens)) + workspacePart(8 * ge) + workspacePart(4 * ge) +
         workspacePart(4 * uint64_t(tokens * hidden));
}

/// Bytes of moe_permute's workspace: expert offsets [experts + 1] and the
/// permutation [tokens * topK], int32.
inline uint64_t moePermuteWorkspaceBytes(int64_t tokens, int64_t topK, int64_t experts) {
  return workspacePart(4 * uint64_t(experts + 1)) + workspacePart(4 * uint64_t(tokens * topK));
}

/// Which GEMMs run the experts' SwiGLU MLP (mtrun's MT_MOE_GEMM): the
/// libraries (auto, the default; cublaslt; grouped), the tiled fallback,
/// or mtc's grouped GEMM kernel.
enum class ExpertGemmPath { Library, Tiled, Kernel };

/// Grouped GEMM calls of the library path whose pointer arrays (a, b, c
/// per expert) the workspace holds, per forward or backward.
inline constexpr int64_t kExpertLibraryCalls = 3;
/// Bytes of the kernel path's layout: row and tile starts [experts + 1].
inline uint64_t groupedLayoutBytes(int64_t experts) {
  return 2 * workspacePart(4 * uint64_t(experts + 1));
}

/// Bytes of moe_grouped_mlp's (or its gradient's) workspace over `rows`
/// permuted rows: the library and kernel paths keep the act in bf16 [rows,
/// ffn] (the backward also d gate and d up); the tiled path keeps fp32
/// products (gate, up, the output [rows, hidden]; the backward also act
/// and dact).
inline uint64_t groupedMlpWorkspaceBytes(int64_t rows, int64_t hidden, int64_t ffn,
                                         int64_t experts, bool backward, ExpertGemmPath path) {
  const uint64_t n = uint64_t(rows), h = uint64_t(hidden), f = uint64_t(ffn);
  const uint64_t parts = backward ? 3 : 1;
  switch (path) {
  case ExpertGemmPath::Kernel:
    return groupedLayoutBytes(experts) + parts * workspacePart(2 * n * f);
  case ExpertGemmPath::Tiled:
    return workspacePart(4 * uint64_t(experts + 1)) + (backward ? 4 : 2) * workspacePart(4 * n * f) +
           workspacePart(4 * n * h);
  case ExpertGemmPath::Library:
    break;
  }
  return parts * workspacePart(2 * n * f) +
         3 * sizeof(void *) * uint64_t(kExpertLibraryCalls * experts);
}

/// Bytes of moe_sort_chunks' workspace: the chunks' counts, offsets and
/// destinations (3 per chunk, one more) and the parts' totals, int32.
inline uint64_t moeSortChunksWorkspaceBytes(int64_t parts, int64_t groups) {
  return uint64_t(3 * parts * groups + 1 + parts) * sizeof(int32_t);
}

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_KERNELWORKSPACE_H
