// CPU reference kernels of the dense layers: linear, embedding, element-wise
// activations, residual adds. Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_DENSE_H
#define MT_RUNTIME_CPU_DENSE_H

#include <cstdint>

namespace mt::cpu {

/// y[t, o] = sum_i x[t, i] * w[o, i] + bias[o]; x [tokens, in], w [out, in]
/// (HF layout), bias [out] or null, y [tokens, out]. Tiled sgemm (Gemm.h).
void linearForward(const float *x, const float *w, const float *bias, float *y,
                   int64_t tokens, int64_t in, int64_t out);
/// dx[t, i] += sum_o dy[t, o] * w[o, i].
void linearBackwardInput(const float *dy, const float *w, float *dx,
                         int64_t tokens, int64_t in, int64_t out);
/// dw[o, i] += sum_t dy[t, o] * x[t, i].
void linearBackwardWeight(const float *x, const float *dy, float *dw,
                          int64_t tokens, int64_t in, int64_t out);
/// y[r, :] = x[r, :] + bias; x, y [rows, dim].
void biasAddForward(const float *x, const float *bias, float *y, int64_t rows, int64_t dim);
/// dbias[o] += sum_t dy[t, o].
void biasBackward(const float *dy, float *dbias, int64_t tokens, int64_t out);

/// y[t, :] = table[ids[t], :]; table [vocab, hidden]. ids are in range.
void embeddingForward(const int32_t *ids, const float *table, float *y,
                      int64_t tokens, int64_t hidden);
/// dtable[ids[t], :] += dy[t, :] (scatter-add; deterministic order).
void embeddingBackward(const int32_t *ids, const float *dy, float *dtable,
                       int64_t tokens, int64_t vocab, int64_t hidden);

/// y = silu(gate) * up, element-wise over n.
void swigluForward(const float *gate, const float *up, float *y, int64_t n);
void swigluBackward(const float *gate, const float *up, const float *dy,
                    float *dgate, float *dup, int64_t n);
/// The same over a packed [rows, 2 dim] x holding gate in the first dim
/// columns of each row and up in the last (Megatron-Core's swiglu of the
/// linear_fc1 output): y [rows, dim]; backward writes dx [rows, 2 dim]
/// (dgate | dup), each element computed as swigluForward/Backward do, and,
/// when `y` is given, the forward's y again (mt.chunked_swiglu_recompute_grad:
/// the same bits as chunkedSwigluForward).
void chunkedSwigluForward(const float *x, float *y, int64_t rows, int64_t dim);
void chunkedSwigluBackward(const float *x, const float *dy, float *dx, int64_t rows,
                           int64_t dim, float *y = nullptr);

/// Megatron-Core's split of the linear_qkv output: x [rows, qDim + 2 kvDim]
/// holds q in the first qDim columns of each row, then k and v (kvDim
/// each); q [rows, qDim], k and v [rows, kvDim] are written. concatQkv is
/// its inverse for the gradients: x is written from dq, dk and dv.
void splitQkv(const float *x, float *q, float *k, float *v, int64_t rows, int64_t qDim,
              int64_t kvDim);
void concatQkv(const float *dq, const float *dk, const float *dv, float *x, int64_t rows,
               int64_t qDim, int64_t kvDim);

/// Exact GELU (erf) or the tanh approximation.
void geluForward(const float *x, float *y, int64_t n, bool approximateTanh);
void geluBackward(const float *x, const float *dy, float *dx, int64_t n,
                  bool approximateTanh);

/// y = a + b.
void addForward(const float *a, const float *b, float *y, int64_t n);
/// dst += src.
void accumulate(const float *src, float *dst, int64_t n);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_DENSE_H
