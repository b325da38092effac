// SwiGLU, qkv split, rotary, embedding, cast and fill kernels (bf16 storage, fp32
// math), each a grid-stride loop with 16-byte accesses where the shape and
// pointers allow and a scalar fallback for odd shapes.
#include "runtime/cuda/Elementwise.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/GridStride.cuh"
#include "runtime/cuda/Vector.cuh"
#include "runtime/plan/KernelWorkspace.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mt::cuda {

namespace {

using vec::aligned16;
using vec::load;
using vec::store;

using grid::gridFor;
using grid::groupStart;
using grid::groupStride;
using grid::kThreads;
using grid::launchVectorized;

/// Where element i of a [rows, dim] SwiGLU output finds its gate in a
/// packed [rows, 2 dim] gate | up tensor (up is `dim` later).
__device__ __forceinline__ int64_t packedGateIndex(int64_t i, int64_t dim) {
  return i + i / dim * dim;
}

/// silu(g) * u in PyTorch's silu form; the forward and the recomputing
/// backward both use it, so their bits agree.
__device__ __forceinline__ float swigluValue(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

/// y = silu(gate) * up for V consecutive elements.
template <int V>
__device__ __forceinline__ void swigluGroup(const bf16 *gate, const bf16 *up, bf16 *y) {
  float g[V], u[V];
  load<V>(gate, g);
  load<V>(up, u);
#pragma unroll
  for (int k = 0; k < V; ++k)
    g[k] = swigluValue(g[k], u[k]);
  store<V>(y, g);
}

/// dgate, dup of V consecutive elements and, when `y` is given, the
/// forward's output again from the same loads.
template <int V>
__device__ __forceinline__ void swigluGradGroup(const bf16 *gate, const bf16 *up,
                                                const bf16 *dy, bf16 *dgate, bf16 *dup,
                                                bf16 *y = nullptr) {
  float g[V], u[V], d[V], dg[V], du[V];
  load<V>(gate, g);
  load<V>(up, u);
  load<V>(dy, d);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const float s = 1.0f / (1.0f + expf(-g[k]));
    dg[k] = d[k] * u[k] * (s * (1.0f + g[k] * (1.0f - s)));
    du[k] = d[k] * (g[k] * s);
  }
  store<V>(dgate, dg);
  store<V>(dup, du);
  if (y) {
#pragma unroll
    for (int k = 0; k < V; ++k)
      d[k] = swigluValue(g[k], u[k]);
    store<V>(y, d);
  }
}

template <int V>
__global__ void swigluForwardKernel(const bf16 *gate, const bf16 *up, bf16 *y,
                                    int64_t n) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>())
    swigluGroup<V>(gate + i, up + i, y + i);
}

template <int V>
__global__ void swigluBackwardKernel(const bf16 *gate, const bf16 *up,
                                     const bf16 *dy, bf16 *dgate, bf16 *dup,
                                     int64_t n) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>())
    swigluGradGroup<V>(gate + i, up + i, dy + i, dgate + i, dup + i);
}

/// Packed [rows, 2 dim] gate | up; V divides dim, so a group stays in a row.
template <int V>
__global__ void chunkedSwigluForwardKernel(const bf16 *x, bf16 *y, int64_t n, int64_t dim) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    const bf16 *gate = x + packedGateIndex(i, dim);
    swigluGroup<V>(gate, gate + dim, y + i);
  }
}

template <int V>
__global__ void chunkedSwigluBackwardKernel(const bf16 *x, const bf16 *dy, bf16 *dx,
                                            bf16 *y, int64_t n, int64_t dim) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    const int64_t g = packedGateIndex(i, dim);
    swigluGradGroup<V>(x + g, x + g + dim, dy + i, dx + g, dx + g + dim, y ? y + i : nullptr);
  }
}

/// Where element i of a packed [rows, qDim + 2 kvDim] qkv tensor lies in
/// its part: q, k or v (0, 1, 2) and the index there.
struct QkvPlace {
  int part;
  int64_t index;
};

