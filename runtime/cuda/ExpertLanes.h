// Side streams for the experts' many small weight-gradient products.
//
// With many experts of few rows each (Qwen3-30B-A3B: 128 experts of ~256
// rows at 1 x 4096), each expert's dW += xᵀ dy is a product of a few
// hundred tokens that fills a fraction of the GPU: on an H200 the 384 such
// products of one layer's backward run at about 94 TFLOP/s one after
// another, each also a few microseconds of the host's time to issue.
// cuBLAS's grouped GEMM cannot add bf16 x bf16 products into
// the fp32 main gradients, so they stay per expert; lanes run them side by
// side instead: each lane a stream with its own cuBLASLt runner (its own
// workspace) and its own host thread that issues its share, forked from
// and joined to the caller's stream by events. Each gradient gets the same
// product as on one stream: the same bits.
#ifndef MT_RUNTIME_CUDA_EXPERTLANES_H
#define MT_RUNTIME_CUDA_EXPERTLANES_H

#include "runtime/cuda/Gemm.h"
#include "runtime/support/Status.h"

#include <cuda_runtime_api.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
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
  /// `lanes` streams and threads (at least 1) on the current device, each
  /// with a runner of `workspaceBytes` choosing its algorithms as `choice`.
  static Expected<std::unique_ptr<ExpertLanes>>
  create(int lanes, GemmRunner::Choice choice, size_t workspaceBytes = size_t(8) << 20);
  ~ExpertLanes();
  ExpertLanes(const ExpertLanes &) = delete;
  ExpertLanes &operator=(const ExpertLanes &) = delete;

  /// Hands `products` to the lanes (product i to lane i % lanes, each
  /// lane's in order), to run after the work already on `stream`; returns
  /// while the lanes' threads issue them. The operands must stay unchanged
  /// until join().
  Status fork(const std::vector<WeightGradient> &products, cudaStream_t stream);
  /// Waits for the lanes' threads to have issued the last fork's products
  /// and makes `stream` wait for them on the GPU; the first error of a lane.
  Status join(cudaStream_t stream);

private:
  struct Lane {
    cudaStream_t stream = nullptr;
    cudaEvent_t done = nullptr;
    std::unique_ptr<GemmRunner> runner;
    std::thread thread;
  };
  ExpertLanes() = default;
  void serve(size_t lane);

  int device_ = 0;
  std::vector<Lane> lanes_;
  cudaEvent_t forked_ = nullptr;
  std::mutex mutex_;
  std::condition_variable work_, finished_;
  std::vector<WeightGradient> products_;
  uint64_t generation_ = 0; // forks so far
  size_t issuing_ = 0;      // lanes still issuing the last fork
  Status error_ = Status::ok();
  bool stop_ = false;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_EXPERTLANES_H
