// The layout rule of the distributed optimizer's buckets (mt.buckets of
// @optimizer_step): mt-build-optimizer makes them, mt-fuse may reorder a
// bucket's members (passes/fusion/BucketPacking.h).
#ifndef MT_PASSES_OPTIMIZER_BUCKETS_H
#define MT_PASSES_OPTIMIZER_BUCKETS_H

#include <cstdint>

namespace mt {

/// Elements every bucket member starts at a multiple of: the plan's 64-byte
/// buffer alignment in fp32.
inline constexpr int64_t kBucketMemberAlignment = 16;

} // namespace mt

#endif // MT_PASSES_OPTIMIZER_BUCKETS_H
