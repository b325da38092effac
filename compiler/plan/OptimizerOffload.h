// optimizer_offload in the plan: the fp32 master weights and AdamW state in
// host arenas, AdamW on the host, and the copies between the arenas as
// instructions of the plan.
#ifndef MT_COMPILER_PLAN_OPTIMIZEROFFLOAD_H
#define MT_COMPILER_PLAN_OPTIMIZEROFFLOAD_H

#include "compiler/plan/BufferPlanner.h"
#include "runtime/plan/OpRegistry.h"

#include <map>

namespace mt {

/// Moves the AdamW updates of optimizer programs to the host, as
/// Megatron-Core's optimizer_cpu_offload (HybridDeviceOptimizer with
/// offload fraction 1) and Trinity-RFT's optimizer_offload do. For each
/// adamw instruction of weights W (a parameter, or the distributed
/// optimizer's shard of a weight bucket) and gradient G:
///   - its exp_avg and exp_avg_sq move to HOST_OPTIMIZER;
///   - a master M (W's shape, HOST_PARAMETERS) and a host gradient H
///     (G's shape, HOST_STAGED_GRADIENTS) are added;
///   - `copy_to_host G -> H` comes just before the previous adamw (the
///     first one's: before it), but after the last instruction that writes
///     G and the gradient reductions that open the program (so that the
///     CUDA backend can still overlap those reductions with backward). H
///     lives from its copy to its AdamW: at most two host gradients at once,
///     one being updated while the next is copied, so the host holds a
///     staging area of two gradients rather than the whole model's;
///   - AdamW updates M from H, and `copy_to_device M -> W` follows it (W's
///     bf16 copy on CUDA is refreshed with it);
///   - the master-weights program gets `copy_to_host W -> M` (after the
///     all_slice that makes W from its bucket, which moves there: in the
///     optimizer W is now written by the copy).
/// The arithmetic is the same AdamW on the same values: a CPU run gives
/// bit for bit the losses, norms and weights of the run without offload.
/// A copy_to_host or copy_to_device instruction (`op`) of `n` elements from
/// buffer `from` to `to`, with `location` as its source location; the
/// offload rewrites' copies (this one and GradOffload.h).
plan::Instruction offloadCopy(plan::Op op, uint32_t from, uint32_t to, int64_t n,
                              const std::string &location);

/// A run of device uses of one host-held buffer in a program (instruction
/// indices first..last), staged on the device by one copy before it.
struct StagedRun {
  uint32_t buffer = 0;
  size_t first = 0, last = 0;
  bool writes = false;
};

/// The buffers of `arena` that `instr` uses, each with whether it writes
/// it (an output; a buffer both read and written counts as written): the
/// uses grad_offload and param_offload group into staged runs.
std::map<uint32_t, bool> arenaUses(const plan::Instruction &instr, plan::ArenaKind arena,
                                   const BufferPlanner &planner);

/// The staging of grad_offload and param_offload: rewrites `program`, whose
/// instructions were `old`, so that each run reads and writes a new buffer
/// like its own in `stagedArena`, filled by a copy_to_device before the
/// run's first instruction and, for a run that writes, copied back by a
/// copy_to_host after its last (a gap's copies to the host come first: a
/// view's run may start where another's ended). Errors: two runs of
/// overlapping views of one buffer at once (where `onlyWhenWritten`, only
/// when one of them writes), named after `option` and `what`
/// ("gradient", "weight"); a deferred instruction (overlap_param_gather)
/// that uses a staged buffer.
Status stageRuns(plan::Program &program, std::vector<plan::Instruction> old,
                 const std::vector<StagedRun> &runs, plan::ArenaKind stagedArena,
                 const std::string &option, const std::string &what, bool onlyWhenWritten,
                 BufferPlanner &planner, const plan::Plan &plan);

class OptimizerOffload {
public:
  explicit OptimizerOffload(BufferPlanner &planner, plan::Plan &plan)
      : planner_(planner), plan_(plan) {}

  /// grad_offload is on: AdamW reads the main gradients where they are,
  /// in HOST_GRADIENTS, with no copy of its own (GradOffload.h).
  void setGradientsOnHost() { gradientsOnHost_ = true; }

  /// Rewrites `optimizer` (emitted, before its liveness is recorded) and
  /// appends to `masters` what fills its masters. Fails when an adamw
  /// instruction's weights are neither a persistent buffer nor an
  /// all_slice's output in the same program, naming the instruction.
  Status rewrite(plan::Program &optimizer, plan::Program &masters);

  /// Sets each stage schedule's master_weights_program to the program
  /// named `master_weights` (or `master_weights.<stage>` in pipelines).
  static void bindMasterPrograms(plan::Plan &plan);

  /// The master-weights program's name for `stage` (-1: no pipeline).
  static std::string programName(int64_t stage);

private:
  /// The fp32 master of `weights` in HOST_PARAMETERS, made once, named
  /// `master:<owner's name>`, held by the stage(s) of `owner`.
  uint32_t masterOf(uint32_t weights, uint32_t owner);

  /// Names the host copies in the Parameter or Bucket whose weights are
  /// `weights` (the plan validates stage layouts with them).
  void recordHostCopies(uint32_t weights, uint32_t master, uint32_t hostGrad);

  BufferPlanner &planner_;
  plan::Plan &plan_;
  std::map<uint32_t, uint32_t> masters_; // device weights -> host master
  bool gradientsOnHost_ = false;
};

} // namespace mt

#endif // MT_COMPILER_PLAN_OPTIMIZEROFFLOAD_H