__device__ __forceinline__ QkvPlace qkvPlace(int64_t i, int64_t qDim, int64_t kvDim) {
  const int64_t dim = qDim + 2 * kvDim, row = i / dim, c = i % dim;
  if (c < qDim)
    return {0, row * qDim + c};
  if (c < qDim + kvDim)
    return {1, row * kvDim + c - qDim};
  return {2, row * kvDim + c - qDim - kvDim};
}

/// V divides qDim and kvDim, so a group stays in one part of a row.
template <int V>
__global__ void splitQkvKernel(const bf16 *x, bf16 *q, bf16 *k, bf16 *v, int64_t n,
                               int64_t qDim, int64_t kvDim) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    const QkvPlace p = qkvPlace(i, qDim, kvDim);
    float e[V];
    load<V>(x + i, e);
    store<V>((p.part == 0 ? q : p.part == 1 ? k : v) + p.index, e);
  }
}

template <int V>
__global__ void concatQkvKernel(const bf16 *dq, const bf16 *dk, const bf16 *dv, bf16 *x,
                                int64_t n, int64_t qDim, int64_t kvDim) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    const QkvPlace p = qkvPlace(i, qDim, kvDim);
    float e[V];
    load<V>((p.part == 0 ? dq : p.part == 1 ? dk : dv) + p.index, e);
    store<V>(x + i, e);
  }
}

/// (x1, x2) rotated by the angle of (c, sn). The products and the sum are
/// rounded separately (no FMA), as the CPU reference computes them.
__device__ __forceinline__ float2 rotate(float x1, float x2, float c, float sn) {
  return make_float2(__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, sn)),
                     __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, sn)));
}

/// P = 2: each thread rotates pairs (i, i + half) and (i + 1, i + 1 + half)
/// with 4-byte bf16x2 accesses (half even); P = 1: one pair per thread.
/// kPositions: the angle's position is the token's position id (packed
/// documents), else its index in the row. Token t's heads start at element
/// t * stride + offset of x (xSpan) and of y (ySpan).
template <int P, bool kPositions>
__global__ void rotaryKernel(const bf16 *x, bf16 *y, const float2 *cosSin,
                             int64_t groups, int64_t seq, int64_t heads, int64_t half,
                             float sign, const int32_t *positions, int64_t tableRows,
                             RowSpan xSpan, RowSpan ySpan) {
  const int64_t perHead = half / P;
  for (int64_t g = groupStart<1>(); g < groups; g += groupStride<1>()) {
    const int64_t i = (g % perHead) * P;
    const int64_t rowHead = g / perHead; // (row, head) flattened
    const int64_t token = rowHead / heads, head = rowHead % heads;
    // Packed documents or a context-parallel slice: the token's position
    // id, kept inside the table.
    int64_t s = token % seq;
    if constexpr (kPositions)
      s = min(max(int64_t(positions[token]), int64_t(0)), tableRows - 1);
    const int64_t inHead = head * 2 * half + i;
    const int64_t from = token * xSpan.stride + xSpan.offset + inHead;
    const int64_t to = token * ySpan.stride + ySpan.offset + inHead;
    if constexpr (P == 2) {
      const float4 cs = *reinterpret_cast<const float4 *>(cosSin + s * half + i);
      const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(x + from));
      const float2 b =
          __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(x + from + half));
      const float2 r0 = rotate(a.x, b.x, cs.x, sign * cs.y);
      const float2 r1 = rotate(a.y, b.y, cs.z, sign * cs.w);
      *reinterpret_cast<__nv_bfloat162 *>(y + to) = __floats2bfloat162_rn(r0.x, r1.x);
      *reinterpret_cast<__nv_bfloat162 *>(y + to + half) = __floats2bfloat162_rn(r0.y, r1.y);
    } else {
      const float2 cs = cosSin[s * half + i];
      const float2 r = rotate(__bfloat162float(x[from]), __bfloat162float(x[from + half]),
                              cs.x, sign * cs.y);
      y[to] = __float2bfloat16_rn(r.x);
      y[to + half] = __float2bfloat16_rn(r.y);
    }
  }
}

