// The grouped GEMM kernel of GroupedGemmKernel.h: one template over the
// operands' majorness (k contiguous or not, which picks the shared-memory
// layout and ldmatrix or ldmatrix.trans), with the grouping (variable rows,
// or variable reduction length for the weight gradients) and the epilogue
// chosen per launch. Tiles load by cp.async per chunk of 8 from addresses
// computed once a tile where every chunk is aligned and wholly in or out of
// bounds (widths multiples of 8), else element by element.
#include "runtime/cuda/GroupedGemmKernel.h"

#include "runtime/cuda/Check.h"
#include "runtime/plan/KernelWorkspace.h"

#include <algorithm>
#include <climits>
#include <string>

namespace mt::cuda {
namespace {

constexpr int kTileM = 128, kTileN = 128, kTileK = 32, kStages = 4, kThreads = 256;
/// Shared-memory rows padded by 8 bf16 (16 bytes): ldmatrix's eight row
/// addresses then fall in distinct banks.
constexpr int kLdK = kTileK + 8, kLdMN = kTileM + 8;
constexpr int kOperandElems = std::max(kTileM * kLdK, kTileK * kLdMN);
constexpr int kSmemBytes = kStages * 2 * kOperandElems * 2;
/// Chunks of 8 per tile row: along k (kMajor) or along i.
constexpr int kChunksK = kTileK / 8, kChunksI = kTileM / 8;
/// The chunks each thread loads per operand and stage.
constexpr int kChunksPerThread = kTileM * kTileK / 8 / kThreads;

/// Operand element (i, k) of expert e: i the output row (A) or column (B),
/// k the reduction index. Stored row-major with k contiguous (kMajor) or i
/// contiguous; `rows` offsets the storage row by the expert's rowStart (the
/// permuted activations), `groupStride` by e (the weights). Two sources of
/// the same layout: k >= kSplit reads p[1] at k - kSplit (two products
/// summed as one); or, when interleaved > 0, i alternates between p[0] and
/// p[1] every 8 (gate and up side by side), `interleaved` rows of each.
/// `vec` (set by launch): every chunk of 8 along the contiguous axis is
/// wholly in or out of bounds, in one source, and 16-byte aligned, so the
/// tile loads are cp.async from per-chunk addresses computed once a tile;
/// `delta` is then p[1] - p[0] in elements.
struct Operand {
  const bf16 *p[2] = {nullptr, nullptr};
  int64_t ld = 0, groupStride = 0;
  int64_t kSplit = INT64_MAX, interleaved = 0, delta = 0;
  bool rows = false, vec = false;
};

enum class Epilogue : int {
  store,      // c = bf16(acc)
  add,        // c = bf16(c + acc)
  swiglu,     // act = bf16(silu(bf16 g) bf16 u), g and u interleaved columns; with p[1], also
              // gatePre (p[1]) = bf16 g, upPre (p[2]) = bf16 u
  gateUp,     // gatePre = bf16 g, upPre = bf16 u
  swigluGrad, // dact = bf16(acc), then the SwiGLU's gradient from src[0] gatePre, src[1] upPre
              // (p[0] d gate, p[1] d up, p[2] act)
  accumF32,   // c (fp32) += acc
};

struct Output {
  void *p[3] = {nullptr, nullptr, nullptr};
  const void *src[2] = {nullptr, nullptr}; // what swigluGrad reads
  int64_t ld = 0, groupStride = 0;
  bool rows = false;
};

struct Params {
  Operand a, b;
  Output c;
  Epilogue epilogue;
  int64_t m, n, k;    // extents; the grouped one (m, or k when varK) unused
  int64_t realN;      // the columns of c (n, or ffn when interleaved)
  bool varK;          // grouped over the reduction (weight gradients)
  int32_t mTiles, nTiles;
  const int32_t *rowStart, *tileStart;
  int32_t experts;
};

/// Index i of an interleaved operand (op.interleaved > 0): its source
/// (p[0] or p[1], alternating every 8) in `src` and its index there in `i`;
/// false past the `interleaved` rows of each.
__device__ bool deinterleave(const Operand &op, int64_t &i, int &src) {
  src = int(i >> 3) & 1;
  i = (i >> 4) * 8 + (i & 7);
  return i < op.interleaved;
}

__device__ const bf16 *elementAt(const Operand &op, bool kMajor, int64_t i, int64_t k, int64_t I,
                                 int64_t K, int64_t e, int64_t rowStart) {
  if (i >= I || k >= K)
    return nullptr;
  int src = 0;
  if (op.interleaved > 0) {
    if (!deinterleave(op, i, src))
      return nullptr;
  } else if (k >= op.kSplit) {
    src = 1;
    k -= op.kSplit;
  }
  int64_t row = kMajor ? i : k, col = kMajor ? k : i;
  if (op.rows)
    row += rowStart;
  return op.p[src] + e * op.groupStride + row * op.ld + col;
}

/// Eight consecutive elements along the contiguous axis into `dst`: one
/// 16-byte cp.async when they are in bounds, contiguous and aligned, else
/// element by element with zeros past the bounds.
__device__ void loadChunk(bf16 *dst, const Operand &op, bool kMajor, int64_t i, int64_t k,
                          int64_t I, int64_t K, int64_t e, int64_t rowStart) {
  const bf16 *first = elementAt(op, kMajor, i, k, I, K, e, rowStart);
  const bf16 *last = elementAt(op, kMajor, kMajor ? i : i + 7, kMajor ? k + 7 : k, I, K, e,
                               rowStart);
  if (first && last == first + 7 && reinterpret_cast<uintptr_t>(first) % 16 == 0) {
    const unsigned s = unsigned(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(first));
    return;
  }
  alignas(16) bf16 v[8];
  for (int j = 0; j < 8; ++j) {
    const bf16 *src = elementAt(op, kMajor, kMajor ? i : i + j, kMajor ? k + j : k, I, K, e,
                                rowStart);
    v[j] = src ? *src : __float2bfloat16(0.0f);
  }
  *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(v);
}

/// One operand's tile [128 x kTileK] at (i0, k0) into shared memory,
/// [128][kLdK] when kMajor, else [kTileK][kLdMN], chunk by chunk with
/// loadChunk: any shape and alignment (the fast loads take the rest).
template <bool KMajor>
__device__ void loadTile(bf16 *s, const Operand &op, int64_t i0, int64_t k0, int64_t I,
                         int64_t K, int64_t e, int64_t rowStart) {
  for (int c = threadIdx.x; c < kChunksPerThread * kThreads; c += kThreads) {
    if (KMajor) {
      const int r = c / kChunksK, kc = (c % kChunksK) * 8;
      loadChunk(s + r * kLdK + kc, op, true, i0 + r, k0 + kc, I, K, e, rowStart);
    } else {
      const int r = c / kChunksI, ic = (c % kChunksI) * 8;
      loadChunk(s + r * kLdMN + ic, op, false, i0 + ic, k0 + r, I, K, e, rowStart);
    }
  }
}

/// The fast loads (Operand::vec): chunk c's k offset in the tile.
template <bool KMajor> __device__ int chunkK(int c) {
  return KMajor ? (c % kChunksK) * 8 : c / kChunksI;
}

/// The fast loads: the address of chunk c's first element at k0 = 0 (its
/// k offset included), null when its row (kMajor) or its 8 columns are past
/// the extent I.
template <bool KMajor>
__device__ const bf16 *chunkBase(const Operand &op, int c, int64_t i0, int64_t I, int64_t e,
                                 int64_t rowStart) {
  int64_t i = i0 + (KMajor ? c / kChunksK : (c % kChunksI) * 8);
  const int64_t k = chunkK<KMajor>(c);
  if (i >= I)
    return nullptr;
  int src = 0;
  if (op.interleaved > 0 && !deinterleave(op, i, src))
    return nullptr;
  const int64_t row = (KMajor ? i : k) + (op.rows ? rowStart : 0), col = KMajor ? k : i;
  return op.p[src] + e * op.groupStride + row * op.ld + col;
}

/// The fast loads of one operand's tile at k0: one cp.async per chunk, zero
/// filled (source size 0) past the extents.
template <bool KMajor>
__device__ void loadTileFast(bf16 *s, const Operand &op,
                             const bf16 *const (&base)[kChunksPerThread], int64_t k0,
                             int64_t K) {
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int c = threadIdx.x + j * kThreads, kc = chunkK<KMajor>(c);
    bf16 *dst = KMajor ? s + (c / kChunksK) * kLdK + kc : s + kc * kLdMN + (c % kChunksI) * 8;
    const int64_t k = k0 + kc, stride = KMajor ? 1 : op.ld;
    const bf16 *src = op.p[0];
    unsigned bytes = 0;
    if (base[j] && k < K) {
      src = base[j] + k0 * stride;
      if (k >= op.kSplit)
        src += op.delta - op.kSplit * stride;
      bytes = 16;
    }
    const unsigned d = unsigned(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(bytes));
  }
}

__device__ void ldmatrixX4(unsigned (&r)[4], const bf16 *p, bool trans) {
  const unsigned s = unsigned(__cvta_generic_to_shared(p));
  if (trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

__device__ void mma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
               "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// One warp's 64 x 32 of the tile from one stage: 2 steps of k 16, each 4
/// A fragments x 4 B fragments.
template <bool AKMajor, bool BKMajor>
__device__ void computeStage(float (&acc)[4][4][4], const bf16 *sA, const bf16 *sB, int wm,
                             int wn, int lane) {
  const int j = lane / 8, r = lane % 8;
#pragma unroll
  for (int kk = 0; kk < kTileK; kk += 16) {
    unsigned a[4][4], b[4][2];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
      const int m0 = wm * 64 + mi * 16;
      const bf16 *p = AKMajor ? sA + (m0 + lane % 16) * kLdK + kk + (lane / 16) * 8
                              : sA + (kk + (j / 2) * 8 + r) * kLdMN + m0 + (j % 2) * 8;
      ldmatrixX4(a[mi], p, !AKMajor);
    }
#pragma unroll
    for (int pair = 0; pair < 2; ++pair) {
      const int n0 = wn * 32 + pair * 16;
      const bf16 *p = BKMajor ? sB + (n0 + (j / 2) * 8 + r) * kLdK + kk + (j % 2) * 8
                              : sB + (kk + (j % 2) * 8 + r) * kLdMN + n0 + (j / 2) * 8;
      unsigned q[4];
      ldmatrixX4(q, p, !BKMajor);
      b[2 * pair][0] = q[0], b[2 * pair][1] = q[1];
      b[2 * pair + 1][0] = q[2], b[2 * pair + 1][1] = q[3];
    }
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
        mma(acc[mi][ni], a[mi], b[ni][0], b[ni][1]);
  }
}

__device__ float sigmoidf(float a) { return 1.0f / (1.0f + expf(-a)); }
__device__ float roundBf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

/// Writes the accumulators of one warp: rows m0 + [0, M), columns n0 + [0,
/// N) of expert e (rowStart its first permuted row).
__device__ void epilogue(const Params &p, float (&acc)[4][4][4], int64_t m0, int64_t n0,
                         int64_t M, int64_t e, int64_t rowStart, int wm, int wn, int lane) {
  const Output &o = p.c;
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m0 + wm * 64 + mi * 16 + lane / 4 + half * 8;
      if (m >= M)
        continue;
      const int64_t row = (o.rows ? rowStart : 0) + m;
      const int64_t base = e * o.groupStride + row * o.ld;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int64_t n = n0 + wn * 32 + ni * 8 + (lane % 4) * 2;
        const float *v = &acc[mi][ni][half * 2];
        if (p.epilogue == Epilogue::swiglu || p.epilogue == Epilogue::gateUp) {
          if (ni % 2 == 1)
            continue; // the up columns, read beside the gate's
          const int64_t col = (n >> 4) * 8 + (n & 7);
          const float *u = &acc[mi][ni + 1][half * 2];
          for (int t = 0; t < 2 && col + t < p.realN; ++t) {
            const float g = roundBf16(v[t]), up = roundBf16(u[t]);
            if (p.epilogue == Epilogue::swiglu) {
              static_cast<bf16 *>(o.p[0])[base + col + t] =
                  __float2bfloat16(g * sigmoidf(g) * up);
              if (o.p[1]) {
                static_cast<bf16 *>(o.p[1])[base + col + t] = __float2bfloat16(g);
                static_cast<bf16 *>(o.p[2])[base + col + t] = __float2bfloat16(up);
              }
            } else {
              static_cast<bf16 *>(o.p[0])[base + col + t] = __float2bfloat16(g);
              static_cast<bf16 *>(o.p[1])[base + col + t] = __float2bfloat16(up);
            }
          }
          continue;
        }
        for (int t = 0; t < 2 && n + t < p.realN; ++t) {
          const int64_t at = base + n + t;
          switch (p.epilogue) {
          case Epilogue::store:
            static_cast<bf16 *>(o.p[0])[at] = __float2bfloat16(v[t]);
            break;
          case Epilogue::add: {
            bf16 *c = static_cast<bf16 *>(o.p[0]) + at;
            *c = __float2bfloat16(__bfloat162float(*c) + v[t]);
            break;
          }
          case Epilogue::swigluGrad: {
            // Both read before either is written: d gate, d up may be in place.
            const float d = roundBf16(v[t]);
            const float a = __bfloat162float(static_cast<const bf16 *>(o.src[0])[at]);
            const float up = __bfloat162float(static_cast<const bf16 *>(o.src[1])[at]);
            const float sig = sigmoidf(a);
            static_cast<bf16 *>(o.p[2])[at] = __float2bfloat16(a * sig * up);
            static_cast<bf16 *>(o.p[0])[at] =
                __float2bfloat16(d * up * sig * (1.0f + a * (1.0f - sig)));
            static_cast<bf16 *>(o.p[1])[at] = __float2bfloat16(d * a * sig);
            break;
          }
          case Epilogue::accumF32:
            static_cast<float *>(o.p[0])[at] += v[t];
            break;
          default:
            break;
          }
        }
      }
    }
}

