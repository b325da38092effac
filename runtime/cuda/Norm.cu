// RMSNorm kernels. A row is handled by a group of threads: a whole block
// for wide rows, one warp for rows of at most kWarpRowMaxDim columns (the
// per-head q/k norms of Qwen3: head_dim 128), where a block would leave
// most of its threads idle and wait at a barrier per row. The forward
// gives each group one row; the backward gives each group a fixed run of
// rows and reduces dw from per-group partials in a fixed order
// (deterministic, no atomics). Rows of 1280 to 4096 columns take a warp
// each in the backward too, with dw summed in registers.
#include "runtime/cuda/Norm.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/Vector.cuh"
#include "runtime/plan/KernelWorkspace.h"

#include <algorithm>
#include <initializer_list>

namespace mt::cuda {

namespace {

using vec::aligned16;
using vec::aligned8;
using vec::load;
using vec::store;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
static_assert(kWarps == plan::kRmsnormWarpsPerBlock);
/// Rows up to this many columns are handled by one warp each.
constexpr int64_t kWarpRowMaxDim = plan::kRmsnormWarpRowMaxDim;
constexpr int64_t kMaxBackwardBlocks = plan::kRmsnormMaxBackwardBlocks;
/// Warps of the partials reduction; each sums every kReduceWarps-th block.
constexpr int kReduceWarps = 32;

bool warpRows(int64_t dim) { return dim <= kWarpRowMaxDim; }

/// Elements per thread access: 8 (16 bytes) where the row and pointers
/// allow; 4 (8 bytes) for rows of at most 128 columns, so that a warp's 32
/// lanes all hold part of the row; else 1.
int vectorWidth(int64_t dim, std::initializer_list<const void *> pointers) {
  bool all16 = true, all8 = true;
  for (const void *p : pointers) {
    all16 &= aligned16(p);
    all8 &= aligned8(p);
  }
  if (dim % 4 == 0 && all8 && dim <= 128)
    return 4;
  if (dim % 8 == 0 && all16)
    return 8;
  return dim % 4 == 0 && all8 && warpRows(dim) ? 4 : 1;
}

/// The threads that share a row: a warp, or the whole block.
template <bool kWarp> struct RowGroup {
  static constexpr int kSize = kWarp ? 32 : kThreads;
  __device__ static int rank() { return kWarp ? threadIdx.x % 32 : threadIdx.x; }
  /// This group's index in the grid, and the grid's group count.
  __device__ static int64_t index() {
    return kWarp ? blockIdx.x * int64_t(kWarps) + threadIdx.x / 32 : blockIdx.x;
  }
  __device__ static int64_t count() { return gridDim.x * int64_t(kWarp ? kWarps : 1); }
  /// This group's slice of a per-group array of `n` floats in shared memory.
  __device__ static float *shared(float *base, int64_t n) {
    return kWarp ? base + (threadIdx.x / 32) * n : base;
  }
};

/// Sum over the warp of (a, b); every lane gets the result.
__device__ float2 warpSum(float a, float b) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    a += __shfl_xor_sync(0xffffffffu, a, offset);
    b += __shfl_xor_sync(0xffffffffu, b, offset);
  }
  return make_float2(a, b);
}

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

template <bool kWarp> __device__ float2 groupSum(float a, float b) {
  return kWarp ? warpSum(a, b) : blockSum(a, b);
}