/// q and k rotated, v copied, for split_qkv_rotary and rotary_concat_qkv in
/// one launch: a warp per token, lane l on chunk l % kChunks (eight pairs,
/// 16-byte accesses) of every (32 / kChunks)-th head, the token's cos/sin of
/// that chunk loaded once for all its heads. The same rotate() on the same
/// table entries as rotaryKernel, so the same bits.
template <int kChunks, bool kPositions>
__global__ void __launch_bounds__(kThreads)
    rotaryQkvKernel(QkvRotaryParts p, const float2 *cosSin, int64_t tokens, int64_t seq,
                    int heads, int kvHeads, float sign, const int32_t *positions,
                    int64_t tableRows) {
  constexpr int kHalf = kChunks * 8, kHeadLanes = 32 / kChunks;
  const int lane = threadIdx.x % 32, chunk = lane % kChunks, headLane = lane / kChunks;
  const int64_t warps = int64_t(gridDim.x) * kThreads / 32;
  for (int64_t token = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / 32; token < tokens;
       token += warps) {
    int64_t s = token % seq;
    if constexpr (kPositions)
      s = min(max(int64_t(positions[token]), int64_t(0)), tableRows - 1);
    float c[8], sn[8];
    const auto *entries = reinterpret_cast<const float4 *>(cosSin + s * kHalf + chunk * 8);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float4 e = entries[i];
      c[2 * i] = e.x, sn[2 * i] = sign * e.y, c[2 * i + 1] = e.z, sn[2 * i + 1] = sign * e.w;
    }
    for (int part = 0; part < 2; ++part) {
      const bf16 *from = p.from[part] + token * p.fromSpan[part].stride +
                         p.fromSpan[part].offset + chunk * 8;
      bf16 *to = p.to[part] + token * p.toSpan[part].stride + p.toSpan[part].offset + chunk * 8;
      for (int h = headLane; h < (part == 0 ? heads : kvHeads); h += kHeadLanes) {
        float a[8], b[8];
        load<8>(from + h * 2 * kHalf, a);
        load<8>(from + h * 2 * kHalf + kHalf, b);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float2 r = rotate(a[k], b[k], c[k], sn[k]);
          a[k] = r.x, b[k] = r.y;
        }
        store<8>(to + h * 2 * kHalf, a);
        store<8>(to + h * 2 * kHalf + kHalf, b);
      }
    }
    const bf16 *from = p.from[2] + token * p.fromSpan[2].stride + p.fromSpan[2].offset;
    bf16 *to = p.to[2] + token * p.toSpan[2].stride + p.toSpan[2].offset;
    for (int64_t i = lane * 8; i < int64_t(kvHeads) * 2 * kHalf; i += 32 * 8) {
      float e[8];
      load<8>(from + i, e);
      store<8>(to + i, e);
    }
  }
}

/// Rows of `width` columns from x to y, V elements per access.
template <int V>
__global__ void copyRowsKernel(const bf16 *x, RowSpan xSpan, bf16 *y, RowSpan ySpan,
                               int64_t rows, int64_t width) {
  const int64_t n = rows * width;
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    const int64_t row = i / width, c = i % width;
    float e[V];
    load<V>(x + row * xSpan.stride + xSpan.offset + c, e);
    store<V>(y + row * ySpan.stride + ySpan.offset + c, e);
  }
}

template <int V>
__global__ void embeddingForwardKernel(const int32_t *ids, const bf16 *table,
                                       bf16 *y, int64_t tokens, int64_t hidden,
                                       int64_t vocabStart, int64_t localVocab) {
  const int64_t n = tokens * hidden;
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    const int64_t t = i / hidden, c = i % hidden;
    const int64_t row = int64_t(ids[t]) - vocabStart;
    const bool held = row >= 0 && row < localVocab; // else another rank's row: 0
    const bf16 *src = table + row * hidden + c;
    if constexpr (V == 8)
      *reinterpret_cast<uint4 *>(y + i) =
          held ? *reinterpret_cast<const uint4 *>(src) : make_uint4(0, 0, 0, 0);
    else
      y[i] = held ? *src : __float2bfloat16(0.0f);
  }
}

