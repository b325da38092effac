// CPU reference kernels of rotary position embedding and causal grouped-query
// attention. Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_ATTENTION_H
#define MT_RUNTIME_CPU_ATTENTION_H

#include "runtime/kernels/Rotary.h"

#include <cstdint>

namespace mt::cpu {

using kernels::RotaryParams;

/// x, y [batch, seq, heads, headDim]; the position of (b, s) is s, or
/// positionIds[b * seq + s] when given (documents packed in a row). For
/// each pair i < headDim/2 with angle a = position * inv_freq[i] (the fp32
/// product, as HF; cos/sin in fp64, rounded to fp32):
///   y[i]         = x[i] * cos(a) - x[i + D/2] * sin(a)
///   y[i + D/2]   = x[i + D/2] * cos(a) + x[i] * sin(a)
void rotaryForward(const float *x, float *y, int64_t batch, int64_t seq,
                   int64_t heads, int64_t headDim, const RotaryParams &p,
                   const int32_t *positionIds = nullptr);
/// dx += rotation of dy by -a (the transpose of the forward rotation).
void rotaryBackward(const float *dy, float *dx, int64_t batch, int64_t seq,
                    int64_t heads, int64_t headDim, const RotaryParams &p,
                    const int32_t *positionIds = nullptr);

struct AttentionShape {
  int64_t batch, seq, heads, kvHeads, headDim;
  float scale;
  /// Context parallelism (cp_comm_type all_gather): with cpSize > 1 the
  /// queries are the [seq] slice of the rank at coordinate cpRank and the
  /// keys and values the all-gather of every rank's slice, [seq · cpSize]
  /// rank-major; query i sees key j where j's place in the whole sequence
  /// is at most i's (runtime/kernels/ContextParallel.h).
  int64_t cpRank = 0, cpSize = 1;
  int64_t kvSeq() const { return seq * cpSize; }
};

/// The first key query i of a row sees: 0, or with packed documents the
/// start of its own, i - positionIds[i] (FlashAttention's varlen masks from
/// cu_seqlens, expressed by Hugging Face's packed position ids). Clamped to
/// [0, i] so that malformed ids cannot leave a query without keys.
inline int64_t documentStart(const int32_t *rowPositions, int64_t i) {
  if (!rowPositions)
    return 0;
  int64_t start = i - int64_t(rowPositions[i]);
  return start < 0 ? 0 : (start > i ? i : start);
}

/// q, out [batch, seq, heads, headDim]; k, v [batch, kvSeq, kvHeads, headDim];
/// positionIds [batch, seq] or null. Query head h uses kv head
/// h / (heads / kvHeads); position i attends to j in [documentStart(i), i].
/// lse [batch, heads, seq] receives the log-sum-exp of the scaled scores of
/// each query (natural log), for the backward.
void attentionForward(const float *q, const float *k, const float *v,
                      float *out, float *lse, const AttentionShape &shape,
                      const int32_t *positionIds = nullptr);
/// dq, dk, dv += gradients of sum(dout * out), from the forward's out and lse.
void attentionBackward(const float *q, const float *k, const float *v,
                       const float *out, const float *lse, const float *dout,
                       float *dq, float *dk, float *dv,
                       const AttentionShape &shape,
                       const int32_t *positionIds = nullptr);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_ATTENTION_H
