#include "runtime/plan/CudaSupport.h"

#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/OpRegistry.h"

namespace mt::plan {

std::optional<CudaGap> cudaGapOf(const Plan &plan) {
  if (weightsOffloaded(plan)) {
    const char *with = plan.mesh().pp() > 1       ? "--pp > 1"
                       : plan.buckets_size() > 0 ? "use_distributed_optimizer"
                                                 : nullptr;
    if (with)
      return CudaGap{std::string("was compiled with param_offload (--param-offload) and ") + with,
                     "without one of them"};
  }
  if (plan.mesh().cp() > 1)
    for (const Program &program : plan.programs())
      for (const Instruction &instr : program.instructions())
        if (isOp(instr, Op::moe_router))
          return CudaGap{"splits a mixture-of-experts model's sequences over "
                         "context_parallel_size (--cp " +
                             std::to_string(plan.mesh().cp()) + ")",
                         "with --cp 1"};
  return std::nullopt;
}

} // namespace mt::plan
