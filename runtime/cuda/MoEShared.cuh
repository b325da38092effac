// What the MoE kernel files share (MoEExperts.cu, MoEPermute.cu): the
// launch shape of their flat loops and the group offsets.
// Internal linkage: each file gets its own copy of the kernel.
#ifndef MT_RUNTIME_CUDA_MOESHARED_CUH
#define MT_RUNTIME_CUDA_MOESHARED_CUH

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace mt::cuda {
namespace {

/// One thread: offsets[e] = sum of counts before e, offsets[experts] the total.
__global__ void offsetsKernel(const int32_t *counts, int32_t *offsets, int64_t experts) {
  int32_t sum = 0;
  for (int64_t e = 0; e < experts; ++e) {
    offsets[e] = sum;
    sum += counts[e];
  }
  offsets[experts] = sum;
}

/// Blocks of 256 threads for a flat loop over n elements (grid-stride past 65536).
unsigned blocksFor(int64_t n) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 65536)));
}

} // namespace
} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_MOESHARED_CUH