__global__ void embeddingFirstKernel(const int32_t *ids, int32_t *first,
                                     int64_t tokens, int64_t vocabStart,
                                     int64_t localVocab) {
  for (int64_t t = groupStart<1>(); t < tokens; t += groupStride<1>()) {
    const int64_t row = int64_t(ids[t]) - vocabStart;
    if (row >= 0 && row < localVocab)
      atomicMin(first + row, static_cast<int32_t>(t));
  }
}

/// Columns handled by one thread per tile of the embedding backward.
constexpr int kEmbedCols = 8;

/// Column e of this thread's tile: contiguous (V = 8, 16-byte accesses) or
/// strided by the block (V = 1, coalesced scalars).
template <int V>
__device__ __forceinline__ int64_t embedColumn(int64_t tile, int e) {
  return V == 8 ? tile + threadIdx.x * kEmbedCols + e
                : tile + int64_t(e) * kThreads + threadIdx.x;
}

/// Block t owns row ids[t] if t is that id's first token; it adds the dy of
/// every later token with the same id, in token order, tile by tile.
template <int V>
__global__ void __launch_bounds__(kThreads)
    embeddingBackwardKernel(const int32_t *ids, const bf16 *dy, float *dtable,
                            const int32_t *first, int64_t tokens,
                            int64_t hidden, int64_t vocabStart, int64_t localVocab,
                            float scale) {
  __shared__ int32_t matches[kThreads];
  __shared__ int32_t warpCount[kThreads / 32];
  const int64_t owner = blockIdx.x;
  const int32_t id = ids[owner];
  const int64_t local = int64_t(id) - vocabStart;
  if (local < 0 || local >= localVocab || first[local] != owner)
    return; // the whole block leaves together
  float *row = dtable + local * hidden;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t tile = 0; tile < hidden; tile += kThreads * kEmbedCols) {
    // V = 8: hidden % 8 == 0, so a thread's 8 columns are all in or all out.
    const bool inRow = V == 8 ? embedColumn<V>(tile, 0) < hidden : true;
    float acc[kEmbedCols];
    if constexpr (V == 8) {
      if (inRow)
        load<8>(row + embedColumn<V>(tile, 0), acc);
    } else {
#pragma unroll
      for (int e = 0; e < kEmbedCols; ++e) {
        const int64_t c = embedColumn<V>(tile, e);
        acc[e] = c < hidden ? row[c] : 0.0f;
      }
    }
    for (int64_t window = owner; window < tokens; window += kThreads) {
      const int64_t j = window + threadIdx.x;
      const bool match = j < tokens && ids[j] == id;
      // Compact the matching tokens of this window, keeping token order.
      const unsigned ballot = __ballot_sync(0xffffffffu, match);
      if (lane == 0)
        warpCount[warp] = __popc(ballot);
      __syncthreads();
      int before = 0, total = 0;
      for (int w = 0; w < kThreads / 32; ++w) {
        before += w < warp ? warpCount[w] : 0;
        total += warpCount[w];
      }
      if (match)
        matches[before + __popc(ballot & ((1u << lane) - 1))] = int32_t(j);
      __syncthreads();
      for (int k = 0; k < total; ++k) {
        const bf16 *src = dy + int64_t(matches[k]) * hidden;
        if constexpr (V == 8) {
          if (inRow) {
            float v[8];
            load<8>(src + embedColumn<V>(tile, 0), v);
#pragma unroll
            for (int e = 0; e < 8; ++e)
              acc[e] += scale * v[e]; // scale 1: exactly acc + v
          }
        } else {
#pragma unroll
          for (int e = 0; e < kEmbedCols; ++e) {
            const int64_t c = embedColumn<V>(tile, e);
            if (c < hidden)
              acc[e] += scale * __bfloat162float(src[c]);
          }
        }
      }
      __syncthreads(); // matches and warpCount are rewritten next window
    }
    if constexpr (V == 8) {
      if (inRow)
        store<8>(row + embedColumn<V>(tile, 0), acc);
    } else {
#pragma unroll
      for (int e = 0; e < kEmbedCols; ++e) {
        const int64_t c = embedColumn<V>(tile, e);
        if (c < hidden)
          row[c] = acc[e];
      }
    }
  }
}

