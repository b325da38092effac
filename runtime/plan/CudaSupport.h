// What a valid plan may ask that the CUDA backend does not run yet, in one
// place: the CUDA executor refuses it before touching the device, and
// `mtc compile --explain` says so beside its CUDA memory columns.
#ifndef MT_RUNTIME_PLAN_CUDASUPPORT_H
#define MT_RUNTIME_PLAN_CUDASUPPORT_H

#include "runtime/plan/plan.pb.h"

#include <optional>
#include <string>

namespace mt::plan {

/// A plan the CUDA backend does not run yet (only the CPU backend has).
struct CudaGap {
  /// Follows "this plan ": "splits a mixture-of-experts model's sequences
  /// over context_parallel_size (--cp 2)".
  std::string what;
  /// Follows "compile it ": how to get a plan it runs ("with --cp 1").
  std::string fix;
};

/// The first gap of `plan`, if any: param_offload with pipelines or the
/// distributed optimizer (their staging of per-stage runs and of buckets),
/// and context parallelism of a mixture-of-experts model (each cp rank
/// routing the whole sequence).
std::optional<CudaGap> cudaGapOf(const Plan &plan);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_CUDASUPPORT_H
