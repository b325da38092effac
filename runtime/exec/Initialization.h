// Parameter initialization that depends only on (seed, parameter name,
// element index), so that every sharding of a model starts from the same
// full weights.
#ifndef MT_RUNTIME_EXEC_INITIALIZATION_H
#define MT_RUNTIME_EXEC_INITIALIZATION_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <string_view>

namespace mt::exec {

/// Element `index` of the full tensor `name` under `init`: N(0, std²) from a
/// counter-based generator (SplitMix64 of seed, FNV-1a of the name, index;
/// Box-Muller in fp64), or the constant 0 / 1.
float initialValue(uint64_t seed, std::string_view name, uint64_t index,
                   plan::InitKind init, double std);

/// Fills `dst[i]` = initialValue(..., firstIndex + i) for i < count.
void initializeRange(uint64_t seed, const plan::Parameter &param, uint64_t firstIndex,
                     float *dst, uint64_t count);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_INITIALIZATION_H