/// fp32 -> bf16 (round to nearest even) or bf16 -> fp32 (exact).
template <int V, typename In, typename Out>
__global__ void castKernel(const In *in, Out *out, int64_t n) {
  for (int64_t i = groupStart<V>(); i < n; i += groupStride<V>()) {
    float v[V];
    load<V>(in + i, v);
    store<V>(out + i, v);
  }
}

/// splitmix64 of (seed, index): a uniform in [0, 1) with 24 random bits.
__device__ __forceinline__ float uniformAt(uint64_t seed, int64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + uint64_t(i) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (1.0f / 16777216.0f);
}

template <typename T>
__global__ void fillUniformKernel(T *x, int64_t n, uint64_t seed, float lo,
                                  float hi) {
  for (int64_t i = groupStart<1>(); i < n; i += groupStride<1>()) {
    const float v = lo + (hi - lo) * uniformAt(seed, i);
    if constexpr (std::is_same_v<T, bf16>)
      x[i] = __float2bfloat16_rn(v);
    else
      x[i] = v;
  }
}

} // namespace

Status swigluForward(const bf16 *gate, const bf16 *up, bf16 *y, int64_t n,
                     cudaStream_t stream) {
  return launchVectorized<8>(aligned16(gate) && aligned16(up) && aligned16(y), n,
                          swigluForwardKernel<8>, swigluForwardKernel<1>, stream,
                          gate, up, y, n);
}

Status swigluBackward(const bf16 *gate, const bf16 *up, const bf16 *dy,
                      bf16 *dgate, bf16 *dup, int64_t n, cudaStream_t stream) {
  const bool aligned = aligned16(gate) && aligned16(up) && aligned16(dy) &&
                       aligned16(dgate) && aligned16(dup);
  return launchVectorized<8>(aligned, n, swigluBackwardKernel<8>,
                          swigluBackwardKernel<1>, stream, gate, up, dy, dgate,
                          dup, n);
}

Status chunkedSwigluForward(const bf16 *x, bf16 *y, int64_t rows, int64_t dim,
                            cudaStream_t stream) {
  const bool aligned = aligned16(x) && aligned16(y) && dim % 8 == 0;
  return launchVectorized<8>(aligned, rows * dim, chunkedSwigluForwardKernel<8>,
                             chunkedSwigluForwardKernel<1>, stream, x, y, rows * dim, dim);
}

Status chunkedSwigluBackward(const bf16 *x, const bf16 *dy, bf16 *dx, int64_t rows,
                             int64_t dim, cudaStream_t stream, bf16 *y) {
  const bool aligned = aligned16(x) && aligned16(dy) && aligned16(dx) && aligned16(y) &&
                       dim % 8 == 0;
  return launchVectorized<8>(aligned, rows * dim, chunkedSwigluBackwardKernel<8>,
                             chunkedSwigluBackwardKernel<1>, stream, x, dy, dx, y,
                             rows * dim, dim);
}

Status splitQkv(const bf16 *x, bf16 *q, bf16 *k, bf16 *v, int64_t rows, int64_t qDim,
                int64_t kvDim, cudaStream_t stream) {
  const bool aligned = aligned16(x) && aligned16(q) && aligned16(k) && aligned16(v) &&
                       qDim % 8 == 0 && kvDim % 8 == 0;
  const int64_t n = rows * (qDim + 2 * kvDim);
  return launchVectorized<8>(aligned, n, splitQkvKernel<8>, splitQkvKernel<1>, stream, x, q,
                             k, v, n, qDim, kvDim);
}

Status concatQkv(const bf16 *dq, const bf16 *dk, const bf16 *dv, bf16 *x, int64_t rows,
                 int64_t qDim, int64_t kvDim, cudaStream_t stream) {
  const bool aligned = aligned16(dq) && aligned16(dk) && aligned16(dv) && aligned16(x) &&
                       qDim % 8 == 0 && kvDim % 8 == 0;
  const int64_t n = rows * (qDim + 2 * kvDim);
  return launchVectorized<8>(aligned, n, concatQkvKernel<8>, concatQkvKernel<1>, stream, dq,
                             dk, dv, x, n, qDim, kvDim);
}

