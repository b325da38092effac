// Causal grouped-query attention through cuDNN 9's fused flash attention,
// built with the backend graph API (cudnn_graph.h; no frontend library):
// the same contract as runtime/cuda/Attention.h without documents (position
// ids), which cuDNN's fused engines cannot mask per document in one row.
//
// Plans are built once per (device, shape, direction) and cached for the
// process; building one takes a cuDNN handle and may compile kernels, so
// callers that capture CUDA graphs build them first (cudnnAttentionPrepare).
#ifndef MT_RUNTIME_CUDA_CUDNN_ATTENTION_H
#define MT_RUNTIME_CUDA_CUDNN_ATTENTION_H

#include "runtime/cuda/Attention.h"

namespace mt::cuda {

/// Bytes of workspace cuDNN's attention plans need for one shape.
struct CudnnAttentionWorkspace {
  size_t forward = 0;
  /// With the backward's fp32 [batch, heads, seq] rowsum(dout * out) and,
  /// without `deterministic`, its fp32 dQ accumulator.
  size_t backward = 0;
};

/// Builds (or finds) the forward and backward plans of `shape` on the
/// current device and returns the workspace each needs. Fails, naming the
/// cuDNN call and status, where no engine runs the shape (deterministically,
/// when asked) or cuDNN is older than 9.0.
Expected<CudnnAttentionWorkspace> cudnnAttentionPrepare(const AttentionShape &shape,
                                                        bool deterministic);

/// As attentionForward without position ids; `workspace` holds
/// cudnnAttentionPrepare(shape).forward bytes (16-byte aligned).
Status cudnnAttentionForward(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out,
                             float *lse, void *workspace, const AttentionShape &shape,
                             cudaStream_t stream);

/// As attentionBackward without position ids: dq, dk, dv WRITTEN; with
/// `deterministic`, in a fixed order (dP kept in the workspace, engines
/// without cuDNN's nondeterministic note), else dQ accumulated with fp32
/// atomics. `workspace` holds cudnnAttentionPrepare(shape,
/// deterministic).backward bytes (16-byte aligned).
Status cudnnAttentionBackward(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *out,
                              const float *lse, const bf16 *dout, bf16 *dq, bf16 *dk,
                              bf16 *dv, void *workspace, const AttentionShape &shape,
                              cudaStream_t stream, bool deterministic);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_CUDNN_ATTENTION_H