/// The expert whose row tiles hold global row tile `tile`: the largest e
/// with tileStart[e] <= tile (experts without tiles share their successor's
/// start, so the search lands on the one that has it).
__device__ int expertOfTile(const int32_t *tileStart, int experts, int tile) {
  int lo = 0, hi = experts - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tileStart[mid] <= tile)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

template <bool AKMajor, bool BKMajor>
__global__ void __launch_bounds__(kThreads, 2) groupedGemmKernel(const Params p) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *sA = reinterpret_cast<bf16 *>(smem), *sB = sA + kStages * kOperandElems;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp / 4, wn = warp % 4;
  const int perExpert = p.mTiles * p.nTiles;
  const int total = p.varK ? p.experts * perExpert : p.tileStart[p.experts] * p.nTiles;
  for (int tile = blockIdx.x; tile < total; tile += gridDim.x) {
    int e, mt, nt = tile % p.nTiles;
    if (p.varK) {
      e = tile / perExpert;
      mt = (tile % perExpert) / p.nTiles;
    } else {
      const int rowTile = tile / p.nTiles;
      e = expertOfTile(p.tileStart, p.experts, rowTile);
      mt = rowTile - p.tileStart[e];
    }
    const int64_t rowStart = p.rowStart[e], groupRows = p.rowStart[e + 1] - rowStart;
    const int64_t M = p.varK ? p.m : groupRows, K = p.varK ? groupRows : p.k;
    if (K == 0) // an expert without rows adds nothing to its weight gradient
      continue;
    const int64_t m0 = int64_t(mt) * kTileM, n0 = int64_t(nt) * kTileN;
    const int kTiles = int((K + kTileK - 1) / kTileK);
    float acc[4][4][4] = {};
    const bf16 *baseA[kChunksPerThread], *baseB[kChunksPerThread];
#pragma unroll
    for (int j = 0; j < kChunksPerThread; ++j) {
      const int c = threadIdx.x + j * kThreads;
      baseA[j] = p.a.vec ? chunkBase<AKMajor>(p.a, c, m0, M, e, rowStart) : nullptr;
      baseB[j] = p.b.vec ? chunkBase<BKMajor>(p.b, c, n0, p.n, e, rowStart) : nullptr;
    }
    auto load = [&](int kt) {
      const int stage = kt % kStages;
      const int64_t k0 = int64_t(kt) * kTileK;
      if (p.a.vec)
        loadTileFast<AKMajor>(sA + stage * kOperandElems, p.a, baseA, k0, K);
      else
        loadTile<AKMajor>(sA + stage * kOperandElems, p.a, m0, k0, M, K, e, rowStart);
      if (p.b.vec)
        loadTileFast<BKMajor>(sB + stage * kOperandElems, p.b, baseB, k0, K);
      else
        loadTile<BKMajor>(sB + stage * kOperandElems, p.b, n0, k0, p.n, K, e, rowStart);
    };
    for (int kt = 0; kt < kStages - 1; ++kt) {
      if (kt < kTiles)
        load(kt);
      asm volatile("cp.async.commit_group;\n" ::);
    }
    for (int kt = 0; kt < kTiles; ++kt) {
      asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2));
      __syncthreads();
      if (kt + kStages - 1 < kTiles)
        load(kt + kStages - 1);
      asm volatile("cp.async.commit_group;\n" ::);
      const int stage = kt % kStages;
      computeStage<AKMajor, BKMajor>(acc, sA + stage * kOperandElems,
                                     sB + stage * kOperandElems, wm, wn, lane);
    }
    asm volatile("cp.async.wait_group 0;\n" ::);
    epilogue(p, acc, m0, n0, M, e, rowStart, wm, wn, lane);
    __syncthreads(); // the next tile's loads overwrite the stages
  }
}