Expected<RotaryTable> RotaryTable::create(const kernels::RotaryParams &params,
                                          int64_t maxSeq, int64_t headDim) {
  if (headDim <= 0 || headDim % 2 != 0 || maxSeq <= 0)
    return Status::error(errorContext() + "RotaryTable: headDim (" +
                         std::to_string(headDim) + ") must be even and > 0, " +
                         "maxSeq (" + std::to_string(maxSeq) + ") > 0");
  const int64_t half = headDim / 2;
  std::vector<double> invFreq(half);
  kernels::rotaryInverseFrequencies(params, headDim, invFreq.data());
  std::vector<float2> host(static_cast<size_t>(maxSeq * half));
  for (int64_t s = 0; s < maxSeq; ++s)
    for (int64_t i = 0; i < half; ++i) {
      float2 &cosSin = host[s * half + i];
      kernels::rotaryCosSin(s, invFreq[i], cosSin.x, cosSin.y);
    }
  RotaryTable table;
  MT_CUDA_CHECK(cudaMalloc(&table.cosSin_, host.size() * sizeof(float2)));
  table.maxSeq_ = maxSeq;
  table.headDim_ = headDim;
  MT_CUDA_CHECK(cudaMemcpy(table.cosSin_, host.data(),
                           host.size() * sizeof(float2), cudaMemcpyHostToDevice));
  return Expected<RotaryTable>(std::move(table)); // nvcc: no implicit move here
}

RotaryTable::RotaryTable(RotaryTable &&other) noexcept {
  *this = std::move(other);
}

RotaryTable &RotaryTable::operator=(RotaryTable &&other) noexcept {
  if (this != &other) {
    if (cosSin_)
      (void)cudaFree(cosSin_); // a destructor path: nothing to report to
    cosSin_ = std::exchange(other.cosSin_, nullptr);
    maxSeq_ = std::exchange(other.maxSeq_, 0);
    headDim_ = std::exchange(other.headDim_, 0);
  }
  return *this;
}

RotaryTable::~RotaryTable() {
  if (cosSin_)
    (void)cudaFree(cosSin_);
}

/// A RowSpan with its stride filled in for a dense operand of `width` columns.
static RowSpan spanOf(RowSpan span, int64_t width) {
  return span.stride == 0 ? RowSpan{width, 0} : span;
}

static Status rotaryApply(const bf16 *x, bf16 *y, int64_t batch, int64_t seq,
                          int64_t heads, const RotaryTable &table, float sign,
                          cudaStream_t stream, const int32_t *positions, RowSpan xSpan,
                          RowSpan ySpan) {
  if (seq > table.maxSeq())
    return Status::error(errorContext() + "rotary: seq (" + std::to_string(seq) +
                         ") exceeds the table's maxSeq (" +
                         std::to_string(table.maxSeq()) + ")");
  const int64_t half = table.headDim() / 2;
  const int64_t pairs = batch * seq * heads * half;
  if (pairs == 0)
    return Status::ok();
  xSpan = spanOf(xSpan, heads * 2 * half);
  ySpan = spanOf(ySpan, heads * 2 * half);
  auto aligned4 = [](const void *p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; };
  auto even = [](RowSpan r) { return r.stride % 2 == 0 && r.offset % 2 == 0; };
  // Unpacked rows compile without the position-id load.
  const bool pairwise =
      half % 2 == 0 && aligned4(x) && aligned4(y) && even(xSpan) && even(ySpan);
  const int64_t groups = pairwise ? pairs / 2 : pairs;
  auto kernel = pairwise ? (positions ? rotaryKernel<2, true> : rotaryKernel<2, false>)
                         : (positions ? rotaryKernel<1, true> : rotaryKernel<1, false>);
  kernel<<<gridFor(groups), kThreads, 0, stream>>>(x, y, table.cosSin(), groups, seq, heads,
                                                   half, sign, positions, table.maxSeq(),
                                                   xSpan, ySpan);
  MT_CUDA_CHECK_LAUNCH("rotaryKernel");
  return Status::ok();
}

