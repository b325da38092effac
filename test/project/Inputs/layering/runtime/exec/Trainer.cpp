// The executor may use every runtime part, not the compiler.
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/cuda/CudaExecutor.h"
#include "compiler/plan/PlanEmitter.h"
