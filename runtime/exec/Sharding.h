// How a rank's slice of a sharded parameter maps onto the full (Hugging
// Face) tensor: contiguous segments of local and global elements.
#ifndef MT_RUNTIME_EXEC_SHARDING_H
#define MT_RUNTIME_EXEC_SHARDING_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace mt::exec {

/// A rank's coordinate on the axis of each of a parameter's splits, in the
/// order of `Parameter.splits` (empty for an unsplit parameter).
using SplitCoordinates = std::vector<int64_t>;

/// Elements of the full tensor of `param`.
uint64_t fullElements(const plan::Parameter &param);

/// Calls `segment(localOffset, globalOffset, count)` (in elements) for every
/// run of consecutive elements of the slice at `coordinates`, in local
/// order. An unsplit parameter is one segment covering everything.
void forEachSegment(const plan::Parameter &param, const SplitCoordinates &coordinates,
                    const std::function<void(uint64_t local, uint64_t global,
                                             uint64_t count)> &segment);

/// The coordinates of the `index`-th slice when slices are numbered with the
/// first split varying fastest (the order of gathering over each split's
/// axis in turn): coordinate i = (index / Π parts before i) mod parts_i.
SplitCoordinates coordinatesOfSlice(const plan::Parameter &param, int64_t index);

/// Copies the slice at `coordinates` of `full` into `local`.
void sliceFull(const plan::Parameter &param, const SplitCoordinates &coordinates,
               const float *full, float *local);
/// Writes the slice at `coordinates` (`local`) into its place in `full`.
void placeSlice(const plan::Parameter &param, const SplitCoordinates &coordinates,
                const float *local, float *full);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_SHARDING_H