Status rotaryForward(const bf16 *x, bf16 *y, int64_t batch, int64_t seq,
                     int64_t heads, const RotaryTable &table,
                     cudaStream_t stream, const int32_t *positionIds, RowSpan xSpan,
                     RowSpan ySpan) {
  return rotaryApply(x, y, batch, seq, heads, table, 1.0f, stream, positionIds, xSpan, ySpan);
}

Status rotaryBackward(const bf16 *dy, bf16 *dx, int64_t batch, int64_t seq,
                      int64_t heads, const RotaryTable &table,
                      cudaStream_t stream, const int32_t *positionIds, RowSpan dySpan,
                      RowSpan dxSpan) {
  return rotaryApply(dy, dx, batch, seq, heads, table, -1.0f, stream, positionIds, dySpan,
                     dxSpan);
}

Status rotaryQkv(QkvRotaryParts parts, int64_t batch, int64_t seq, int64_t heads,
                 int64_t kvHeads, const RotaryTable &table, bool backward,
                 cudaStream_t stream, const int32_t *positionIds) {
  const int64_t headDim = table.headDim(), tokens = batch * seq;
  const int64_t widths[3] = {heads * headDim, kvHeads * headDim, kvHeads * headDim};
  bool vectorized = true;
  for (int i = 0; i < 3; ++i) {
    parts.fromSpan[i] = spanOf(parts.fromSpan[i], widths[i]);
    parts.toSpan[i] = spanOf(parts.toSpan[i], widths[i]);
    for (RowSpan r : {parts.fromSpan[i], parts.toSpan[i]})
      vectorized = vectorized && r.stride % 8 == 0 && r.offset % 8 == 0;
    vectorized = vectorized && aligned16(parts.from[i]) && aligned16(parts.to[i]);
  }
  const int64_t chunks = headDim / 16; // eight pairs of a head's halves per lane
  if (seq > table.maxSeq() || headDim % 16 != 0 || chunks > 8 || !vectorized ||
      (chunks & (chunks - 1)) != 0) {
    const float sign = backward ? -1.0f : 1.0f;
    for (int i = 0; i < 2; ++i)
      MT_CUDA_RETURN_IF_ERROR(rotaryApply(parts.from[i], parts.to[i], batch, seq,
                                          i == 0 ? heads : kvHeads, table, sign, stream,
                                          positionIds, parts.fromSpan[i], parts.toSpan[i]));
    return copyRows(parts.from[2], parts.fromSpan[2], parts.to[2], parts.toSpan[2], tokens,
                    widths[2], stream);
  }
  if (tokens == 0)
    return Status::ok();
  auto pick = [&](auto kernelOf) {
    switch (chunks) {
    case 1: return kernelOf(std::integral_constant<int, 1>{});
    case 2: return kernelOf(std::integral_constant<int, 2>{});
    case 4: return kernelOf(std::integral_constant<int, 4>{});
    default: return kernelOf(std::integral_constant<int, 8>{});
    }
  };
  auto kernel = pick([&](auto c) {
    return positionIds ? rotaryQkvKernel<decltype(c)::value, true>
                       : rotaryQkvKernel<decltype(c)::value, false>;
  });
  const int64_t blocks = std::min<int64_t>((tokens * 32 + kThreads - 1) / kThreads, 1 << 20);
  kernel<<<blocks, kThreads, 0, stream>>>(parts, table.cosSin(), tokens, seq, int(heads),
                                          int(kvHeads), backward ? -1.0f : 1.0f, positionIds,
                                          table.maxSeq());
  MT_CUDA_CHECK_LAUNCH("rotaryQkvKernel");
  return Status::ok();
}

