// The kernel workspace of attention on the CUDA backend: the formulas and
// auto's choice rule that the runtime sizes and chooses by
// (runtime/cuda/AttentionBackend.cpp planAttention) and the compiler
// predicts with (`mtc compile --explain`, attentionWorkspace). Plain
// arithmetic: included by nvcc-compiled code and by mtc alike.
#ifndef MT_RUNTIME_PLAN_ATTENTIONWORKSPACE_H
#define MT_RUNTIME_PLAN_ATTENTIONWORKSPACE_H

#include <cstdint>

namespace mt::plan {

/// Bytes of the mtc kernels' backward workspace: the fp32
/// rowsum(dout * out) of every query, [batch, heads, seq].
inline uint64_t mtcAttentionWorkspaceBytes(int64_t batch, int64_t heads, int64_t seq) {
  return uint64_t(batch * heads * seq) * sizeof(float);
}

/// Bytes of the fp32 rowsum(dout * out) that cuDNN's backward reads from
/// the front of its workspace ([batch, heads, seq], in 256-byte units).
inline uint64_t cudnnSoftmaxSumBytes(int64_t batch, int64_t heads, int64_t seq) {
  return (uint64_t(batch * heads * seq) * sizeof(float) + 255) / 256 * 256;
}

/// Bytes of the workspace cuDNN's fused attention needs, predicted: the
/// softmax sum above and, with the `deterministic` ("dP workspace")
/// backward, dP whole in bf16 (2 bytes per query-key pair, [batch, heads,
/// seq, kvSeq]) and an fp32 dQ [batch, heads, seq, headDim]; without it, the
/// fp32 dQ that accumulates with atomics and as much again that cuDNN's
/// backward plan asks for itself. cuDNN reports its own figure at run time
/// (cudnnAttentionPrepare); these match what it reported on the H200 with
/// cuDNN 9 (llama3.2-1b, 32 heads of 64: deterministic 1089 MiB at 4 x 2048
/// and 4161 MiB at 1 x 8192; atomic 129 MiB at both). A gpu1 test compares
/// both forms.
inline uint64_t cudnnAttentionWorkspaceBytes(int64_t batch, int64_t heads, int64_t seq,
                                             int64_t kvSeq, int64_t headDim,
                                             bool deterministic) {
  const uint64_t rows = uint64_t(batch * heads * seq);
  const uint64_t dq = rows * uint64_t(headDim) * sizeof(float);
  return (deterministic ? rows * uint64_t(kvSeq) * 2 + dq : 2 * dq) +
         cudnnSoftmaxSumBytes(batch, heads, seq);
}

/// Bytes of workspace cuDNN's fused attention forward asks for: 256 at every
/// shape measured on the H200 (llama3.2-1b's and qwen3-0.6b's; the log-sum-exp
/// it writes is the instruction's output, not workspace). A gpu1 test compares
/// it with what cuDNN reports.
inline constexpr uint64_t kCudnnAttentionForwardWorkspaceBytes = 256;

/// Auto's limit on cuDNN's workspace: at most 1/16 of the device's memory
/// (cudaMemGetInfo's total), else the mtc kernels run.
inline constexpr uint64_t kCudnnWorkspaceShareOfDevice = 16;
inline bool cudnnWorkspaceFits(uint64_t workspaceBytes, uint64_t deviceBytes) {
  return workspaceBytes <= deviceBytes / kCudnnWorkspaceShareOfDevice;
}

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_ATTENTIONWORKSPACE_H
