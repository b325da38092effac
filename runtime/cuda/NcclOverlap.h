// Megatron's overlap_grad_reduce on the CUDA backend: the data-parallel
// all-reduces (or, with the distributed optimizer, the reduce-scatters of
// its gradient buckets) that open the optimizer program start, in buckets,
// during the last micro-batch's backward, each on a communication stream as
// soon as the compute stream has enqueued the last write of its gradients;
// the compute stream waits for the last bucket at the end of that backward.
// The last micro-batch's embedding gradient can stay sparse until its
// bucket is reduced (CudaOptions::sparseEmbeddingGrad).
// Buckets follow runtime/plan/GradientBuckets.h; a plan with
// grad_reduce_in_bf16 has them summed in bf16; --profile-comm times them.
#ifndef MT_RUNTIME_CUDA_NCCLOVERLAP_H
#define MT_RUNTIME_CUDA_NCCLOVERLAP_H

#include "runtime/cuda/CommProfile.h"
#include "runtime/cuda/Lowering.h"

#include <memory>
#include <vector>

namespace mt::cuda {

class NcclCommunicator;

class GradientReduceOverlap {
public:
  /// The buckets of `optimizer`'s leading all_reduce instructions, when
  /// they all reduce fp32 gradients in place over one NCCL group with one
  /// operation, in fp32 or, where the plan says so (grad_reduce_in_bf16),
  /// rounded to bf16 in a scratch buffer of the largest bucket: in the order
  /// `forwardBackward` finishes their gradients, of about `bucketElements`
  /// each (Megatron's bucket_size; formGradientBuckets in
  /// runtime/plan/GradientBuckets.h has the rule). Leading reduce_scatter
  /// instructions of the plan's gradient buckets (the distributed
  /// optimizer) are one bucket each, started after the last write of any
  /// of their members. Null when the programs have another shape (no
  /// leading reduction, pipelines): then nothing overlaps.
  /// With `sparseEmbeddingGrad` (CudaOptions::sparseEmbeddingGrad), the
  /// last embedding_grad into a gradient that fp32 all-reduces leave in
  /// place (plan::reducedGradientWrites says which) keeps its rows sparse:
  /// its bucket starts after its other writers (for a tied embedding, the
  /// output layer's weight-gradient GEMM early in backward), and the ranks'
  /// ids and dy rows are all-gathered and added after it (State::SparseRows).
  /// Not with the distributed optimizer's reduce-scatters nor with
  /// grad_reduce_in_bf16 (the rows would have to be added to a shard or to
  /// bf16 sums), nor for a vocab-parallel table (tp); grad_offload (its
  /// staged gradients are no GRADIENTS buffers) and pipelines have no
  /// overlap at all.
  /// `order` is the order forwardBackward's instructions are issued in
  /// (Lowerer::order); `optimizerSteps` are the optimizer's lowered steps.
  static Expected<std::unique_ptr<GradientReduceOverlap>>
  plan(const plan::Plan &plan, const plan::Program &forwardBackward,
       const std::vector<int> &order, const plan::Program &optimizer,
       const std::vector<Step> &optimizerSteps, const exec::RankContext &rank,
       DeviceArenas &arenas, size_t bucketElements, bool sparseEmbeddingGrad);
  ~GradientReduceOverlap();

  /// forward_backward's steps with each bucket's launch after the step of
  /// its last gradient write (the sparse writer's step replaced by the copy
  /// of its rows, their gather and addition after its bucket's launch and
  /// that copy), then a wait of the compute stream for the communication
  /// stream's work. They can be captured as one CUDA graph (NCCL supports
  /// capture; the communication stream forks from and joins the compute
  /// stream through events), after an eager first run has let NCCL connect.
  std::vector<Step> withReductions(const std::vector<Step> &forwardBackward) const;
  /// The optimizer's steps without its all-reduce steps.
  std::vector<Step> withoutReductions(const std::vector<Step> &optimizer) const;
  size_t bucketCount() const;
  /// --profile-comm: timing events around each bucket's NCCL calls on the
  /// communication stream and around the compute stream's wait for the
  /// last bucket, recorded from the next run (or capture) of
  /// withReductions' steps on.
  Status enableProfile();
  /// The times of the last run of withReductions' steps, once the compute
  /// stream has passed them; an error without enableProfile().
  Expected<OverlapTimes> measured() const;

  struct State; // the communication stream, events and buckets

private:
  explicit GradientReduceOverlap(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_NCCLOVERLAP_H
