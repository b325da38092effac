// CPU reference kernels of the optimizer: gradient sum of squares and the
// finite check (AdamW: runtime/kernels/HostAdamW.cpp).
// Conventions: runtime/cpu/Kernels.md.
#include "runtime/cpu/Optimizer.h"

#include <cmath>
#include <vector>

namespace mt::cpu {

namespace {

/// Fixed block size of the sum of squares: blocks are summed in order, so
/// the result does not depend on the thread count.
constexpr int64_t kSumBlock = 4096;
/// Below this many elements the kernels run on one thread.
constexpr int64_t kParallelMin = 1 << 14;

} // namespace

double sumOfSquares(const float *g, int64_t n) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(blocks);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kSumBlock;
    const int64_t end = begin + kSumBlock < n ? begin + kSumBlock : n;
    double acc = 0.0;
    for (int64_t i = begin; i < end; ++i)
      acc += static_cast<double>(g[i]) * g[i];
    partial[b] = acc;
  }
  double sum = 0.0;
  for (int64_t b = 0; b < blocks; ++b)
    sum += partial[b];
  return sum;
}

bool allFinite(const float *x, int64_t n) {
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    finite = finite && std::isfinite(x[i]);
  return finite;
}


} // namespace mt::cpu
