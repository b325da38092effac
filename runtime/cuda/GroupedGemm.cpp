// GroupedGemm: the experts' bf16 products through cublasGemmGroupedBatchedEx,
// mapped from row-major HF layouts to cuBLAS's column-major as Gemm.cpp.
#include "runtime/cuda/GroupedGemm.h"

#include "runtime/cuda/Check.h"

#include <limits>
#include <string>

namespace mt::cuda {

Expected<std::unique_ptr<GroupedGemm>> GroupedGemm::create() {
  std::unique_ptr<GroupedGemm> gemm(new GroupedGemm());
  MT_CUBLAS_CHECK(cublasCreate(&gemm->handle_));
  return gemm;
}

GroupedGemm::~GroupedGemm() {
  if (handle_)
    (void)cublasDestroy(handle_);
}

void GroupedGemm::appendAddresses(const std::vector<GroupedProduct> &groups,
                                  std::vector<const void *> &out) {
  for (const GroupedProduct &g : groups)
    out.push_back(g.w);
  for (const GroupedProduct &g : groups)
    out.push_back(g.a);
  for (const GroupedProduct &g : groups)
    out.push_back(g.y);
}

// As GemmRunner::linearForward: yᵀ (O x T) = W_cᵀ X_c, W_c (I x O, ld I)
// transposed, X_c (I x T, ld I): m = O, k = I.
Status GroupedGemm::linearForward(const std::vector<GroupedProduct> &groups, int64_t in,
                                  int64_t out, void *const *addresses, cudaStream_t stream) {
  return run(CUBLAS_OP_T, out, in, in, in, 0.0f, groups, addresses, stream);
}

// As GemmRunner::linearBackwardInput: dxᵀ (I x T) = W_c (I x O, ld I) dyᵀ
// (O x T, ld O): m = I, k = O.
Status GroupedGemm::linearBackwardInput(const std::vector<GroupedProduct> &groups, int64_t in,
                                        int64_t out, bool accumulate, void *const *addresses,
                                        cudaStream_t stream) {
  return run(CUBLAS_OP_N, in, out, in, out, accumulate ? 1.0f : 0.0f, groups, addresses,
             stream);
}

Status GroupedGemm::run(cublasOperation_t transW, int64_t m, int64_t k, int64_t ldw,
                        int64_t lda, float beta, const std::vector<GroupedProduct> &groups,
                        void *const *addresses, cudaStream_t stream) {
  const size_t count = groups.size();
  if (count == 0 || m == 0)
    return Status::ok();
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  if (m > kMax || k > kMax || count > size_t(kMax))
    return Status::error(errorContext() + "grouped GEMM of m=" + std::to_string(m) + " k=" +
                         std::to_string(k) + " over " + std::to_string(count) +
                         " groups: past cuBLAS's 32-bit sizes");
  // One group of one product per expert: a cuBLAS group shares its sizes
  // and scalars, and each expert has its own row count.
  std::vector<int> rows(count), ms(count, int(m)), ks(count, int(k)), ldws(count, int(ldw)),
      ldas(count, int(lda)), ldds(count, int(m)), sizes(count, 1);
  std::vector<cublasOperation_t> transWs(count, transW), transAs(count, CUBLAS_OP_N);
  std::vector<float> alphas(count, 1.0f), betas(count, beta);
  for (size_t g = 0; g < count; ++g) {
    if (groups[g].rows <= 0 || groups[g].rows > kMax)
      return Status::error(errorContext() + "grouped GEMM group " + std::to_string(g) +
                           " has " + std::to_string(groups[g].rows) + " rows");
    rows[g] = int(groups[g].rows);
  }
  MT_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  MT_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
      handle_, transWs.data(), transAs.data(), ms.data(), rows.data(), ks.data(), alphas.data(),
      addresses, CUDA_R_16BF, ldws.data(), addresses + count, CUDA_R_16BF, ldas.data(),
      betas.data(), addresses + 2 * count, CUDA_R_16BF, ldds.data(), int(count), sizes.data(),
      CUBLAS_COMPUTE_32F));
  return Status::ok();
}

} // namespace mt::cuda