__global__ void layoutKernel(const int32_t *counts, int64_t experts, int64_t rows,
                             int32_t *rowStart, int32_t *tileStart) {
  int64_t sum = 0, tiles = 0;
  for (int64_t e = 0; e < experts; ++e) {
    rowStart[e] = int32_t(sum);
    tileStart[e] = int32_t(tiles);
    const int64_t count = counts[e] > 0 ? counts[e] : 0;
    const int64_t c = count < rows - sum ? count : rows - sum;
    sum += c;
    tiles += (c + kTileM - 1) / kTileM;
  }
  rowStart[experts] = int32_t(sum);
  tileStart[experts] = int32_t(tiles);
}

__global__ void zeroTailKernel(bf16 *out, int64_t width, const int32_t *used, int64_t rows) {
  const int64_t begin = int64_t(*used) * width, end = rows * width;
  for (int64_t i = begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < end;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(0.0f);
}

bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

/// Sets op.vec (see Operand) and op.delta. The contiguous axis is k when
/// kMajor, else i; its extent (K or I) must be a multiple of 8, and is -1
/// where it is an expert's row count, which no such rule holds (the other
/// axis's extent may be anything: its chunks are single rows).
void setVectorized(Operand &op, bool kMajor, int64_t I, int64_t K) {
  const int64_t extent = kMajor ? K : I;
  const bool splitOk = op.kSplit == INT64_MAX || op.kSplit % 8 == 0;
  op.vec = extent >= 0 && extent % 8 == 0 && aligned16(op.p[0]) &&
           (!op.p[1] || aligned16(op.p[1])) && op.ld % 8 == 0 && op.groupStride % 8 == 0 &&
           splitOk && op.interleaved % 8 == 0;
  op.delta = op.p[1] ? (reinterpret_cast<intptr_t>(op.p[1]) -
                        reinterpret_cast<intptr_t>(op.p[0])) / intptr_t(sizeof(bf16))
                     : 0;
}

/// Launches the kernel on a persistent grid of 2 CTAs per SM (or fewer
/// when the tiles are fewer: their count is bounded on the host by the
/// rows, the device has the exact one).
template <bool AKMajor, bool BKMajor>
Status launch(Params p, const GroupedLayout &layout, cudaStream_t stream, const char *name) {
  p.rowStart = layout.rowStart;
  p.tileStart = layout.tileStart;
  p.experts = int32_t(layout.experts);
  p.nTiles = int32_t((p.n + kTileN - 1) / kTileN);
  p.mTiles = p.varK ? int32_t((p.m + kTileM - 1) / kTileM) : 0;
  setVectorized(p.a, AKMajor, p.varK ? p.m : -1, p.varK ? -1 : p.k);
  setVectorized(p.b, BKMajor, p.n, p.varK ? -1 : p.k);
  if (layout.experts == 0 || p.n == 0 || (p.varK ? p.m : p.k) == 0)
    return Status::ok();
  const int64_t bound = p.varK ? layout.experts * p.mTiles * p.nTiles
                               : ((layout.rows + kTileM - 1) / kTileM + layout.experts) *
                                     int64_t(p.nTiles);
  if (bound > INT32_MAX)
    return Status::error(errorContext() + std::string(name) + ": " + std::to_string(bound) +
                         " tiles, past the kernel's 32-bit tile index");
  auto kernel = groupedGemmKernel<AKMajor, BKMajor>;
  MT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  int device = 0, sms = 0;
  MT_CUDA_CHECK(cudaGetDevice(&device));
  MT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const unsigned grid = unsigned(std::max<int64_t>(1, std::min<int64_t>(bound, 2 * sms)));
  kernel<<<grid, kThreads, kSmemBytes, stream>>>(p);
  MT_CUDA_CHECK(cudaGetLastError());
  return Status::ok();
}

/// Permuted rows [rows, width] as an operand or an output.
Operand rowsOperand(const bf16 *a, int64_t width) {
  Operand op;
  op.p[0] = a;
  op.ld = width;
  op.rows = true;
  return op;
}

/// The weights [experts, rows, cols] as an operand.
Operand weightOperand(const bf16 *w, int64_t rows, int64_t cols) {
  Operand op;
  op.p[0] = w;
  op.ld = cols;
  op.groupStride = rows * cols;
  return op;
}

Output rowsOutput(void *c, int64_t width) {
  Output o;
  o.p[0] = c;
  o.ld = width;
  o.rows = true;
  return o;
}

Params rowsParams(const Operand &a, const Operand &b, const Output &c, Epilogue epilogue,
                  int64_t n, int64_t k) {
  Params p{};
  p.a = a, p.b = b, p.c = c, p.epilogue = epilogue;
  p.n = p.realN = n, p.k = k;
  return p;
}

} // namespace

