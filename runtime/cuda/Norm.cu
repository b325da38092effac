// RMSNorm kernels: one block per row for the forward; the backward gives
// each block a fixed run of rows and reduces dw from per-block partials in
// a fixed order (deterministic, no atomics).
#include "runtime/cuda/Norm.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/Vector.cuh"

#include <algorithm>

namespace mt::cuda {

namespace {

using vec::aligned16;
using vec::load;
using vec::store;

constexpr int kThreads = 256;
/// Row blocks of the backward (about what an H100 holds at once): partials
/// of dw are reduced in a fixed order, so the count is a constant rather
/// than the device's multiprocessor count.
constexpr int64_t kMaxBackwardBlocks = 1024;
/// Warps of the partials reduction; each sums every kReduceWarps-th block.
constexpr int kReduceWarps = 8;




/// Sum over the block of (a, b); every thread gets the result. The leading
/// barrier lets callers reuse the scratch row after row.
__device__ float2 blockSum(float a, float b) {
  __shared__ float2 scratch[kThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    a += __shfl_xor_sync(0xffffffffu, a, offset);
    b += __shfl_xor_sync(0xffffffffu, b, offset);
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0)
    scratch[threadIdx.x / 32] = make_float2(a, b);
  __syncthreads();
  float2 total = make_float2(0.0f, 0.0f);
#pragma unroll
  for (int i = 0; i < kThreads / 32; ++i) {
    total.x += scratch[i].x;
    total.y += scratch[i].y;
  }
  return total;
}

template <int V>
__global__ void __launch_bounds__(kThreads)
    rmsnormForwardKernel(const bf16 *x, const bf16 *residual, bf16 *residualOut,
                         const bf16 *w, bf16 *y, int64_t dim, float eps) {
  const int64_t base = blockIdx.x * dim;
  // The normalized input: x, or the bf16-rounded x + residual.
  const bf16 *in = residual ? residualOut + base : x + base;
  float sumSq = 0.0f;
  for (int64_t c = threadIdx.x * V; c < dim; c += kThreads * V) {
    float v[V];
    load<V>(x + base + c, v);
    if (residual) {
      float r[V];
      load<V>(residual + base + c, r);
#pragma unroll
      for (int i = 0; i < V; ++i)
        v[i] = __bfloat162float(__float2bfloat16_rn(v[i] + r[i]));
      store<V>(residualOut + base + c, v);
    }
#pragma unroll
    for (int i = 0; i < V; ++i)
      sumSq += v[i] * v[i];
  }
  const float inv = rsqrtf(blockSum(sumSq, 0.0f).x / dim + eps);
  // Each thread re-reads only the elements it wrote (or read) above.
  for (int64_t c = threadIdx.x * V; c < dim; c += kThreads * V) {
    float v[V], g[V];
    load<V>(in + c, v);
    load<V>(w + c, g);
#pragma unroll
    for (int i = 0; i < V; ++i)
      v[i] = g[i] * (v[i] * inv); // HF order: weight * (x * rsqrt)
    store<V>(y + base + c, v);
  }
}

/// Rows [first, last) of one block; its dw partial sums live in dynamic
/// shared memory, each column owned by one thread (no races, no atomics).
template <int V>
__global__ void __launch_bounds__(kThreads)
    rmsnormBackwardKernel(const bf16 *x, const bf16 *w, const bf16 *dy,
                          const bf16 *dresidual, bf16 *dx, float *partials,
                          int64_t rows, int64_t dim, float eps) {
  extern __shared__ float dwPartial[];
  for (int64_t c = threadIdx.x * V; c < dim; c += kThreads * V)
#pragma unroll
    for (int i = 0; i < V; ++i)
      dwPartial[c + i] = 0.0f;
  const int64_t perBlock = (rows + gridDim.x - 1) / gridDim.x;
  const int64_t first = blockIdx.x * perBlock;
  const int64_t last = min(rows, first + perBlock);
  for (int64_t row = first; row < last; ++row) {
    const int64_t base = row * dim;
    float sumSq = 0.0f, dot = 0.0f;
    for (int64_t c = threadIdx.x * V; c < dim; c += kThreads * V) {
      float xv[V], gv[V], wv[V];
      load<V>(x + base + c, xv);
      load<V>(dy + base + c, gv);
      load<V>(w + c, wv);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        sumSq += xv[i] * xv[i];
        dot += gv[i] * wv[i] * xv[i];
      }
    }
    const float2 sums = blockSum(sumSq, dot);
    const float inv = rsqrtf(sums.x / dim + eps);
    // dx = inv * (w * dy) - x * inv^3 / dim * sum(w * dy * x)
    const float coef = sums.y * inv * inv * inv / dim;
    for (int64_t c = threadIdx.x * V; c < dim; c += kThreads * V) {
      float xv[V], gv[V], wv[V], out[V];
      load<V>(x + base + c, xv);
      load<V>(dy + base + c, gv);
      load<V>(w + c, wv);
      if (dresidual)
        load<V>(dresidual + base + c, out);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float grad = inv * (wv[i] * gv[i]) - xv[i] * coef;
        out[i] = dresidual ? out[i] + grad : grad;
        dwPartial[c + i] += gv[i] * (xv[i] * inv);
      }
      store<V>(dx + base + c, out);
    }
  }
  for (int64_t c = threadIdx.x * V; c < dim; c += kThreads * V)
#pragma unroll
    for (int i = 0; i < V; ++i)
      partials[blockIdx.x * dim + c + i] = dwPartial[c + i];
}

