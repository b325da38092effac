// The CPU backend: runs plan programs instruction by instruction on the
// reference kernels of runtime/cpu.
#ifndef MT_RUNTIME_CPU_CPUEXECUTOR_H
#define MT_RUNTIME_CPU_CPUEXECUTOR_H

#include "runtime/cpu/Attention.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/Memory.h"
#include "runtime/exec/PipelineChannels.h"
#include "runtime/exec/RankContext.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/support/Status.h"

#include <functional>
#include <vector>

namespace mt::cpu {

using exec::ProgramResult;

/// What a kernel may need besides its buffers: the rank's groups, and in a
/// pipeline the channels and the micro-batch being run.
struct KernelContext {
  const exec::RankContext *rank = nullptr;
  exec::PipelineChannels *pipeline = nullptr;
  int64_t microBatch = 0;
};

class CpuExecutor final : public exec::Executor {
public:
  /// Resolves every instruction's kernel up front; an op without a CPU
  /// kernel is an error that names it. `rank` (null: a single rank) gives
  /// collectives their groups and vocab-parallel kernels their slice.
  static Expected<CpuExecutor> create(const plan::Plan &plan, exec::HostMemory &memory,
                                      const exec::RankContext *rank = nullptr);

  /// Whether the CPU backend has a kernel for the instruction `op`.
  static bool hasKernel(plan::Op op);

  /// Runs `program`; `afterEach(i)`, when given, is called after instruction
  /// i (to inspect a temporary before its memory is reused, or to time).
  /// Instructions marked `deferred` (the distributed optimizer's all-gathers
  /// under overlap_param_gather) run at the start of the next program, or
  /// when the host reads the state: the same values at the same points of
  /// use as the CUDA backend's overlapped gathers.
  Expected<ProgramResult> run(const std::string &program,
                              const std::function<void(int)> &afterEach = nullptr) override;

  /// Host threads over Gloo (exec::HostPipelineChannels).
  Expected<std::unique_ptr<exec::PipelineChannels>> openPipeline() override;
  void setPipeline(exec::PipelineChannels *pipeline, int64_t microBatch) override {
    context_.pipeline = pipeline;
    context_.microBatch = microBatch;
  }
  Status clearGradients() override {
    memory_->clear(plan::GRADIENTS);
    if (memory_->mainGradientsOnHost()) // grad_offload
      memory_->clear(plan::HOST_GRADIENTS);
    return Status::ok();
  }
  /// Runs the deferred all-gathers: the host reads whole weights.
  Status readState() override { return runDeferred(); }
  /// The host wrote the weights: gathers still deferred would overwrite them.
  Status stateWritten() override {
    deferred_.clear();
    return Status::ok();
  }

  using Kernel = std::function<Status(const plan::Instruction &, const plan::Attrs &,
                                      exec::HostMemory &, const KernelContext &)>;

private:
  CpuExecutor(const plan::Plan &plan, exec::HostMemory &memory,
              const exec::RankContext *rank)
      : plan_(&plan), memory_(&memory) {
    context_.rank = rank;
  }
  /// Runs instruction `index` of `program`; errors name the rank, program,
  /// instruction and its source location.
  Status runInstruction(const plan::Instruction &instr, const std::string &program, int index);
  /// Runs the deferred instructions in order, each on the activation slot
  /// it was deferred on (its input is there), then forgets them.
  Status runDeferred();

  struct Deferred {
    const plan::Instruction *instruction;
    std::string program;
    int index;
    int64_t slot;
  };
  const plan::Plan *plan_;
  exec::HostMemory *memory_;
  KernelContext context_;
  std::map<std::string, std::vector<const Kernel *>> kernels_;
  std::vector<Deferred> deferred_;
};

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_CPUEXECUTOR_H
