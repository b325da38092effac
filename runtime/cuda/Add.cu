// Residual add, accumulation and bias add (bf16 storage, fp32 math): grid-
// stride loops with 16-byte accesses where the shape and pointers allow and
// a scalar fallback for odd shapes; the bias gradient is a column reduction
// in a fixed order.
#include "runtime/cuda/Add.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/GridStride.cuh"
#include "runtime/cuda/Vector.cuh"

#include <algorithm>

namespace mt::cuda {

namespace {

using vec::aligned16;
using vec::load;
using vec::store;

using grid::groupStart;
using grid::groupStride;
using grid::kThreads;
using grid::launchVectorized;

/// y = a + b; a thread reads its group before writing it, so y may alias.
template <int V, typename T>
__global__ void addKernel(const T *a, const T *b, T *y, int64_t n) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    float u[V], v[V];
    load<V>(a + i, u);
    load<V>(b + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k)
      u[k] += v[k];
    store<V>(y + i, u);
  }
}

template <int V>
__global__ void accumulateKernel(const float *x, float *y, int64_t n) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    float u[V], v[V];
    load<V>(x + i, u);
    load<V>(y + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k)
      v[k] += u[k];
    store<V>(y + i, v);
  }
}

template <int V>
__global__ void scaleKernel(const float *x, float *y, int64_t n, float factor) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    float v[V];
    load<V>(x + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k)
      v[k] *= factor;
    store<V>(y + i, v);
  }
}

/// V = 8 only when dim % 8 == 0: a group never straddles two rows.
template <int V>
__global__ void biasAddKernel(const bf16 *x, const bf16 *bias, bf16 *y,
                              int64_t n, int64_t dim) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    float u[V], b[V];
    load<V>(x + i, u);
    load<V>(bias + i % dim, b);
#pragma unroll
    for (int k = 0; k < V; ++k)
      u[k] += b[k];
    store<V>(y + i, u);
  }
}

/// Warps of a biasGrad block (the most a block holds): more warps share a
/// column tile, so fewer columns still fill the GPU.
constexpr int kBiasWarps = 32;
/// Rows whose loads a thread issues before adding them, in row order.
constexpr int kBiasBatch = 8;

/// Block = 32 columns, lane = column: a warp reads 64 contiguous bytes of a
/// row (whole 32-byte sectors, for any alignment). Warp w sums rows w,
/// w + 32, ... in order; warp 0 then adds the 32 sums in warp order.
__global__ void __launch_bounds__(32 * kBiasWarps)
    biasGradKernel(const bf16 *dy, float *dbias, int64_t tokens, int64_t out) {
  __shared__ float warpSum[kBiasWarps][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t c = blockIdx.x * int64_t(32) + lane;
  float sum = 0.0f;
  if (c < out) {
    const bf16 *col = dy + c;
    int64_t t = warp;
    for (; t + (kBiasBatch - 1) * kBiasWarps < tokens; t += kBiasBatch * kBiasWarps) {
      float v[kBiasBatch];
#pragma unroll
      for (int k = 0; k < kBiasBatch; ++k)
        v[k] = __bfloat162float(col[(t + k * kBiasWarps) * out]);
#pragma unroll
      for (int k = 0; k < kBiasBatch; ++k)
        sum += v[k];
    }
    for (; t < tokens; t += kBiasWarps)
      sum += __bfloat162float(col[t * out]);
  }
  warpSum[warp][lane] = sum;
  __syncthreads();
  if (warp == 0 && c < out) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kBiasWarps; ++w)
      total += warpSum[w][lane];
    dbias[c] += total;
  }
}

} // namespace

Status add(const bf16 *a, const bf16 *b, bf16 *y, int64_t n,
           cudaStream_t stream) {
  return launchVectorized<8>(aligned16(a) && aligned16(b) && aligned16(y), n,
                             addKernel<8, bf16>, addKernel<1, bf16>, stream, a, b, y, n);
}

Status add(const float *a, const float *b, float *y, int64_t n, cudaStream_t stream) {
  return launchVectorized<4>(aligned16(a) && aligned16(b) && aligned16(y), n,
                             addKernel<4, float>, addKernel<1, float>, stream, a, b, y, n);
}

Status accumulate(const bf16 *x, bf16 *y, int64_t n, cudaStream_t stream) {
  return add(y, x, y, n, stream); // fp32 addition commutes: y + x == x + y
}

Status accumulate(const float *x, float *y, int64_t n, cudaStream_t stream) {
  return launchVectorized<4>(aligned16(x) && aligned16(y), n,
                             accumulateKernel<4>, accumulateKernel<1>, stream,
                             x, y, n);
}

Status scale(const float *x, float *y, int64_t n, float factor, cudaStream_t stream) {
  return launchVectorized<4>(aligned16(x) && aligned16(y), n, scaleKernel<4>, scaleKernel<1>,
                             stream, x, y, n, factor);
}

Status biasAdd(const bf16 *x, const bf16 *bias, bf16 *y, int64_t rows,
               int64_t dim, cudaStream_t stream) {
  const bool vectorizable =
      dim % 8 == 0 && aligned16(x) && aligned16(bias) && aligned16(y);
  return launchVectorized<8>(vectorizable, rows * dim, biasAddKernel<8>,
                             biasAddKernel<1>, stream, x, bias, y, rows * dim,
                             dim);
}

Status biasGrad(const bf16 *dy, float *dbias, int64_t tokens, int64_t out,
                cudaStream_t stream) {
  if (tokens == 0 || out == 0)
    return Status::ok();
  biasGradKernel<<<(out + 31) / 32, 32 * kBiasWarps, 0, stream>>>(dy, dbias,
                                                                  tokens, out);
  MT_CUDA_CHECK_LAUNCH("biasGradKernel");
  return Status::ok();
}

} // namespace mt::cuda