/// dw[c] += sum over blocks b of partials[b, c]. Lane = column (coalesced);
/// warp w sums blocks w, w + 8, ... in order, then warp 0 adds the eight
/// sums in warp order: a fixed order, so every run gives the same bits.
__global__ void __launch_bounds__(32 * kReduceWarps)
    reducePartialsKernel(const float *partials, float *dw, int64_t blocks,
                         int64_t dim) {
  __shared__ float warpSum[kReduceWarps][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t c = blockIdx.x * int64_t(32) + lane;
  float sum = 0.0f;
  if (c < dim) {
#pragma unroll 4
    for (int64_t b = warp; b < blocks; b += kReduceWarps)
      sum += partials[b * dim + c];
  }
  warpSum[warp][lane] = sum;
  __syncthreads();
  if (warp == 0 && c < dim) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kReduceWarps; ++w)
      total += warpSum[w][lane];
    dw[c] += total;
  }
}

int64_t backwardBlocks(int64_t rows) {
  return std::min(rows, kMaxBackwardBlocks);
}

} // namespace

Status rmsnormForward(const bf16 *x, const bf16 *residual, bf16 *residualOut,
                      const bf16 *w, bf16 *y, int64_t rows, int64_t dim,
                      float eps, cudaStream_t stream) {
  if (residual && !residualOut)
    return Status::error(errorContext() +
                         "rmsnormForward: residual given without residualOut");
  if (rows == 0 || dim == 0)
    return Status::ok();
  const bool vec = dim % 8 == 0 && aligned16(x) && aligned16(residual) &&
                   aligned16(residualOut) && aligned16(w) && aligned16(y);
  if (vec)
    rmsnormForwardKernel<8><<<rows, kThreads, 0, stream>>>(
        x, residual, residualOut, w, y, dim, eps);
  else
    rmsnormForwardKernel<1><<<rows, kThreads, 0, stream>>>(
        x, residual, residualOut, w, y, dim, eps);
  MT_CUDA_CHECK_LAUNCH("rmsnormForwardKernel");
  return Status::ok();
}

size_t rmsnormBackwardWorkspaceBytes(int64_t rows, int64_t dim) {
  return static_cast<size_t>(backwardBlocks(rows) * dim) * sizeof(float);
}

Status rmsnormBackward(const bf16 *x, const bf16 *w, const bf16 *dy,
                       const bf16 *dresidual, bf16 *dx, float *dw,
                       void *workspace, int64_t rows, int64_t dim, float eps,
                       cudaStream_t stream) {
  if (rows == 0 || dim == 0)
    return Status::ok();
  const int64_t blocks = backwardBlocks(rows);
  const size_t shared = static_cast<size_t>(dim) * sizeof(float);
  auto *partials = static_cast<float *>(workspace);
  const bool vec = dim % 8 == 0 && aligned16(x) && aligned16(w) &&
                   aligned16(dy) && aligned16(dresidual) && aligned16(dx);
  auto kernel = vec ? rmsnormBackwardKernel<8> : rmsnormBackwardKernel<1>;
  // Rows over 12K columns need more than the default 48 KB of shared memory.
  if (shared > 48 * 1024)
    MT_CUDA_CHECK(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(shared)));
  kernel<<<blocks, kThreads, shared, stream>>>(x, w, dy, dresidual, dx,
                                               partials, rows, dim, eps);
  MT_CUDA_CHECK_LAUNCH("rmsnormBackwardKernel");
  reducePartialsKernel<<<(dim + 31) / 32, 32 * kReduceWarps, 0, stream>>>(
      partials, dw, blocks, dim);
  MT_CUDA_CHECK_LAUNCH("reducePartialsKernel");
  return Status::ok();
}

} // namespace mt::cuda
