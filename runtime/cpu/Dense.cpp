// CPU reference kernels of the dense layers: linear (tiled OpenBLAS sgemm),
// embedding, SwiGLU, GELU and residual adds. Conventions: Kernels.md.
#include "runtime/cpu/Dense.h"

#include "runtime/cpu/Gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <utility>

namespace mt::cpu {

namespace {

/// Element-wise loops below this size run on one thread: forking costs more.
constexpr int64_t kParallelMin = 1 << 14;

/// Columns owned by one thread in column-blocked reductions: a multiple of a
/// cache line of floats, so no two threads write the same line.
constexpr int64_t kColumnBlock = 64;

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluCubic = 0.044715f;

} // namespace

void linearForward(const float *x, const float *w, const float *bias, float *y,
                   int64_t tokens, int64_t in, int64_t out) {
  if (tokens == 0 || out == 0)
    return;
  float beta = 0.0f;
  if (bias) {
    // y starts as the broadcast bias; sgemm then adds x * w^T onto it.
#pragma omp parallel for schedule(static) if (tokens * out >= kParallelMin)
    for (int64_t t = 0; t < tokens; ++t)
      std::memcpy(y + t * out, bias, sizeof(float) * out);
    beta = 1.0f;
  }
  gemm(false, true, tokens, out, in, x, in, w, in, beta, y, out);
}

void linearBackwardInput(const float *dy, const float *w, float *dx,
                         int64_t tokens, int64_t in, int64_t out) {
  if (tokens == 0 || in == 0)
    return;
  gemm(false, false, tokens, in, out, dy, out, w, in, 1.0f, dx, in);
}

void linearBackwardWeight(const float *x, const float *dy, float *dw,
                          int64_t tokens, int64_t in, int64_t out) {
  if (out == 0 || in == 0)
    return;
  gemm(true, false, out, in, tokens, dy, out, x, in, 1.0f, dw, in);
}

void biasBackward(const float *dy, float *dbias, int64_t tokens, int64_t out) {
  const int64_t blocks = (out + kColumnBlock - 1) / kColumnBlock;
  // Each thread owns a block of columns and sums its tokens in order (fp64).
#pragma omp parallel for schedule(static) if (tokens * out >= kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * kColumnBlock;
    const int64_t end = std::min(out, begin + kColumnBlock);
    double acc[kColumnBlock] = {};
    for (int64_t t = 0; t < tokens; ++t) {
      const float *row = dy + t * out;
      for (int64_t o = begin; o < end; ++o)
        acc[o - begin] += row[o];
    }
    for (int64_t o = begin; o < end; ++o)
      dbias[o] += static_cast<float>(acc[o - begin]);
  }
}

void embeddingForward(const int32_t *ids, const float *table, float *y,
                      int64_t tokens, int64_t hidden) {
#pragma omp parallel for schedule(static) if (tokens * hidden >= kParallelMin)
  for (int64_t t = 0; t < tokens; ++t)
    std::memcpy(y + t * hidden, table + static_cast<int64_t>(ids[t]) * hidden,
                sizeof(float) * hidden);
}

void embeddingBackward(const int32_t *ids, const float *dy, float *dtable,
                       int64_t tokens, int64_t vocab, int64_t hidden) {
  (void)vocab; // rows are addressed by id; the size is only the table's bound
  // Threads own disjoint column blocks of the table and walk the tokens in
  // order, so a repeated id accumulates in token order without atomics and
  // the result does not depend on the thread count.
  const int64_t blocks = (hidden + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (tokens * hidden >= kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * kColumnBlock;
    const int64_t end = std::min(hidden, begin + kColumnBlock);
    for (int64_t t = 0; t < tokens; ++t) {
      float *dst = dtable + static_cast<int64_t>(ids[t]) * hidden;
      const float *src = dy + t * hidden;
      for (int64_t h = begin; h < end; ++h)
        dst[h] += src[h];
    }
  }
}

namespace {

/// silu(g) * u, silu as PyTorch writes it: g / (1 + exp(-g)); -inf-safe for
/// large -g.
inline float swiglu(float g, float u) { return g / (1.0f + std::exp(-g)) * u; }

/// The gradients of swiglu(g, u) for dy: (dgate, dup).
inline std::pair<float, float> swigluGrad(float g, float u, float dy) {
  const float s = sigmoid(g);
  // d silu / dg = s * (1 + g * (1 - s))
  return {dy * u * (s * (1.0f + g * (1.0f - s))), dy * (g * s)};
}

} // namespace

void swigluForward(const float *gate, const float *up, float *y, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    y[i] = swiglu(gate[i], up[i]);
}

void swigluBackward(const float *gate, const float *up, const float *dy,
                    float *dgate, float *dup, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    auto [dg, du] = swigluGrad(gate[i], up[i], dy[i]);
    dgate[i] += dg;
    dup[i] += du;
  }
}

void chunkedSwigluForward(const float *x, float *y, int64_t rows, int64_t dim) {
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *gate = x + r * 2 * dim, *up = gate + dim;
    for (int64_t i = 0; i < dim; ++i)
      y[r * dim + i] = swiglu(gate[i], up[i]);
  }
}

void chunkedSwigluBackward(const float *x, const float *dy, float *dx, int64_t rows,
                           int64_t dim, float *y) {
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *gate = x + r * 2 * dim, *up = gate + dim;
    float *dgate = dx + r * 2 * dim, *dup = dgate + dim;
    for (int64_t i = 0; i < dim; ++i)
      std::tie(dgate[i], dup[i]) = swigluGrad(gate[i], up[i], dy[r * dim + i]);
    if (y)
      for (int64_t i = 0; i < dim; ++i)
        y[r * dim + i] = swiglu(gate[i], up[i]);
  }
}

void splitQkv(const float *x, float *q, float *k, float *v, int64_t rows, int64_t qDim,
              int64_t kvDim) {
  const int64_t dim = qDim + 2 * kvDim;
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * dim;
    std::copy_n(row, qDim, q + r * qDim);
    std::copy_n(row + qDim, kvDim, k + r * kvDim);
    std::copy_n(row + qDim + kvDim, kvDim, v + r * kvDim);
  }
}

void concatQkv(const float *dq, const float *dk, const float *dv, float *x, int64_t rows,
               int64_t qDim, int64_t kvDim) {
  const int64_t dim = qDim + 2 * kvDim;
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    float *row = x + r * dim;
    std::copy_n(dq + r * qDim, qDim, row);
    std::copy_n(dk + r * kvDim, kvDim, row + qDim);
    std::copy_n(dv + r * kvDim, kvDim, row + qDim + kvDim);
  }
}

void geluForward(const float *x, float *y, int64_t n, bool approximateTanh) {
  if (approximateTanh) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      const float inner = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
      y[i] = 0.5f * v * (1.0f + std::tanh(inner));
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

void geluBackward(const float *x, const float *dy, float *dx, int64_t n,
                  bool approximateTanh) {
  if (approximateTanh) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      const float th =
          std::tanh(kSqrt2OverPi * (v + kGeluCubic * v * v * v));
      const float dinner = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
      dx[i] += dy[i] * (0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * dinner);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + std::erf(v * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * std::exp(-0.5f * v * v);
    dx[i] += dy[i] * (cdf + v * pdf);
  }
}

void addForward(const float *a, const float *b, float *y, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    y[i] = a[i] + b[i];
}

void accumulate(const float *src, float *dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    dst[i] += src[i];
}

void biasAddForward(const float *x, const float *bias, float *y, int64_t rows, int64_t dim) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i)
      y[r * dim + i] = x[r * dim + i] + bias[i];
}

} // namespace mt::cpu
