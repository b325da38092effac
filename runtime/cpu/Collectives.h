// The CPU backend's collectives over the rank's groups (Gloo): all-reduce,
// all-gather, reduce-scatter, all-slice, the all-to-alls, the ring shift and
// the pipeline's send and recv.
#ifndef MT_RUNTIME_CPU_COLLECTIVES_H
#define MT_RUNTIME_CPU_COLLECTIVES_H

#include "runtime/cpu/CpuExecutor.h"

namespace mt::cpu {

/// Adds the kernels of the collective instructions to `t`.
void addCollectiveKernels(plan::PerOp<CpuExecutor::Kernel> &t);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_COLLECTIVES_H
