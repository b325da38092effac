// `mtc compile --explain`: the parallel layout of a model, in words, and
// what its plan gives each rank. Every figure of memory, parameters and
// communication comes from the plan, the same numbers mtrun allocates.
#ifndef MT_COMPILER_DRIVER_EXPLAIN_H
#define MT_COMPILER_DRIVER_EXPLAIN_H

#include "compiler/config/ParallelConfig.h"
#include "runtime/plan/plan.pb.h"

#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <string>

namespace mt {

/// The mesh, each rank's coordinates, and the layers of each pipeline stage
/// (and virtual chunk) of a resolved layout; no figures of memory (those
/// come with the plan: explainPlan).
void explainLayout(const ModelDims &dims, const ParallelConfig &parallel, llvm::raw_ostream &os);

/// What the compiled plan holds for each rank: the parameters of each
/// stage, memory per arena (for the CPU and the CUDA backend), and the
/// collectives of one step (runs, bytes and the traffic of each rank).
void explainPlan(const plan::Plan &plan, llvm::raw_ostream &os);

/// `n` with commas between groups of three digits: 3,213,568.
std::string withCommas(int64_t n);

} // namespace mt

#endif // MT_COMPILER_DRIVER_EXPLAIN_H