size_t groupedLayoutBytes(int64_t experts) { return plan::groupedLayoutBytes(experts); }

Expected<GroupedLayout> groupedLayout(const int32_t *tokensPerExpert, int64_t experts,
                                      int64_t rows, void *scratch, cudaStream_t stream) {
  if (rows > INT32_MAX)
    return Status::error(errorContext() + "grouped GEMM kernel: " + std::to_string(rows) +
                         " rows, past its 32-bit row offsets");
  GroupedLayout l;
  l.rowStart = static_cast<int32_t *>(scratch);
  l.tileStart = reinterpret_cast<int32_t *>(static_cast<char *>(scratch) +
                                            plan::workspacePart(4 * size_t(experts + 1)));
  l.experts = experts;
  l.rows = rows;
  layoutKernel<<<1, 1, 0, stream>>>(tokensPerExpert, experts, rows, l.rowStart, l.tileStart);
  MT_CUDA_CHECK_LAUNCH("moe_grouped_layout");
  return l;
}

Status groupedKernelForward(const bf16 *x, const bf16 *w, bf16 *y, int64_t in, int64_t out,
                            const GroupedLayout &layout, cudaStream_t stream) {
  Params p = rowsParams(rowsOperand(x, in), weightOperand(w, out, in), rowsOutput(y, out),
                        Epilogue::store, out, in);
  return launch<true, true>(p, layout, stream, "moe_grouped_fwd");
}

