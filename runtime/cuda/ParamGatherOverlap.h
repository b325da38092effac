// Megatron's overlap_param_gather on the CUDA backend: the distributed
// optimizer's all-gathers of updated weights (plan instructions marked
// `deferred`) leave the optimizer program and run on a communication stream
// at the start of the next forward_backward; the compute stream waits for
// each bucket just before the first instruction that reads its weights.
#ifndef MT_RUNTIME_CUDA_PARAMGATHEROVERLAP_H
#define MT_RUNTIME_CUDA_PARAMGATHEROVERLAP_H

#include "runtime/cuda/Lowering.h"

#include <memory>
#include <vector>

namespace mt::cuda {

class ParamGatherOverlap {
public:
  /// The deferred all_gather instructions of `optimizer`, when every one of
  /// them gathers, in place, a weight bucket of the plan from the rank's
  /// shard view (DeviceArenas::Storage::ShardView: the shard outlives the
  /// optimizer program) and is one lowered step. Null when the optimizer
  /// has none, or one of another shape: then they run in the optimizer.
  /// `optimizerSteps` are the optimizer's lowered steps.
  static Expected<std::unique_ptr<ParamGatherOverlap>>
  plan(const plan::Plan &plan, const plan::Program &forwardBackward,
       const plan::Program &optimizer, const std::vector<Step> &optimizerSteps,
       DeviceArenas &arenas);
  ~ParamGatherOverlap();

  /// The optimizer's steps without the deferred gathers.
  std::vector<Step> withoutGathers(const std::vector<Step> &optimizer) const;
  /// forward_backward's steps after an optimizer step: first the gathers,
  /// forked onto the communication stream, then the program with a wait of
  /// the compute stream for each bucket before its first reader (at once
  /// for a bucket nothing reads).
  std::vector<Step> withGathers(const std::vector<Step> &forwardBackward) const;
  /// The gathers on `stream` itself (the host reads the weights before the
  /// next forward).
  Status gatherNow(cudaStream_t stream) const;
  size_t bucketCount() const;

  struct State; // the communication stream, events and gathers

private:
  explicit ParamGatherOverlap(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_PARAMGATHEROVERLAP_H
