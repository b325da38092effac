// Counter-based parameter initialization.
#include "runtime/exec/Initialization.h"

#include "runtime/io/Dataset.h"

#include <cmath>

namespace mt::exec {
namespace {

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull; // the FNV-1a 64-bit offset basis
  for (char c : s) {
    h ^= uint8_t(c);
    h *= 1099511628211ull;
  }
  return h;
}

/// Uniform in (0, 1], never 0 so that log() is finite.
double unitInterval(uint64_t bits) { return (double(bits >> 11) + 1.0) * 0x1.0p-53; }

} // namespace

float initialValue(uint64_t seed, std::string_view name, uint64_t index,
                   plan::InitKind init, double std) {
  switch (init) {
  case plan::ZEROS:
    return 0.0f;
  case plan::ONES:
    return 1.0f;
  default:
    break;
  }
  uint64_t key = io::SplitMix64::mix(seed ^ io::SplitMix64::mix(fnv1a(name)));
  uint64_t a = io::SplitMix64::mix(key ^ io::SplitMix64::mix(2 * index));
  uint64_t b = io::SplitMix64::mix(key ^ io::SplitMix64::mix(2 * index + 1));
  double r = std::sqrt(-2.0 * std::log(unitInterval(a)));
  return float(std * r * std::cos(2.0 * M_PI * unitInterval(b)));
}

void initializeRange(uint64_t seed, const plan::Parameter &param, uint64_t firstIndex,
                     float *dst, uint64_t count) {
#pragma omp parallel for schedule(static)
  for (uint64_t i = 0; i < count; ++i)
    dst[i] = initialValue(seed, param.name(), firstIndex + i, param.init(), param.init_std());
}

} // namespace mt::exec
