// When forward_backward finishes each gradient that the dp reduction at the
// start of the optimizer reduces, and which embedding backward may leave
// its last micro-batch's contribution sparse (rows, not the dense table),
// so that the reduction of the embedding's gradient need not wait for the
// end of backward; and, for the weights all-gathered behind the next
// forward (overlap_param_gather), the buffers a weight bucket is read
// through. Plan data only, tested without a GPU; the CUDA backend
// (runtime/cuda/NcclOverlap.cpp, ParamGatherOverlap.cpp) schedules from it.
#ifndef MT_RUNTIME_PLAN_GRADIENTWRITES_H
#define MT_RUNTIME_PLAN_GRADIENTWRITES_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <set>
#include <vector>

namespace mt::plan {

/// The buffers forward_backward writes that make up the reduced gradient
/// buffer `id`: the members of the plan's gradient bucket `id` is the
/// buffer of, or `id` itself.
std::vector<uint32_t> writtenAs(const Plan &plan, uint32_t id);

/// forward_backward's writes of the reduced gradient buffers.
struct ReducedGradientWrites {
  /// Per entry of `reduced`: the position in the issue order of the last
  /// instruction that writes it (any part or member of it) other than the
  /// sparse writer; the last position when no instruction writes it, and
  /// -1 when only the sparse writer does (it is complete before backward).
  std::vector<int> lastWriter;
  /// The embedding_grad instruction (its index in forward_backward) whose
  /// scatter-add is kept sparse, or -1: none.
  int sparseWriter = -1;
  /// The entry of `reduced` the sparse writer's output lies in.
  size_t sparseReduced = 0;
};

/// The last writes of `reduced` (the gradient buffers the optimizer's
/// leading all-reduces reduce in place) in `forwardBackward`, whose
/// instructions are issued in `order` (a permutation of their indices).
/// With `sparseEmbedding`, the sparse writer is the last embedding_grad in
/// that order whose output is one whole parameter gradient inside a
/// reduced buffer, over the whole vocabulary (no vocab_parallel_axis: a
/// vocab-parallel table's rows are split over tp and its gradient is not
/// this rule's), and whose reduced buffer no instruction of
/// forwardBackward reads (its dense value would be missing the rows). Its
/// write then does not count towards its buffer's last write. The caller
/// passes `sparseEmbedding` false where the rows cannot be added after the
/// reduction (reduce-scatters, bf16 reduction).
ReducedGradientWrites reducedGradientWrites(const Plan &plan, const Program &forwardBackward,
                                            const std::vector<int> &order,
                                            const std::vector<uint32_t> &reduced,
                                            bool sparseEmbedding);

/// The buffers forward_backward may read weight bucket `bucket`'s values
/// through: the bucket's weight buffer, its members' weight buffers, and
/// every view over parts that include one of them (the packed weight of a
/// fused GEMM, mt-fuse's concat_rows, whose members lie in the bucket).
std::set<uint32_t> weightReadersOf(const Plan &plan, const Bucket &bucket);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_GRADIENTWRITES_H
