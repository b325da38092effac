// The warp-level pieces of the flash attention kernels (runtime/cuda/
// Attention.cu): tile sizes, cp.async copies of 64-row tiles into padded
// shared memory, ldmatrix fragments, bf16 mma.sync m16n8k16 with fp32
// accumulators, and the bf16 stores of a warp's rows.
#ifndef MT_RUNTIME_CUDA_FLASHTILES_CUH
#define MT_RUNTIME_CUDA_FLASHTILES_CUH

#include <cuda_bf16.h>

#include <cstdint>

namespace mt::cuda::flash {

using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
/// Query and key rows per tile; each warp owns 16 rows of its block's tile.
constexpr int kBlock = 16 * kWarps;
constexpr float kLog2e = 1.4426950408889634f;

/// Shared-memory row stride in elements: 16 bytes of padding shift each row
/// by four banks, so the eight rows an ldmatrix phase reads hit all banks.
template <int D> constexpr int kSmemStride = D + 8;
template <int D> constexpr int kTileElems = kBlock * kSmemStride<D>;

__device__ __forceinline__ uint32_t smemAddr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// 16 bytes global -> shared; zero-filled when !valid (rows past seq), so
/// padded K/V rows hold zeros rather than stale NaNs.
__device__ __forceinline__ void cpAsync16(void *dst, const void *src,
                                          bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                   smemAddr(dst)),
               "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const bf16 *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}
__device__ __forceinline__ void ldsm4t(uint32_t (&r)[4], const bf16 *p) {
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(smemAddr(p)));
}

/// c += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4],
                                    uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0),
                 "r"(b1));
}

__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}
/// Rows [row0, row0 + kBlock) of a [seq, rowStride] slice into a padded
/// shared tile, rows >= seq zero-filled. Not committed here.
template <int D>
__device__ __forceinline__ void loadTile(bf16 *tile, const bf16 *g,
                                         int64_t rowStride, int row0,
                                         int seq) {
  constexpr int kChunks = D / 8; // 16-byte chunks per row
  for (int c = threadIdx.x; c < kBlock * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = row0 + r < seq;
    const bf16 *src = valid ? g + (row0 + r) * rowStride + col : g;
    cpAsync16(tile + r * kSmemStride<D> + col, src, valid);
  }
}

/// acc[16 x 8*NT] += A[16 x 16*KS] * B^T, A rows at `a` (row-major, padded
/// stride), B stored [n][k] at `b` (row-major): both through ldmatrix.
template <int NT, int KS, int Stride>
__device__ __forceinline__ void gemmNT(float (&acc)[NT][4], const bf16 *a,
                                       const bf16 *b) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    uint32_t af[4];
    ldsm4(af, a + (lane % 16) * Stride + ks * 16 + (lane / 16) * 8);
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t bf[4];
      ldsm4(bf, b + (np * 16 + lane % 8 + (lane / 16) * 8) * Stride +
                    ks * 16 + ((lane / 8) % 2) * 8);
      mma(acc[2 * np], af, bf[0], bf[1]);
      mma(acc[2 * np + 1], af, bf[2], bf[3]);
    }
  }
}

/// gemmNT with A already in registers (ldmatrix fragments, one per k step).
template <int NT, int KS, int Stride>
__device__ __forceinline__ void gemmRegNT(float (&acc)[NT][4],
                                          const uint32_t (&af)[KS][4],
                                          const bf16 *b) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int ks = 0; ks < KS; ++ks)
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t bf[4];
      ldsm4(bf, b + (np * 16 + lane % 8 + (lane / 16) * 8) * Stride +
                    ks * 16 + ((lane / 8) % 2) * 8);
      mma(acc[2 * np], af[ks], bf[0], bf[1]);
      mma(acc[2 * np + 1], af[ks], bf[2], bf[3]);
    }
}

/// 2^x in one instruction (ex2(-inf) = 0); subnormal results flush to 0,
/// far below what a bf16 probability or an fp32 row sum can register.
__device__ __forceinline__ float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/// acc[16 x 8*NT] += P[16 x 16*KS] * B with P the bf16 rounding of an fp32
/// accumulator tile (an m16n8 C fragment pair is an m16k16 A fragment) and
/// B stored [k][n] at `b` (row-major), read transposed by ldmatrix.
template <int NT, int KS, int Stride>
__device__ __forceinline__ void gemmPN(float (&acc)[NT][4],
                                       const float (&p)[2 * KS][4],
                                       const bf16 *b) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    const uint32_t af[4] = {pack(p[2 * ks][0], p[2 * ks][1]),
                            pack(p[2 * ks][2], p[2 * ks][3]),
                            pack(p[2 * ks + 1][0], p[2 * ks + 1][1]),
                            pack(p[2 * ks + 1][2], p[2 * ks + 1][3])};
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t bf[4];
      ldsm4t(bf, b + (ks * 16 + lane % 8 + ((lane / 8) % 2) * 8) * Stride +
                     np * 16 + (lane / 16) * 8);
      mma(acc[2 * np], af, bf[0], bf[1]);
      mma(acc[2 * np + 1], af, bf[2], bf[3]);
    }
  }
}

/// Stores a warp's 16 x D fp32 tile times `mul` as bf16 rows row0 + (0..15)
/// of a [seq, rowStride] slice, rows >= seq skipped; with `add`, adds to
/// the rows' values (in fp32, rounded once).
template <int D>
__device__ __forceinline__ void storeRows(bf16 *g, int64_t rowStride,
                                          int row0, int seq,
                                          const float (&acc)[D / 8][4],
                                          float mulLo, float mulHi, bool add = false) {
  const int lane = threadIdx.x % 32, r = lane / 4, c = 2 * (lane % 4);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + r + 8 * half;
    if (row >= seq)
      continue;
    const float mul = half ? mulHi : mulLo;
    bf16 *dst = g + row * rowStride + c;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      auto *at = reinterpret_cast<__nv_bfloat162 *>(dst + n * 8);
      const float2 was = add ? __bfloat1622float2(*at) : make_float2(0.0f, 0.0f);
      *at = __floats2bfloat162_rn(acc[n][2 * half] * mul + was.x,
                                  acc[n][2 * half + 1] * mul + was.y);
    }
  }
}

} // namespace mt::cuda::flash

#endif // MT_RUNTIME_CUDA_FLASHTILES_CUH
