// How the data-parallel gradient reduction is cut into buckets that start
// while backward still runs (Megatron-Core's overlap_grad_reduce): plain
// data, so that the rule is tested without a GPU; the CUDA backend
// (runtime/cuda/NcclOverlap.cpp) launches the buckets.
#ifndef MT_RUNTIME_PLAN_GRADIENTBUCKETS_H
#define MT_RUNTIME_PLAN_GRADIENTBUCKETS_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mt {

/// Megatron-Core's default bucket size in parameters, max(40M, 1M x dp)
/// (megatron/core/distributed/distributed_data_parallel_config.py,
/// bucket_size): larger data-parallel groups need larger messages to keep
/// NCCL's bus bandwidth.
size_t defaultBucketElements(int64_t dataParallel);

/// One gradient to reduce: its element count and the index of the
/// instruction of forward_backward that writes it last.
struct GradientToReduce {
  size_t elements = 0;
  int lastWriter = -1;
};

/// The buckets, in the order backward completes them: each a list of
/// indices into `gradients`, which are taken in order of their last writer
/// (stable for ties) and gathered until a bucket holds `bucketElements` or
/// more. A gradient of `bucketElements` or more is a bucket of its own and
/// closes the one before it, so that no gradient finished earlier waits for
/// it: the largest of all, the (tied) embedding, is written last, by the
/// embedding's backward, and would otherwise hold back the first layer's
/// gradients to the end. `bucketElements` 0 is taken as 1.
std::vector<std::vector<size_t>> formGradientBuckets(const std::vector<GradientToReduce> &gradients,
                                                     size_t bucketElements);

} // namespace mt

#endif // MT_RUNTIME_PLAN_GRADIENTBUCKETS_H
