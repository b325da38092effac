// CPU reference kernels of the optimizer: global gradient norm and AdamW.
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_OPTIMIZER_H
#define MT_RUNTIME_CPU_OPTIMIZER_H

#include "runtime/kernels/HostAdamW.h"

#include <cstdint>

namespace mt::cpu {

using kernels::AdamWParams;

/// The host kernels shared with the CUDA backend's offload.
using kernels::sumOfSquares;
/// True when no element is NaN or +-Inf.
bool allFinite(const float *x, int64_t n);

/// AdamW on the host, shared with the CUDA backend's optimizer_offload.
using kernels::adamwStep;

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_OPTIMIZER_H
