// CPU reference kernels of ring attention (context parallelism's cp_comm_type
// p2p): one block of this rank's queries against one cp rank's keys, with
// its log-sum-exp, and the log-sum-exp merge of two blocks. Conventions:
// runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_RINGATTENTION_H
#define MT_RUNTIME_CPU_RINGATTENTION_H

#include "runtime/cpu/Attention.h"

#include <cstdint>

namespace mt::cpu {

/// q, out [batch, seq, heads, headDim] of the rank at coordinate
/// shape.cpRank of shape.cpSize; k, v [batch, seq, kvHeads, headDim] of the
/// rank at (cpRank - step) mod cpSize, both in the load-balanced layout
/// (runtime/kernels/ContextParallel.h). Query i sees key j when j's place
/// in the sequence is at most i's and, with positionIds ([batch, seq], the
/// queries'; documents packed in a row), at least i's place minus its
/// position id (its document's start). lse [batch, heads, seq]: the natural
/// log-sum-exp of the scaled scores of the visible keys; a query that sees
/// none gets out 0 and lse -inf. Sums in fp64.
void attentionBlockForward(const float *q, const float *k, const float *v, float *out,
                           float *lse, const AttentionShape &shape, int64_t step,
                           const int32_t *positionIds = nullptr);
/// dq, dk, dv += the gradients of sum(dout * out) + sum(dlse * lse):
/// d score = p (dout . v - dout . out + dlse), p = exp(score - lse).
void attentionBlockBackward(const float *q, const float *k, const float *v, const float *out,
                            const float *lse, const float *dout, const float *dlse, float *dq,
                            float *dk, float *dv, const AttentionShape &shape, int64_t step,
                            const int32_t *positionIds = nullptr);

/// outA, outB, out [batch, seq, heads, headDim]; lseA, lseB, lse [batch,
/// heads, seq]: lse = log(exp(lseA) + exp(lseB)), out = exp(lseA - lse) outA
/// + exp(lseB - lse) outB (0 and -inf where both lse are -inf).
void attentionMergeForward(const float *outA, const float *lseA, const float *outB,
                           const float *lseB, float *out, float *lse, int64_t batch,
                           int64_t seq, int64_t heads, int64_t headDim);
/// doutA, dlseA, doutB, dlseB += the merge's gradients: with w = exp(lseX -
/// lse), doutX = w dout and dlseX = w (dout . (outX - out) + dlse).
void attentionMergeBackward(const float *outA, const float *lseA, const float *outB,
                            const float *lseB, const float *out, const float *lse,
                            const float *dout, const float *dlse, float *doutA, float *dlseA,
                            float *doutB, float *dlseB, int64_t batch, int64_t seq,
                            int64_t heads, int64_t headDim);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_RINGATTENTION_H