Status groupedKernelBackwardInput(const bf16 *dy, const bf16 *w, bf16 *dx, int64_t in,
                                  int64_t out, bool accumulate, const GroupedLayout &layout,
                                  cudaStream_t stream) {
  // B (i = input column, k = output row) = w_e [out, in]: i contiguous.
  Params p = rowsParams(rowsOperand(dy, out), weightOperand(w, out, in), rowsOutput(dx, in),
                        accumulate ? Epilogue::add : Epilogue::store, in, out);
  return launch<true, false>(p, layout, stream, "moe_grouped_dgrad");
}

Status groupedKernelBackwardWeight(const bf16 *x, const bf16 *dy, float *dw, int64_t in,
                                   int64_t out, const GroupedLayout &layout, cudaStream_t stream) {
  // A (i = output, k = row) = dy [rows, out], B (i = input, k = row) = x
  // [rows, in]: both i contiguous, k the permuted row.
  Output o;
  o.p[0] = dw;
  o.ld = in;
  o.groupStride = in * out;
  Params p = rowsParams(rowsOperand(dy, out), rowsOperand(x, in), o, Epilogue::accumF32, in, 0);
  p.m = out;
  p.varK = true;
  return launch<false, false>(p, layout, stream, "moe_grouped_wgrad");
}

