// How a rank's slice of a tensor-parallel parameter maps onto the full
// (Hugging Face) tensor: contiguous segments of local and global elements.
#ifndef MT_RUNTIME_EXEC_SHARDING_H
#define MT_RUNTIME_EXEC_SHARDING_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <functional>

namespace mt::exec {

/// Elements of the full tensor of `param`.
uint64_t fullElements(const plan::Parameter &param);

/// Calls `segment(localOffset, globalOffset, count)` for every run of
/// consecutive elements that slice `shard` of `param` holds, in order. An
/// unsharded parameter is one segment covering everything.
void forEachSegment(const plan::Parameter &param, int64_t shard,
                    const std::function<void(uint64_t local, uint64_t global,
                                             uint64_t count)> &segment);

/// Copies slice `shard` of `full` into `local`.
void sliceFull(const plan::Parameter &param, int64_t shard, const float *full, float *local);
/// Writes slice `shard` (`local`) into its place in `full`.
void placeSlice(const plan::Parameter &param, int64_t shard, const float *local, float *full);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_SHARDING_H
