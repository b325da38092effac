// Ring attention (context parallelism's cp_comm_type p2p) on the GPU: the
// log-sum-exp merge of two partial attentions and its gradient (bf16
// outputs, fp32 log-sum-exps and arithmetic). The blocks themselves are the
// flash attention kernels with a context-parallel shape
// (runtime/cuda/Attention.h, AttentionShape::kvSource). CPU reference:
// runtime/cpu/RingAttention.h.
#ifndef MT_RUNTIME_CUDA_RINGATTENTION_H
#define MT_RUNTIME_CUDA_RINGATTENTION_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// Partial attentions' shape: out [batch, seq, heads, headDim], lse
/// [batch, heads, seq].
struct MergeShape {
  int64_t batch, seq, heads, headDim;
};

/// lse = log(exp(lseA) + exp(lseB)), out = exp(lseA - lse) outA +
/// exp(lseB - lse) outB; 0 and -inf where both lse are -inf
/// (cpu::attentionMergeForward). out and lse may alias outA and lseA.
Status attentionMergeForward(const bf16 *outA, const float *lseA, const bf16 *outB,
                             const float *lseB, bf16 *out, float *lse, const MergeShape &shape,
                             cudaStream_t stream);

/// Which outputs of attentionMergeBackward are added into (the plan's
/// gradient sums) rather than written.
struct MergeGradAdds {
  bool doutA = false, dlseA = false, doutB = false, dlseB = false;
};

/// With w = exp(lseX - lse) (0 where lseX is -inf, every gradient 0 where
/// lse is): doutX = w dout and dlseX = w (dout . (outX - out) + dlse)
/// (cpu::attentionMergeBackward), written or added as `adds` says.
Status attentionMergeBackward(const bf16 *outA, const float *lseA, const bf16 *outB,
                              const float *lseB, const bf16 *out, const float *lse,
                              const bf16 *dout, const float *dlse, bf16 *doutA, float *dlseA,
                              bf16 *doutB, float *dlseB, const MergeShape &shape,
                              const MergeGradAdds &adds, cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_RINGATTENTION_H