Status groupedKernelGateUp(const bf16 *x, const bf16 *gate, const bf16 *up, bf16 *act,
                           bf16 *gatePre, bf16 *upPre, int64_t hidden, int64_t ffn,
                           const GroupedLayout &layout, cudaStream_t stream) {
  Operand w = weightOperand(gate, ffn, hidden);
  w.p[1] = up;
  w.interleaved = ffn;
  Output o = rowsOutput(act ? act : gatePre, ffn);
  o.p[1] = act ? gatePre : upPre;
  o.p[2] = act ? upPre : nullptr;
  if (act && (gatePre == nullptr) != (upPre == nullptr))
    return Status::error(errorContext() + "moe_grouped_gate_up: gatePre and upPre go together");
  // Columns interleaved by 8 (gate, up, gate, ...): 2 ffn rounded up to 16.
  Params p = rowsParams(rowsOperand(x, hidden), w, o, act ? Epilogue::swiglu : Epilogue::gateUp,
                        (ffn + 7) / 8 * 16, hidden);
  p.realN = ffn;
  return launch<true, true>(p, layout, stream, "moe_grouped_gate_up");
}

Status groupedKernelSwigluBackward(const bf16 *dy, const bf16 *down, const bf16 *gatePre,
                                   const bf16 *upPre, bf16 *dGate, bf16 *dUp, bf16 *act,
                                   int64_t hidden, int64_t ffn, const GroupedLayout &layout,
                                   cudaStream_t stream) {
  Output o = rowsOutput(dGate, ffn);
  o.p[1] = dUp;
  o.p[2] = act;
  o.src[0] = gatePre;
  o.src[1] = upPre;
  Params p = rowsParams(rowsOperand(dy, hidden), weightOperand(down, hidden, ffn), o,
                        Epilogue::swigluGrad, ffn, hidden);
  return launch<true, false>(p, layout, stream, "moe_grouped_swiglu_bwd");
}

