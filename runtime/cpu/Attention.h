// CPU reference kernels of rotary position embedding and causal grouped-query
// attention. Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_ATTENTION_H
#define MT_RUNTIME_CPU_ATTENTION_H

#include "runtime/kernels/Rotary.h"

#include <cstdint>

namespace mt::cpu {

using kernels::RotaryParams;

/// x, y [batch, seq, heads, headDim]; position of (b, s) is s. For each pair
/// i < headDim/2 with angle a = s * inv_freq[i] (the fp32 product, as HF;
/// cos/sin in fp64, rounded to fp32):
///   y[i]         = x[i] * cos(a) - x[i + D/2] * sin(a)
///   y[i + D/2]   = x[i + D/2] * cos(a) + x[i] * sin(a)
void rotaryForward(const float *x, float *y, int64_t batch, int64_t seq,
                   int64_t heads, int64_t headDim, const RotaryParams &p);
/// dx += rotation of dy by -a (the transpose of the forward rotation).
void rotaryBackward(const float *dy, float *dx, int64_t batch, int64_t seq,
                    int64_t heads, int64_t headDim, const RotaryParams &p);

struct AttentionShape {
  int64_t batch, seq, heads, kvHeads, headDim;
  float scale;
};

/// q, out [batch, seq, heads, headDim]; k, v [batch, seq, kvHeads, headDim].
/// Query head h uses kv head h / (heads / kvHeads); position i attends to
/// j <= i. lse [batch, heads, seq] receives the log-sum-exp of the scaled
/// scores of each query (natural log), for the backward.
void attentionForward(const float *q, const float *k, const float *v,
                      float *out, float *lse, const AttentionShape &shape);
/// dq, dk, dv += gradients of sum(dout * out), from the forward's out and lse.
void attentionBackward(const float *q, const float *k, const float *v,
                       const float *out, const float *lse, const float *dout,
                       float *dq, float *dk, float *dv,
                       const AttentionShape &shape);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_ATTENTION_H
