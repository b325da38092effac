// The order the CUDA backend issues a program's instructions in when some
// of its collectives run on a communication stream (Megatron-Core's
// tensor-parallel communication overlap, in its simple form): plain data,
// so that the rule is tested without a GPU; runtime/cuda/Lowering.cpp
// lowers the instructions in this order.
#ifndef MT_RUNTIME_PLAN_OVERLAPORDER_H
#define MT_RUNTIME_PLAN_OVERLAPORDER_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace mt::plan {

/// [begin, end) of a buffer's memory, in bytes.
using ByteRange = std::pair<uint64_t, uint64_t>;

/// The indices of `program`'s instructions, each once, in the program's
/// order except that each linear_grad_weight is issued right after the next
/// instruction for which `overlapped` holds (a collective that can run on a
/// communication stream, overlapping what the compute stream does after
/// it), so that the weight-gradient GEMM runs while that collective does.
/// A weight gradient goes no later than the first instruction that
/// conflicts with it (writes a byte it reads or writes, or reads a byte it
/// writes, by `range` of each operand: buffers that share memory
/// conflict), nor past the program's end; deferred ones keep their order.
/// An overlapped collective conflicts only by its inputs (the GEMM must not
/// write what it reads): the backend writes its outputs where the compute
/// stream first needs them, after the GEMMs deferred past it.
/// As Megatron-Core's LinearWithGradAccumulationAndAsyncCommunication
/// (tensor_parallel/layers.py): the reduce-scatter of the input gradient
/// runs during the weight-gradient GEMM, and a gather of the layer's input
/// (recomputed) during the input-gradient GEMM the plan puts after it.
/// Without an overlapped instruction: the program's order.
std::vector<int> deferWeightGradients(const Program &program,
                                      const std::function<bool(int)> &overlapped,
                                      const std::function<ByteRange(uint32_t)> &range);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_OVERLAPORDER_H
