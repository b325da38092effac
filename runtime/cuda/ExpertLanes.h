// Side streams for the experts' many small weight-gradient products.
//
// With many experts of few rows each (Qwen3-30B-A3B: 128 experts of ~256
// rows at 1 x 4096), each expert's dW += xᵀ dy is a product of a few
// hundred tokens that fills a fraction of the GPU (measured on an H200:
// the 384 such products of one layer's backward run at about 94 TFLOP/s one
// after another). cuBLAS's grouped GEMM cannot add bf16 x bf16 products
// into the fp32 main gradients, so they stay per expert; lanes run them
// side by side instead, each lane a stream with its own cuBLASLt runner
// (its own workspace), forked from and joined to the caller's stream by
// events. The sums are the same products in the same order per gradient:
// the same bits as on one stream.
#ifndef MT_RUNTIME_CUDA_EXPERTLANES_H
#define MT_RUNTIME_CUDA_EXPERTLANES_H

#include "runtime/cuda/Gemm.h"
#include "runtime/support/Status.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

namespace mt::cuda {

/// One weight gradient: dw [out, in] (fp32) += dyᵀ x over `tokens` rows of
/// x [tokens, in] and dy [tokens, out] (GemmRunner::linearBackwardWeight).
struct WeightGradient {
  const bf16 *x, *dy;
  float *dw;
  int64_t tokens, in, out;
};

class ExpertLanes {
public:
  /// `lanes` streams (at least 1), each with a runner of `workspaceBytes`
  /// choosing its algorithms as `choice` says.
  static Expected<std::unique_ptr<ExpertLanes>>
  create(int lanes, GemmRunner::Choice choice, size_t workspaceBytes = size_t(8) << 20);
  ~ExpertLanes();
  ExpertLanes(const ExpertLanes &) = delete;
  ExpertLanes &operator=(const ExpertLanes &) = delete;

  /// Enqueues `products` on the lanes, in order, product i on lane i %
  /// lanes, after the work already on `stream`; join() makes `stream` wait
  /// for them. The operands must stay unchanged until then.
  Status fork(const std::vector<WeightGradient> &products, cudaStream_t stream);
  /// `stream` waits for the lanes' work of the last fork().
  Status join(cudaStream_t stream);

private:
  ExpertLanes() = default;
  std::vector<cudaStream_t> streams_;
  std::vector<std::unique_ptr<GemmRunner>> runners_;
  std::vector<cudaEvent_t> done_;
  cudaEvent_t forked_ = nullptr;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_EXPERTLANES_H