Status copyRows(const bf16 *x, RowSpan xSpan, bf16 *y, RowSpan ySpan, int64_t rows,
                int64_t width, cudaStream_t stream) {
  xSpan = spanOf(xSpan, width);
  ySpan = spanOf(ySpan, width);
  auto by8 = [](RowSpan r) { return r.stride % 8 == 0 && r.offset % 8 == 0; };
  const bool aligned =
      width % 8 == 0 && by8(xSpan) && by8(ySpan) && aligned16(x) && aligned16(y);
  return launchVectorized<8>(aligned, rows * width, copyRowsKernel<8>, copyRowsKernel<1>,
                             stream, x, xSpan, y, ySpan, rows, width);
}

Status embeddingForward(const int32_t *ids, const bf16 *table, bf16 *y,
                        int64_t tokens, int64_t hidden, cudaStream_t stream,
                        int64_t vocabStart, int64_t localVocab) {
  const int64_t n = tokens * hidden;
  return launchVectorized<8>(hidden % 8 == 0 && aligned16(table) && aligned16(y), n,
                          embeddingForwardKernel<8>, embeddingForwardKernel<1>,
                          stream, ids, table, y, tokens, hidden, vocabStart, localVocab);
}

size_t embeddingBackwardWorkspaceBytes(int64_t vocab) {
  return size_t(plan::embeddingBackwardWorkspaceBytes(vocab));
}

Status embeddingBackward(const int32_t *ids, const bf16 *dy, float *dtable,
                         void *workspace, int64_t tokens, int64_t vocab,
                         int64_t hidden, cudaStream_t stream, int64_t vocabStart,
                         float scale) {
  if (tokens == 0 || hidden == 0)
    return Status::ok();
  if (tokens > INT32_MAX - 1)
    return Status::error(errorContext() + "embeddingBackward: tokens (" +
                         std::to_string(tokens) + ") must fit in int32");
  auto *first = static_cast<int32_t *>(workspace);
  // 0x7f7f7f7f: larger than any token index, so atomicMin finds the first.
  MT_CUDA_CHECK(cudaMemsetAsync(first, 0x7f, embeddingBackwardWorkspaceBytes(vocab),
                                stream));
  embeddingFirstKernel<<<gridFor(tokens), kThreads, 0, stream>>>(ids, first, tokens,
                                                                 vocabStart, vocab);
  MT_CUDA_CHECK_LAUNCH("embeddingFirstKernel");
  if (hidden % 8 == 0 && aligned16(dy) && aligned16(dtable))
    embeddingBackwardKernel<8><<<tokens, kThreads, 0, stream>>>(
        ids, dy, dtable, first, tokens, hidden, vocabStart, vocab, scale);
  else
    embeddingBackwardKernel<1><<<tokens, kThreads, 0, stream>>>(
        ids, dy, dtable, first, tokens, hidden, vocabStart, vocab, scale);
  MT_CUDA_CHECK_LAUNCH("embeddingBackwardKernel");
  return Status::ok();
}

template <typename In, typename Out>
static Status cast(const In *in, Out *out, int64_t n, cudaStream_t stream) {
  return launchVectorized<8>(aligned16(in) && aligned16(out), n,
                          castKernel<8, In, Out>, castKernel<1, In, Out>, stream,
                          in, out, n);
}

Status castFloatToBf16(const float *in, bf16 *out, int64_t n,
                       cudaStream_t stream) {
  return cast(in, out, n, stream);
}

Status castBf16ToFloat(const bf16 *in, float *out, int64_t n,
                       cudaStream_t stream) {
  return cast(in, out, n, stream);
}

template <typename T>
static Status fill(T *x, int64_t n, uint64_t seed, float lo, float hi,
                   cudaStream_t stream) {
  if (n == 0)
    return Status::ok();
  fillUniformKernel<T><<<gridFor(n), kThreads, 0, stream>>>(x, n, seed, lo, hi);
  MT_CUDA_CHECK_LAUNCH("fillUniformKernel");
  return Status::ok();
}

Status fillUniform(float *x, int64_t n, uint64_t seed, float lo, float hi,
                   cudaStream_t stream) {
  return fill(x, n, seed, lo, hi, stream);
}

Status fillUniform(bf16 *x, int64_t n, uint64_t seed, float lo, float hi,
                   cudaStream_t stream) {
  return fill(x, n, seed, lo, hi, stream);
}

} // namespace mt::cuda
