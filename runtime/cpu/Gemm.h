// The one GEMM of the CPU kernels: OpenBLAS sgemm over fixed tiles of the
// output, so that results do not depend on thread counts.
#ifndef MT_RUNTIME_CPU_GEMM_H
#define MT_RUNTIME_CPU_GEMM_H

#include <cstdint>

namespace mt::cpu {

/// Row-major C[m, n] = op(A)[m, k] * op(B)[k, n] + beta * C, where op(A) is
/// A [m, k] or, with `transA`, the transpose of A [k, m] (likewise B), and
/// lda/ldb/ldc are the row strides of A, B and C as stored.
///
/// C is cut into tiles of kGemmTile x kGemmTile that depend on m and n only;
/// OpenMP threads share the tiles and each tile is one single-threaded
/// sgemm over the whole k. Every element is therefore summed by the same
/// code in the same order for any OpenMP or OpenBLAS thread count (OpenBLAS
/// splitting a call itself changes which of its micro-kernels, with their
/// different summation orders, computes an element: measured with
/// OPENBLAS_CORETYPE=Haswell). Results still differ between BLAS core types
/// (FMA or not, unrolling) within fp32 rounding, as any two GEMMs may.
///
/// Leaves OpenBLAS single-threaded for the process (pthreads builds; an
/// OpenMP build of OpenBLAS runs single-threaded inside the tiles' region).
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, const float *a,
          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/// Side of the square output tiles of gemm(). Measured on a 16-core Xeon
/// (8192 x 2048 x 2048): tiles of 128 / 256 / 512 reach 80-88% / 79% /
/// 82-94% of OpenBLAS splitting the call over 16 threads itself, and 6x
/// one thread; 256 keeps 16 threads busy down to 1024 x 1024 outputs.
inline constexpr int64_t kGemmTile = 256;

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_GEMM_H
