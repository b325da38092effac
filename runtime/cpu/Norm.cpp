// CPU reference kernels of RMSNorm and LayerNorm over the last axis.
// Conventions: runtime/cpu/Kernels.md.
#include "runtime/cpu/Norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mt::cpu {

namespace {

/// Below this many elements the kernels run on one thread.
constexpr int64_t kParallelMin = 1 << 14;
/// Columns owned by one thread when reducing dw/db over rows.
constexpr int64_t kColumnBlock = 64;

/// Row statistics are summed in fp64: the exact mean PyTorch's cascade sum
/// approximates, and independent of dim's size. The returned factor is then
/// rounded to fp32, as PyTorch holds it.
float rmsInverse(const float *row, int64_t dim, float eps) {
  double sumSq = 0.0;
  for (int64_t i = 0; i < dim; ++i)
    sumSq += static_cast<double>(row[i]) * row[i];
  return static_cast<float>(1.0 / std::sqrt(sumSq / dim + eps));
}

/// The mean stays fp64 so that x - mean keeps its digits for rows with a
/// large offset.
struct Moments {
  double mean;
  float rstd;
};

/// Two-pass mean and biased variance in fp64.
Moments rowMoments(const float *row, int64_t dim, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < dim; ++i)
    sum += row[i];
  const double mean = sum / dim;
  double sq = 0.0;
  for (int64_t i = 0; i < dim; ++i) {
    const double d = row[i] - mean;
    sq += d * d;
  }
  return {mean, static_cast<float>(1.0 / std::sqrt(sq / dim + eps))};
}

/// dw[c] += sum_r dy[r, c] * xhat(r, c), db[c] += sum_r dy[r, c], with the
/// rows summed in order in fp64 by the thread owning column block c.
template <typename Normalized>
void reduceWeightGrads(const float *dy, float *dw, float *db, int64_t rows,
                       int64_t dim, Normalized xhat) {
  const int64_t blocks = (dim + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * kColumnBlock;
    const int64_t end = std::min(dim, begin + kColumnBlock);
    double accW[kColumnBlock] = {};
    double accB[kColumnBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float *g = dy + r * dim;
      for (int64_t c = begin; c < end; ++c) {
        accW[c - begin] += static_cast<double>(g[c]) * xhat(r, c);
        accB[c - begin] += g[c];
      }
    }
    for (int64_t c = begin; c < end; ++c) {
      dw[c] += static_cast<float>(accW[c - begin]);
      if (db)
        db[c] += static_cast<float>(accB[c - begin]);
    }
  }
}

} // namespace

void rmsnormForward(const float *x, const float *w, float *y, int64_t rows,
                    int64_t dim, float eps) {
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    float *yr = y + r * dim;
    const float inv = rmsInverse(xr, dim, eps);
    // HF LlamaRMSNorm order: weight * (x * rsqrt(variance + eps)).
    for (int64_t i = 0; i < dim; ++i)
      yr[i] = w[i] * (xr[i] * inv);
  }
}

void rmsnormBackward(const float *x, const float *w, const float *dy, float *dx,
                     float *dw, int64_t rows, int64_t dim, float eps) {
  // One factor per row, kept for the column-wise dw reduction (one
  // allocation per call).
  std::vector<float> inv(rows);
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    const float *gr = dy + r * dim;
    float *dxr = dx + r * dim;
    const float rinv = rmsInverse(xr, dim, eps);
    inv[r] = rinv;
    // dx = r * (w*dy) - x * r^3 / dim * sum(w*dy*x)
    double dot = 0.0;
    for (int64_t i = 0; i < dim; ++i)
      dot += static_cast<double>(gr[i]) * w[i] * xr[i];
    const float coef = static_cast<float>(dot * rinv * rinv * rinv / dim);
    for (int64_t i = 0; i < dim; ++i)
      dxr[i] += rinv * (w[i] * gr[i]) - xr[i] * coef;
  }
  reduceWeightGrads(dy, dw, nullptr, rows, dim, [&](int64_t r, int64_t c) {
    return static_cast<double>(x[r * dim + c]) * inv[r];
  });
}

void addRmsnormForward(const float *x, const float *residual, const float *w,
                       float *sum, float *y, int64_t rows, int64_t dim, float eps) {
  const int64_t n = rows * dim;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    sum[i] = x[i] + residual[i];
  rmsnormForward(sum, w, y, rows, dim, eps);
}

void addRmsnormBackward(const float *x, const float *w, const float *dy,
                        const float *dresidual, float *dx, float *dw, int64_t rows,
                        int64_t dim, float eps) {
  // dresidual first: into a zeroed dx, 0 + dresidual + grad rounds as the
  // unfused add(dresidual, grad) does (one rounding of the same two terms).
  const int64_t n = rows * dim;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    dx[i] += dresidual[i];
  rmsnormBackward(x, w, dy, dx, dw, rows, dim, eps);
}

void layernormForward(const float *x, const float *w, const float *b, float *y,
                      int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    float *yr = y + r * dim;
    const Moments m = rowMoments(xr, dim, eps);
    for (int64_t i = 0; i < dim; ++i) {
      const float v = static_cast<float>(xr[i] - m.mean) * m.rstd * w[i];
      yr[i] = b ? v + b[i] : v;
    }
  }
}

void layernormBackward(const float *x, const float *w, const float *dy,
                       float *dx, float *dw, float *db, int64_t rows,
                       int64_t dim, float eps) {
  std::vector<Moments> moments(rows);
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * dim;
    const float *gr = dy + r * dim;
    float *dxr = dx + r * dim;
    const Moments m = rowMoments(xr, dim, eps);
    moments[r] = m;
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = w * dy
    double sumG = 0.0, sumGX = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      const double g = static_cast<double>(w[i]) * gr[i];
      sumG += g;
      sumGX += g * ((xr[i] - m.mean) * m.rstd);
    }
    const float meanG = static_cast<float>(sumG / dim);
    const float meanGX = static_cast<float>(sumGX / dim);
    for (int64_t i = 0; i < dim; ++i) {
      const float xhat = static_cast<float>(xr[i] - m.mean) * m.rstd;
      dxr[i] += m.rstd * (w[i] * gr[i] - meanG - xhat * meanGX);
    }
  }
  reduceWeightGrads(dy, dw, db, rows, dim, [&](int64_t r, int64_t c) {
    const Moments &m = moments[r];
    return (x[r * dim + c] - m.mean) * m.rstd;
  });
}

} // namespace mt::cpu
