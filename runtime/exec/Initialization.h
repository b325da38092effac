// Parameter initialization that depends only on (seed, parameter name,
// element index), so that every sharding of a model starts from the same
// full weights.
#ifndef MT_RUNTIME_EXEC_INITIALIZATION_H
#define MT_RUNTIME_EXEC_INITIALIZATION_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <string_view>

namespace mt::exec {

/// Element `index` of the full tensor `name` under `init`: the constant 0 or
/// 1, or N(0, std²) from a counter-based generator. With mix() SplitMix64's
/// finalizer (runtime/io/Dataset.h), fnv1a() the 64-bit FNV-1a hash of the
/// name's bytes and all integer arithmetic mod 2^64:
///   key = mix(seed ^ mix(fnv1a(name)))
///   a = mix(key ^ mix(2·index)),  b = mix(key ^ mix(2·index + 1))
///   u(x) = ((x >> 11) + 1) · 2^-53          (uniform in (0, 1])
///   value = float(std · sqrt(-2 ln u(a)) · cos(2π u(b)))   (Box-Muller, fp64)
float initialValue(uint64_t seed, std::string_view name, uint64_t index,
                   plan::InitKind init, double std);

/// Fills `dst[i]` = initialValue(..., firstIndex + i) for i < count.
void initializeRange(uint64_t seed, const plan::Parameter &param, uint64_t firstIndex,
                     float *dst, uint64_t count);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_INITIALIZATION_H
