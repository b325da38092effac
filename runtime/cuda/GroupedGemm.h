// GroupedGemm: cuBLAS's grouped GEMM (cublasGemmGroupedBatchedEx) for the
// linear layer's bf16 products over many groups of rows at once, each group
// with its own weight and row count (the MoE experts): one launch instead
// of one per group. The row counts must be known on the host.
//
// Row-major HF layouts as GemmRunner (runtime/cuda/Gemm.h): group g's rows
// x_g [rows_g, in], its weight w_g [out, in], its result y_g [rows_g, out].
#ifndef MT_RUNTIME_CUDA_GROUPEDGEMM_H
#define MT_RUNTIME_CUDA_GROUPEDGEMM_H

#include "runtime/support/Status.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// One group: `a` the rows read (x, or dy in the backward), `w` its weight
/// [out, in], `y` the rows written (y, or dx), `rows` > 0 of them.
struct GroupedProduct {
  const bf16 *a;
  const bf16 *w;
  bf16 *y;
  int64_t rows;
};

/// Owns a cuBLAS handle. Not thread-safe; calls on one stream, or ordered.
class GroupedGemm {
public:
  static Expected<std::unique_ptr<GroupedGemm>> create();
  ~GroupedGemm();
  GroupedGemm(const GroupedGemm &) = delete;
  GroupedGemm &operator=(const GroupedGemm &) = delete;

  /// Device bytes of the operand addresses of `groups` products (cuBLAS
  /// reads them from device memory).
  static size_t pointerBytes(int64_t groups) { return 3 * sizeof(void *) * size_t(groups); }
  /// Appends the operand addresses of `groups` to `out` (pointerBytes of
  /// them): the caller copies them to the device, several calls' at once,
  /// and passes each call the device address of its first one.
  static void appendAddresses(const std::vector<GroupedProduct> &groups,
                              std::vector<const void *> &out);

  /// y_g[t, o] = sum_i a_g[t, i] w_g[o, i] (GemmRunner::linearForward
  /// without bias); `addresses`: appendAddresses(groups) on the device.
  Status linearForward(const std::vector<GroupedProduct> &groups, int64_t in, int64_t out,
                       void *const *addresses, cudaStream_t stream);
  /// y_g[t, i] (=|+=) sum_o a_g[t, o] w_g[o, i], a_g = dy_g [rows, out],
  /// y_g = dx_g [rows, in] (GemmRunner::linearBackwardInput; accumulating
  /// rounds to bf16 twice, as there).
  Status linearBackwardInput(const std::vector<GroupedProduct> &groups, int64_t in, int64_t out,
                             bool accumulate, void *const *addresses, cudaStream_t stream);

private:
  GroupedGemm() = default;
  /// Column-major D_g (m x rows_g) = op(W_g) A_g + beta D_g, as GemmRunner
  /// maps them.
  Status run(cublasOperation_t transW, int64_t m, int64_t k, int64_t ldw, int64_t lda,
             float beta, const std::vector<GroupedProduct> &groups, void *const *addresses,
             cudaStream_t stream);

  cublasHandle_t handle_ = nullptr;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_GROUPEDGEMM_H
