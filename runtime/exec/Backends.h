// The backend a training run takes (cpu or cuda), how its ranks meet, and
// its executor: what Trainer.cpp asks of the backends.
#ifndef MT_RUNTIME_EXEC_BACKENDS_H
#define MT_RUNTIME_EXEC_BACKENDS_H

#include "runtime/exec/Executor.h"
#include "runtime/exec/Memory.h"
#include "runtime/exec/RankContext.h"
#include "runtime/exec/Trainer.h"
#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <memory>
#include <string>

namespace mt::exec {

/// `requested` ("auto", "cpu" or "cuda") resolved for `plan` on this
/// machine; errors: another name, or cuda in an mtrun built without it.
Expected<std::string> chooseBackend(const std::string &requested, const plan::Plan &plan,
                                    bool readsTemporaries);

/// How the ranks of `backend` meet: NCCL groups for cuda, Gloo's otherwise.
RankContext::Connect connectFor(const std::string &backend);

/// The executor of `backend` for this rank's part of `plan` (see Backends.cpp).
Expected<std::unique_ptr<Executor>> createExecutor(const std::string &backend,
                                                   const plan::Plan &plan, HostMemory &memory,
                                                   const RankContext *rank,
                                                   const TrainOptions &o);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_BACKENDS_H