Status groupedKernelGateUpBackwardInput(const bf16 *dGate, const bf16 *dUp, const bf16 *gate,
                                        const bf16 *up, bf16 *dx, bool accumulate,
                                        int64_t hidden, int64_t ffn,
                                        const GroupedLayout &layout, cudaStream_t stream) {
  Operand a = rowsOperand(dGate, ffn), b = weightOperand(gate, ffn, hidden);
  a.p[1] = dUp;
  b.p[1] = up;
  a.kSplit = b.kSplit = ffn;
  Params p = rowsParams(a, b, rowsOutput(dx, hidden), accumulate ? Epilogue::add : Epilogue::store,
                        hidden, 2 * ffn);
  return launch<true, false>(p, layout, stream, "moe_grouped_dgrad_gate_up");
}

Status groupedZeroTail(bf16 *out, int64_t width, const GroupedLayout &layout,
                       cudaStream_t stream) {
  if (layout.rows * width == 0)
    return Status::ok();
  zeroTailKernel<<<unsigned(std::min<int64_t>((layout.rows * width + 255) / 256, 4096)), 256, 0,
                   stream>>>(out, width, layout.rowStart + layout.experts, layout.rows);
  MT_CUDA_CHECK_LAUNCH("moe_grouped_zero_tail");
  return Status::ok();
}

} // namespace mt::cuda