template <int V, bool kWarp>
__global__ void __launch_bounds__(kThreads)
    rmsnormForwardKernel(const bf16 *x, const bf16 *residual, bf16 *residualOut,
                         const bf16 *w, bf16 *y, int64_t rows, int64_t dim, float eps) {
  using Group = RowGroup<kWarp>;
  const int64_t row = Group::index();
  if (row >= rows) // whole warps only: the block variant has no spare rows
    return;
  const int64_t base = row * dim;
  // The normalized input: x, or the bf16-rounded x + residual.
  const bf16 *in = residual ? residualOut + base : x + base;
  float sumSq = 0.0f;
  for (int64_t c = Group::rank() * V; c < dim; c += Group::kSize * V) {
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
  const float inv = rsqrtf(groupSum<kWarp>(sumSq, 0.0f).x / dim + eps);
  // Each thread re-reads only the elements it wrote (or read) above.
  for (int64_t c = Group::rank() * V; c < dim; c += Group::kSize * V) {
    float v[V], g[V];
    load<V>(in + c, v);
    load<V>(w + c, g);
#pragma unroll
    for (int i = 0; i < V; ++i)
      v[i] = g[i] * (v[i] * inv); // HF order: weight * (x * rsqrt)
    store<V>(y + base + c, v);
  }
}

/// Rows [first, last) of one group; its dw partial sums live in dynamic
/// shared memory, each column owned by one thread (no races, no atomics).
template <int V, bool kWarp>
__global__ void __launch_bounds__(kThreads)
    rmsnormBackwardKernel(const bf16 *x, const bf16 *w, const bf16 *dy,
                          const bf16 *dresidual, bf16 *dx, float *partials,
                          int64_t rows, int64_t dim, float eps) {
  using Group = RowGroup<kWarp>;
  extern __shared__ float sharedPartials[];
  float *dwPartial = Group::shared(sharedPartials, dim);
  const int rank = Group::rank();
  constexpr int64_t kStride = Group::kSize * V;
  for (int64_t c = rank * V; c < dim; c += kStride)
#pragma unroll
    for (int i = 0; i < V; ++i)
      dwPartial[c + i] = 0.0f;
  const int64_t group = Group::index(), groups = Group::count();
  const int64_t perGroup = (rows + groups - 1) / groups;
  const int64_t first = group * perGroup;
  const int64_t last = min(rows, first + perGroup);
  for (int64_t row = first; row < last; ++row) {
    const int64_t base = row * dim;
    float sumSq = 0.0f, dot = 0.0f;
    for (int64_t c = rank * V; c < dim; c += kStride) {
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
    const float2 sums = groupSum<kWarp>(sumSq, dot);
    const float inv = rsqrtf(sums.x / dim + eps);
    // dx = inv * (w * dy) - x * inv^3 / dim * sum(w * dy * x)
    const float coef = sums.y * inv * inv * inv / dim;
    for (int64_t c = rank * V; c < dim; c += kStride) {
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
  if constexpr (kWarp) {
    // The block's warps' partials, summed in warp order: one row per block.
    __syncthreads();
    for (int64_t c = threadIdx.x; c < dim; c += kThreads) {
      float total = 0.0f;
      for (int w = 0; w < kWarps; ++w)
        total += sharedPartials[w * dim + c];
      partials[blockIdx.x * dim + c] = total;
    }
  } else {
    for (int64_t c = rank * V; c < dim; c += kStride)
#pragma unroll
      for (int i = 0; i < V; ++i)
        partials[blockIdx.x * dim + c + i] = dwPartial[c + i];
  }
}

/// Warps per block of the wide-row backward.
constexpr int kWideWarps = 4;
/// Wide rows (1024 < dim <= 256 * kMaxN, dim % 256 == 0, 16-byte aligned):
/// one warp per row, lane l owning the 8-column vectors l, l + 32, ... of
/// every row. The lane keeps its part of x and dy in registers from the
/// row sums to the gradient, so each row is read from memory once (not
/// again from L1, which the block's shared memory leaves small), and adds
/// its dw terms into its own words of the warp's slot of shared memory
/// ([8][dim / 8], so that the lanes touch consecutive words): no races, the
/// same order of additions as in registers. The block's warps then add
/// their slots in warp order into its partial row.
template <int kMaxN>
__global__ void __launch_bounds__(32 * kWideWarps, kMaxN <= 8 ? 4 : 2)
    rmsnormBackwardWideKernel(const bf16 *x, const bf16 *w, const bf16 *dy,
                              const bf16 *dresidual, bf16 *dx, float *partials,
                              int64_t rows, int64_t dim, float eps) {
  extern __shared__ float blockPartial[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int n = int(dim / 256);
  const int64_t vecs = dim / 8;
  float *slot = blockPartial + warp * dim;
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) {
    if (j >= n)
      break;
#pragma unroll
    for (int i = 0; i < 8; ++i)
      slot[i * vecs + 32 * j + lane] = 0.0f;
  }
  const int64_t warps = int64_t(gridDim.x) * kWideWarps;
  const int64_t perWarp = (rows + warps - 1) / warps;
  const int64_t first = (int64_t(blockIdx.x) * kWideWarps + warp) * perWarp;
  const int64_t last = min(rows, first + perWarp);
  const uint4 *wr = reinterpret_cast<const uint4 *>(w) + lane;
  for (int64_t row = first; row < last; ++row) {
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + row * dim) + lane;
    const uint4 *gr = reinterpret_cast<const uint4 *>(dy + row * dim) + lane;
    uint4 xs[kMaxN], gs[kMaxN];
#pragma unroll
    for (int j = 0; j < kMaxN; ++j)
      if (j < n) {
        xs[j] = xr[32 * j];
        gs[j] = gr[32 * j];
      }
    float sumSq = 0.0f, dot = 0.0f;
#pragma unroll
    for (int j = 0; j < kMaxN; ++j) {
      if (j >= n)
        break;
      float xv[8], gv[8], wv[8];
      vec::unpack8(xs[j], xv);
      vec::unpack8(gs[j], gv);
      vec::unpack8(wr[32 * j], wv);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        sumSq += xv[i] * xv[i];
        dot += gv[i] * wv[i] * xv[i];
      }
    }
    const float2 sums = warpSum(sumSq, dot);
    const float inv = rsqrtf(sums.x / dim + eps);
    const float coef = sums.y * inv * inv * inv / dim;
    uint4 *out = reinterpret_cast<uint4 *>(dx + row * dim) + lane;
    const uint4 *rr =
        dresidual ? reinterpret_cast<const uint4 *>(dresidual + row * dim) + lane : nullptr;
#pragma unroll
    for (int j = 0; j < kMaxN; ++j) {
      if (j >= n)
        break;
      float xv[8], gv[8], wv[8], o[8];
      vec::unpack8(xs[j], xv);
      vec::unpack8(gs[j], gv);
      vec::unpack8(wr[32 * j], wv);
      if (rr)
        vec::unpack8(rr[32 * j], o);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float grad = inv * (wv[i] * gv[i]) - xv[i] * coef;
        o[i] = rr ? o[i] + grad : grad;
        slot[i * vecs + 32 * j + lane] += gv[i] * (xv[i] * inv);
      }
      out[32 * j] = vec::pack8(o);
    }
  }
  // Each thread adds the warps' slots of its 8-column vectors in warp order
  // into the block's partial row.
  __syncthreads();
  for (int64_t v = threadIdx.x; v < vecs; v += 32 * kWideWarps) {
    float sum[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      sum[i] = blockPartial[i * vecs + v];
      for (int w = 1; w < kWideWarps; ++w)
        sum[i] += blockPartial[w * dim + i * vecs + v];
    }
    float4 *out = reinterpret_cast<float4 *>(partials + blockIdx.x * dim + v * 8);
    out[0] = make_float4(sum[0], sum[1], sum[2], sum[3]);
    out[1] = make_float4(sum[4], sum[5], sum[6], sum[7]);
  }
}

/// dw[c] += sum over blocks b of partials[b, c]. Lane = column (coalesced);
/// warp w sums blocks w, w + kReduceWarps, ... in order, then warp 0 adds
/// the warps' sums in warp order: a fixed order, so every run gives the same bits.
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

/// Rows for rmsnormBackwardWideKernel, where every pointer is 16-byte aligned.
bool wideRows(int64_t dim) { return dim > kWarpRowMaxDim && dim <= 4096 && dim % 256 == 0; }

/// Rows each warp of rmsnormBackwardWideKernel takes at least, so that
/// its dw sums in registers pay for the block's combining of them.
constexpr int64_t kWideRowsPerWarp = 4;

/// Blocks of the backward, one dw partial row each (fixed by the shape and
/// kernel alone, so the partials are summed in the same order everywhere);
/// `wide`: rmsnormBackwardWideKernel's (as many as the block kernel's at most).
int64_t backwardBlocks(int64_t rows, int64_t dim, bool wide = false) {
  if (wide)
    return std::min((rows + kWideWarps * kWideRowsPerWarp - 1) / (kWideWarps * kWideRowsPerWarp),
                    kMaxBackwardBlocks);
  return plan::rmsnormBackwardBlocks(rows, dim);
}

template <int V, bool kWarp>
void launchForward(const bf16 *x, const bf16 *residual, bf16 *residualOut, const bf16 *w,
                   bf16 *y, int64_t rows, int64_t dim, float eps, cudaStream_t stream) {
  const int64_t blocks = kWarp ? (rows + kWarps - 1) / kWarps : rows;
  rmsnormForwardKernel<V, kWarp><<<blocks, kThreads, 0, stream>>>(
      x, residual, residualOut, w, y, rows, dim, eps);
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
  const bool warp = warpRows(dim);
  auto launch = warp ? launchForward<1, true> : launchForward<1, false>;
  switch (vectorWidth(dim, {x, residual, residualOut, w, y})) {
  case 8:
    launch = warp ? launchForward<8, true> : launchForward<8, false>;
    break;
  case 4:
    launch = launchForward<4, true>;
    break;
  }
  launch(x, residual, residualOut, w, y, rows, dim, eps, stream);
  MT_CUDA_CHECK_LAUNCH("rmsnormForwardKernel");
  return Status::ok();
}

size_t rmsnormBackwardWorkspaceBytes(int64_t rows, int64_t dim) {
  return size_t(plan::rmsnormBackwardWorkspaceBytes(rows, dim));
}

Status rmsnormBackward(const bf16 *x, const bf16 *w, const bf16 *dy,
                       const bf16 *dresidual, bf16 *dx, float *dw,
                       void *workspace, int64_t rows, int64_t dim, float eps,
                       cudaStream_t stream) {
  if (rows == 0 || dim == 0)
    return Status::ok();
  const bool warp = warpRows(dim);
  const int vector = vectorWidth(dim, {x, w, dy, dresidual, dx});
  const bool wide = wideRows(dim) && vector == 8;
  const int64_t blocks = backwardBlocks(rows, dim, wide);
  auto *partials = static_cast<float *>(workspace);
  auto kernel = warp ? rmsnormBackwardKernel<1, true> : rmsnormBackwardKernel<1, false>;
  int threads = kThreads;
  size_t shared = static_cast<size_t>(dim * (warp ? kWarps : 1)) * sizeof(float);
  if (wide) {
    kernel = dim <= 2048 ? rmsnormBackwardWideKernel<8> : rmsnormBackwardWideKernel<16>;
    threads = 32 * kWideWarps;
    shared = size_t(kWideWarps * dim) * sizeof(float);
  } else if (vector == 8) {
    kernel = warp ? rmsnormBackwardKernel<8, true> : rmsnormBackwardKernel<8, false>;
  } else if (vector == 4) {
    kernel = rmsnormBackwardKernel<4, true>;
  }
  // Over 48 KB of dynamic shared memory (rows over 12K columns; wide rows
  // over 3K) is opted into.
  if (shared > 48 * 1024)
    MT_CUDA_CHECK(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(shared)));
  kernel<<<blocks, threads, shared, stream>>>(x, w, dy, dresidual, dx, partials, rows, dim,
                                              eps);
  MT_CUDA_CHECK_LAUNCH("rmsnormBackwardKernel");
  reducePartialsKernel<<<(dim + 31) / 32, 32 * kReduceWarps, 0, stream>>>(
      partials, dw, blocks, dim);
  MT_CUDA_CHECK_LAUNCH("reducePartialsKernel");
  return Status::ok();
}

} // namespace mt::cuda
