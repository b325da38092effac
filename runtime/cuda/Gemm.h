// GemmRunner: the linear layer's three matrix products on cuBLASLt, bf16
// operands with fp32 accumulation (Megatron's precision contract).
//
// Row-major throughout, Hugging Face weight layout: x [tokens, in],
// w [out, in], y [tokens, out]. Gradients follow runtime/cpu/Dense.h:
//   forward        y  = x wᵀ (+ bias)              bf16 out
//   backward input dx = dy w   (or dx += dy w)     bf16 out
//   backward weight dW += dyᵀ x                    fp32 main gradient
#ifndef MT_RUNTIME_CUDA_GEMM_H
#define MT_RUNTIME_CUDA_GEMM_H

#include "runtime/support/Status.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// Owns a cuBLASLt handle, a workspace on the current device and the
/// descriptors and algorithm chosen for each shape seen, token counts in
/// buckets of 64 (the heuristic query costs more than a small product, and
/// the experts' row counts change at every step). Not thread-safe: use one runner per
/// thread; the stream of each call may differ, but calls sharing one runner
/// share its workspace, so they must be ordered (same stream, or events).
class GemmRunner {
public:
  /// 32 MiB is what NVIDIA recommends for Hopper cuBLASLt.
  static constexpr size_t kDefaultWorkspaceBytes = size_t(32) << 20;
  static Expected<GemmRunner> create(size_t workspaceBytes = kDefaultWorkspaceBytes);

  /// How a new product's algorithm is chosen. Heuristic: cuBLASLt's first
  /// answer (the same on every run). Timed: cuBLASLt's first kCandidates
  /// answers are timed once, on private scratch operands in the stream of
  /// the product's first call made outside graph capture, and the fastest
  /// replaces the first only where it is at least kTimedMargin faster
  /// (timing noise rarely flips a choice, but it can: two runs may then
  /// differ in the last bits). Verbose: Timed, with a line per product on
  /// stderr (shape, first answer's and chosen time).
  enum class Choice { Heuristic, Timed, Verbose };
  static constexpr int kCandidates = 8;
  static constexpr double kTimedMargin = 0.03;
  void setChoice(Choice choice) { choice_ = choice; }
  Choice choice() const { return choice_; }

  GemmRunner(GemmRunner &&other) noexcept;
  GemmRunner &operator=(GemmRunner &&other) noexcept;
  GemmRunner(const GemmRunner &) = delete;
  GemmRunner &operator=(const GemmRunner &) = delete;
  ~GemmRunner();

  /// y[t, o] = sum_i x[t, i] w[o, i] (+ bias[o]); bias [out] bf16 or null.
  Status linearForward(const bf16 *x, const bf16 *w, const bf16 *bias, bf16 *y,
                       int64_t tokens, int64_t in, int64_t out,
                       cudaStream_t stream);
  /// dx[t, i] = sum_o dy[t, o] w[o, i]; with accumulate, dx += that through
  /// cuBLASLt's beta = 1 on bf16 C, which rounds to bf16 twice (measured on
  /// H100: up to one bf16 ulp off the once-rounded sum).
  Status linearBackwardInput(const bf16 *dy, const bf16 *w, bf16 *dx,
                             int64_t tokens, int64_t in, int64_t out,
                             cudaStream_t stream, bool accumulate = false);
  /// dw[o, i] += sum_t dy[t, o] x[t, i], dw fp32 (the main gradient);
  /// without accumulate, dw = that (beta = 0: dw is not read).
  Status linearBackwardWeight(const bf16 *x, const bf16 *dy, float *dw,
                              int64_t tokens, int64_t in, int64_t out,
                              cudaStream_t stream, bool accumulate = true);

private:
  enum class Op { Forward, ForwardBias, BackwardInput, BackwardWeight };
  /// Descriptors and algorithm of one (op, shape, pointer alignment)
  /// product. `tokens`: the token count its layouts hold now (the plan
  /// serves every count of its bucket; run() resizes them).
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    int64_t tokens = 0;
    /// cuBLASLt's answers after the first, until timed (Choice::Timed).
    std::vector<cublasLtMatmulAlgo_t> candidates;
  };
  /// (op, m, n, k with the token count rounded up to its bucket, the
  /// smallest alignment in bytes of the four pointers, whether the plan
  /// is for the exact count: the fallback when the bucket's algorithm
  /// refuses it).
  using Key = std::tuple<Op, int64_t, int64_t, int64_t, int64_t, bool>;
  /// Column-major view of one product: D (m x n) = op(A) op(B) (+ beta C).
  struct Problem {
    cublasOperation_t transA, transB;
    int64_t m, n, k, lda, ldb, ldc;
    cudaDataType_t abType, cdType;
    bool bias;
  };

  GemmRunner() = default;
  Expected<Plan *> plan(const Key &key, const Problem &problem);
  static Status destroyPlan(Plan &plan);
  /// Sets `plan`'s layouts to `tokens` tokens (the columns of the operands
  /// and results that hold them: tokensOf's dimension).
  static Status resize(Op op, Plan &plan, int64_t tokens);
  Status run(Op op, const Problem &problem, const void *a, const void *b,
             void *d, float beta, const void *bias, cudaStream_t stream);
  /// Times `plan`'s algorithm and its candidates on scratch operands of
  /// `problem`'s sizes (never the caller's buffers: they may be live) and
  /// keeps the fastest as Choice says; the candidates are dropped either way.
  /// Scratch that cannot be allocated leaves the first answer.
  Status timeCandidates(Plan &plan, const Problem &problem, float beta, cudaStream_t stream);
  void release();

  cublasLtHandle_t handle_ = nullptr;
  void *workspace_ = nullptr;
  size_t workspaceBytes_ = 0;
  std::map<Key, Plan> plans_;
  Choice choice_ = Choice::Heuristic;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_GEMM_H
