// Tiled, thread-count-independent sgemm (see Gemm.h).
#include "runtime/cpu/Gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

namespace mt::cpu {

namespace {

/// OpenBLAS's own threads would split a tile's sgemm differently for each
/// thread count. Its pthreads build reads one process-wide count; its
/// OpenMP build reads the calling thread's OpenMP count (set per tile).
void makeBlasSingleThreaded() {
  if (openblas_get_parallel() == 1 && openblas_get_num_threads() != 1)
    openblas_set_num_threads(1);
}

} // namespace

void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, const float *a,
          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0)
    return;
  makeBlasSingleThreaded();
  const int64_t rowTiles = (m + kGemmTile - 1) / kGemmTile;
  const int64_t colTiles = (n + kGemmTile - 1) / kGemmTile;
#pragma omp parallel if (rowTiles * colTiles > 1)
  {
    omp_set_num_threads(1); // this thread's count only: OpenBLAS's OpenMP build
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < rowTiles * colTiles; ++tile) {
      const int64_t i = tile / colTiles * kGemmTile, j = tile % colTiles * kGemmTile;
      const int64_t rows = std::min(kGemmTile, m - i), cols = std::min(kGemmTile, n - j);
      // Row i of op(A) is row i of A, or column i of the stored transpose.
      const float *aTile = transA ? a + i : a + i * lda;
      const float *bTile = transB ? b + j * ldb : b + j;
      cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                  transB ? CblasTrans : CblasNoTrans, rows, cols, k, 1.0f, aTile, lda,
                  bTile, ldb, beta, c + i * ldc + j, ldc);
    }
  }
}

} // namespace mt::cpu
