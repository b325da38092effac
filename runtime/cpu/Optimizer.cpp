// CPU reference kernels of the optimizer: the finite check (AdamW and the
// gradients' sum of squares: runtime/kernels/HostAdamW.cpp).
// Conventions: runtime/cpu/Kernels.md.
#include "runtime/cpu/Optimizer.h"

#include <cmath>

namespace mt::cpu {

namespace {

/// Below this many elements the check runs on one thread.
constexpr int64_t kParallelMin = 1 << 14;

} // namespace

bool allFinite(const float *x, int64_t n) {
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    finite = finite && std::isfinite(x[i]);
  return finite;
}


} // namespace mt::cpu
