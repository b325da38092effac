// What the training loop asks of a backend: run a plan program, and move
// the state the host owns (inputs, weights, optimizer state) to and from
// where the backend computes.
#ifndef MT_RUNTIME_EXEC_EXECUTOR_H
#define MT_RUNTIME_EXEC_EXECUTOR_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mt::exec {

class PipelineChannels;

struct ProgramResult {
  /// A check_finite instruction saw NaN/Inf: the rest of the program did not run.
  bool skipped = false;
  std::string skipReason;
};

/// The host writes inputs, weights and optimizer state into its
/// HostMemory; a backend that computes elsewhere copies them over at the
/// points below, and the CPU backend, which computes in that memory, does
/// nothing there.
class Executor {
public:
  virtual ~Executor() = default;

  /// Runs `program`; `afterEach(i)`, when given, is called after instruction
  /// i (backends that keep temporaries in host memory only).
  virtual Expected<ProgramResult> run(const std::string &program,
                                      const std::function<void(int)> &afterEach = nullptr) = 0;

  /// The channels this backend moves pipeline transfers with (a plan with
  /// pp > 1; made once, before the first step, on every rank of the job).
  virtual Expected<std::unique_ptr<PipelineChannels>> openPipeline() = 0;
  /// Pipeline transfers of the programs run next go through `pipeline` (made
  /// by openPipeline) and belong to `microBatch`.
  virtual void setPipeline(PipelineChannels *pipeline, int64_t microBatch) = 0;

  /// Zeroes the main gradients (the start of a step).
  virtual Status clearGradients() = 0;
  /// The host wrote the INPUTS arena (a micro-batch, the step number).
  virtual Status inputsWritten() { return Status::ok(); }
  /// The host wrote parameters and optimizer state (initialization, --load,
  /// --resume).
  virtual Status stateWritten() { return Status::ok(); }
  /// The host is about to read parameters and optimizer state (save, export):
  /// every rank calls it, as a backend that holds only the rank's shard of
  /// some weights gathers them here (CUDA's distributed optimizer).
  virtual Status readState() { return Status::ok(); }
  /// Where time went, per instruction class, when the backend measured it.
  virtual std::string profileReport() const { return {}; }
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_EXECUTOR_H
