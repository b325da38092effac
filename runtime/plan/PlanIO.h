// Writing and reading a plan directory (plan.pb + plan.txt), with every
// check the runtime needs before it runs anything.
#ifndef MT_RUNTIME_PLAN_PLANIO_H
#define MT_RUNTIME_PLAN_PLANIO_H

#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <ostream>
#include <string>

namespace mt::plan {

/// The most bytes one rank's arenas may take, all together: 2^47, the user
/// address space of a Linux process on x86-64 (4-level paging; 5-level
/// kernels map higher addresses only on request). No host can allocate
/// more in one process, and no GPU holds a thousandth of it, so a plan
/// above it is refused by `mtc compile` and by the plan loader.
inline constexpr uint64_t kMaxRankBytes = uint64_t(1) << 47;
inline constexpr const char *kMaxRankBytesReason =
    "the most one process can address (128 TiB on x86-64 Linux)";

/// Replaces `dir` atomically with plan.pb, its readable summary plan.txt and
/// the marker of a plan (io::replaceOutputDirectory: refuses a `dir` that is
/// not absent, empty or an mtc output directory).
Status writePlanDirectory(const std::string &dir, const Plan &plan);

/// Reads `dir`/plan.pb and validates it: version, arenas, buffers inside
/// their arenas, parameters, bindings, and every instruction against the op
/// registry. The message names the file and what is wrong.
Expected<Plan> readPlanDirectory(const std::string &dir);

/// The checks of readPlanDirectory on a plan in memory.
Status validatePlan(const Plan &plan);

/// The ranks of a plan: pp x dp x cp x tp of its mesh (a size left at 0
/// counts as 1; ep and etp fold over the same ranks).
int64_t worldSize(const Mesh &mesh);

/// The expert data-parallel size of a plan: dp x cp x tp / (ep x etp) of
/// its mesh (sizes left at 0 count as 1).
int64_t expertDataParallelSize(const Mesh &mesh);

/// plan.txt: mesh, batch, arenas, parameters and the programs, one
/// instruction per line.
void writePlanSummary(const Plan &plan, std::ostream &os);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_PLANIO_H
