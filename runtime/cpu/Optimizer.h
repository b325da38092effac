// CPU reference kernels of the optimizer: global gradient norm and AdamW.
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_OPTIMIZER_H
#define MT_RUNTIME_CPU_OPTIMIZER_H

#include "runtime/kernels/HostAdamW.h"

#include <cstdint>

namespace mt::cpu {

using kernels::AdamWParams;

/// sum of g[i]^2 in fp64 (deterministic: fixed-size blocks, summed in order).
double sumOfSquares(const float *g, int64_t n);
/// True when no element is NaN or +-Inf.
bool allFinite(const float *x, int64_t n);

/// AdamW on the host, shared with the CUDA backend's optimizer_offload.
using kernels::adamwStep;

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_OPTIMIZER_H
