// A CUDA lowering that reaches into the CPU backend: forbidden.
#include "runtime/cuda/Lowering.h"
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/kernels/Rotary.h"
