// Lowering of plan programs to CUDA launches: each instruction becomes a
// closure over its resolved device addresses, made once, so that running a
// step only calls launchers (and can be captured as a CUDA graph).
//
// Output semantics follow runtime/cpu/Kernels.md: forward kernels write,
// backward kernels add into buffers the plan zero-fills first. The CUDA
// kernels that produce bf16 activation gradients write instead, so the
// fill_zero before such a writer is dropped; a later writer of the same
// buffer adds (cuBLASLt's beta = 1), or lowering fails naming the op. The
// decision is plan::outputUse (runtime/plan/OpRegistry.h), tested on the CPU.
#ifndef MT_RUNTIME_CUDA_LOWERING_H
#define MT_RUNTIME_CUDA_LOWERING_H

#include "runtime/comm/Communicator.h"
#include "runtime/cuda/Attention.h"
#include "runtime/cuda/DeviceArenas.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/Gemm.h"
#include "runtime/cuda/MoE.h"
#include "runtime/exec/Memory.h"
#include "runtime/exec/PipelineChannels.h"
#include "runtime/exec/RankContext.h"
#include "runtime/plan/GradientFirstWrites.h"
#include "runtime/plan/OpRegistry.h"

#include <cuda_runtime_api.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <typeindex>
#include <utility>
#include <vector>

namespace mt::cuda {

using Launch = std::function<Status(cudaStream_t)>;

/// One lowered instruction.
struct Step {
  Launch launch;        // null: nothing to do on the device
  int instruction = -1; // index in the plan program
  bool onHost = false;  // host work, or a wait for the device: not capturable
  bool collective = false; // NCCL calls: kept out of CUDA graphs
  /// Host value that check_finite tests: the program stops when it is not
  /// finite (the step is skipped).
  const float *checkFinite = nullptr;
  /// The profile's class of the step when not its instruction's.
  const char *profileClass = nullptr;
};

/// A device buffer of i32 counts as the host reads it: a pinned copy that
/// is valid once `copied` has completed (runtime/cuda/LowerExpertParallel.cpp:
/// moe_exchange_counts copies the all-to-all-v's split sizes there).
struct HostCounts {
  const int32_t *values = nullptr; // null until the lowering of its producer
  cudaEvent_t copied = nullptr;
  std::shared_ptr<void> owner; // the pinned memory and the event
};

/// What every lowered instruction of one executor shares. Instructions run
/// in order on one stream, so they share one kernel workspace.
struct Resources {
  DeviceArenas *arenas = nullptr;
  exec::HostMemory *host = nullptr;
  /// The rank's groups (NCCL communicators); null for a single rank.
  const exec::RankContext *rank = nullptr;
  std::unique_ptr<GemmRunner> gemm;
  std::map<std::tuple<double, double, double, double, int64_t, int64_t, int64_t>,
           RotaryTable> rotaryTables;
  /// Per (batch, seq, cp rank, cp size): the device places in the whole
  /// sequence of a context-parallel slice's tokens, read by rotary.
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, const int32_t *>
      contextParallelPlaces;
  /// Host copies of the optimizer's scalars that live in device-only
  /// buffers (the clipping factor).
  std::map<uint32_t, float> hostScalars;
  /// Per logits buffer (its device address: one per pipeline slot): the
  /// cross-entropy forward's row log-sum-exps and mask total ([tokens + 1]
  /// floats), read by its backward.
  std::map<const void *, float *> crossEntropyStats;
  /// The pipeline channels and micro-batch of the programs run next
  /// (Executor::setPipeline); read when a send or recv launches.
  exec::PipelineChannels *pipeline = nullptr;
  int64_t microBatch = 0;
  /// The host copies of count buffers (by device address: one per pipeline
  /// slot), made by their producer and read by the all-to-all-v.
  std::map<const void *, HostCounts> hostCounts;
  /// Attention's implementation (CudaOptions::attention; resolved per shape).
  AttentionOptions attention{AttentionBackend::Auto, true};
  /// Ring attention's transfers on the transfer stream, overlapping the
  /// compute stream's work (CudaOptions::overlapRingTransfers).
  bool overlapTransfers = true;
  /// Each weight-gradient GEMM issued after the next tensor-parallel
  /// all-gather, reduce-scatter or all-reduce of bf16 activations, which
  /// then runs on the transfer stream meanwhile (plan::deferWeightGradients;
  /// CudaOptions::overlapSequenceParallel).
  bool overlapSequenceParallel = true;
  /// Set by the executor while it runs (or captures) the first
  /// forward_backward of a step: the weight gradients that program writes
  /// first (Lowerer::setGradientsUnwritten) are then written, not added.
  bool gradientsUnwritten = false;
  cudaStream_t transferStream = nullptr; // made on first use
  /// The results (and rank-major blocks) of the collectives that overlap
  /// compute (Lowerer::overlapsCompute): the transfer stream's own, since
  /// the compute stream's kernels use `workspace` meanwhile; one such
  /// collective is in flight at a time (allocated after lowering).
  size_t transferWorkspaceBytes = 0;
  void *transferWorkspace = nullptr;
  std::vector<cudaEvent_t> events;       // destroyed with the resources
  /// The MoE experts' GEMMs (CudaOptions::moeGemm) and, for
  /// ExpertGemm::Grouped, cuBLAS's handle (made by the first lowering).
  ExpertGemm moeGemm = ExpertGemm::Auto;
  std::unique_ptr<GroupedGemm> groupedGemm;
  /// The routers' fp32 products (made by the first router's lowering).
  std::unique_ptr<RouterBlas> routerBlas;
  /// The experts' weight gradients side by side (ExpertLanes; made by the
  /// first lowering of a library path's backward).
  std::unique_ptr<ExpertLanes> expertLanes;
  int moeLanes = 3; // CudaOptions::moeLanes
  /// The offloads (LowerOffload.cpp): the stream their copies between
  /// device and pinned host arenas run on, and per host buffer the event
  /// that its last copy (either way) completes at; made by the first copy.
  cudaStream_t copyStream = nullptr;
  std::map<uint32_t, cudaEvent_t> copyDone;
  /// optimizer_offload without fp32 weights on the GPU: where copy_to_device
  /// puts an updated master before casting it into the bf16 copy.
  float *weightStaging = nullptr;
  size_t workspaceBytes = 0; // the largest need, known after lowering
  void *workspace = nullptr; // allocated after lowering
  std::vector<void *> owned; // device allocations freed with the executor

  ~Resources();
  /// A zeroed device allocation owned by these resources.
  Expected<void *> allocate(size_t bytes);
  /// An event (no timing) owned by these resources.
  Expected<cudaEvent_t> event();
};

/// Lowers the programs of one plan.
class Lowerer {
public:
  Lowerer(const plan::Plan &plan, Resources &resources)
      : plan_(plan), res_(resources) {}

  /// The program's steps, its instructions in order() (each instruction's
  /// steps together, in the plan's order but for the weight gradients that
  /// Resources::overlapSequenceParallel defers).
  Expected<std::vector<Step>> lower(const plan::Program &program);
  /// The order lower() took the last program's instructions in.
  const std::vector<int> &order() const { return order_; }
  /// Lowers the next programs so that they may run as the first of a step
  /// to touch the main gradients, with the GRADIENTS arena not zero-filled:
  /// a kernel that can write or add (f32OutOrSum) into main-gradient bytes
  /// no earlier instruction touched writes them while
  /// Resources::gradientsUnwritten is set when it launches, and adds
  /// otherwise; gradientZeroRanges() then lists what the caller must
  /// zero-fill before such a run (the bytes read, or added to, before
  /// anything wrote them, and those nothing writes).
  void setGradientsUnwritten(bool on) { gradientsUnwritten_ = on; }
  /// With setGradientsUnwritten, after lower(): [begin, end) byte offsets
  /// in the GRADIENTS arena, sorted and disjoint.
  std::vector<plan::ByteRange> gradientZeroRanges() const {
    return firstWrites_.unwritten(res_.arenas->arenaBytes(plan::GRADIENTS));
  }

  // --- for the op lowerings (runtime/cuda/LowerOps.cpp) ---
  const plan::Instruction &instruction() const { return *instr_; }
  /// Device views of the current instruction's operands; a view that does
  /// not fit the buffer's storage records an error and returns null.
  const bf16 *bfIn(int i) { return bf(instr_->inputs(i), "input", i); }
  const float *f32In(int i) { return f32(instr_->inputs(i), "input", i); }
  const int32_t *i32In(int i);
  /// Output i of int32 (the router's expert indices), written.
  int32_t *i32Out(int i);
  /// Output i for a kernel that writes it.
  bf16 *bfOut(int i) { return bf(target(i, Capability::Writes), "output", i); }
  float *f32Out(int i) { return f32(target(i, Capability::Writes), "output", i); }
  /// Output i for a kernel that adds into it (fp32 main gradients).
  float *f32Sum(int i) { return f32(target(i, Capability::Adds), "output", i); }
  /// Output i (fp32) for a kernel that can write or add: whether it must
  /// add, read when the kernel launches (a main gradient this program may
  /// write first, see setGradientsUnwritten).
  std::function<bool()> f32OutOrSum(int i, float *&out);
  /// Whether `buffer` is stored as bf16 on the device (an activation kept
  /// at half its planned offset).
  bool isBf16(uint32_t buffer) const {
    return res_.arenas->storage(buffer) == DeviceArenas::Storage::Bf16Activation;
  }
  /// Input i on the host: an INPUTS buffer, or a scalar made by a host step.
  const float *hostIn(int i) { return hostScalar(instr_->inputs(i)); }
  const int64_t *hostI64In(int i);
  /// Output i for a kernel that can write or add: whether it must add.
  bf16 *bfOutOrSum(int i, bool &add);
  /// Host scalar for a one-element buffer (OUTPUTS: the host memory; else a
  /// slot of Resources::hostScalars).
  float *hostScalar(uint32_t buffer);
  void needWorkspace(size_t bytes) { res_.workspaceBytes = std::max(res_.workspaceBytes, bytes); }
  /// The workspace of `bytes` for the current instruction: its planned one
  /// (Instruction.workspace, activation bytes free during it) where that
  /// holds `bytes` and no transfer in flight uses its bytes, else null
  /// after needWorkspace(bytes), for Resources::workspace.
  void *workspaceFor(size_t bytes);
  void needTransferWorkspace(size_t bytes) {
    res_.transferWorkspaceBytes = std::max(res_.transferWorkspaceBytes, bytes);
  }
  Resources &resources() { return res_; }
  const plan::Plan &plan() const { return plan_; }
  void emit(Launch launch, bool onHost = false) {
    steps_.push_back({std::move(launch), index_, onHost, false, nullptr});
    lastStep_.reset();
  }
  /// A step of NCCL calls, enqueued on the stream it is given.
  void emitCollective(Launch launch) {
    steps_.push_back({std::move(launch), index_, false, true, nullptr});
    lastStep_.reset();
  }
  /// A step of NCCL calls enqueued on the transfer stream once the compute
  /// stream's work so far is done, so that the instructions after it run
  /// meanwhile; the first instruction after it in the plan's order that
  /// reads or writes the device memory of `buffers` (the transfer's
  /// operands), any later collective, and the program's end make the
  /// compute stream wait for it, then run `finish` (when given: the copy of
  /// a result the transfer left in Resources::transferWorkspace into its
  /// output, so that the transfer writes no operand while it runs).
  void emitOverlappedCollective(Launch launch, const std::vector<uint32_t> &buffers,
                                Launch finish = nullptr);
  /// Whether the current instruction is a tensor-parallel collective that
  /// runs on the transfer stream while the instructions after it that do
  /// not need its result run (weight-gradient GEMMs that
  /// plan::deferWeightGradients put after it, or the plan's next ones); it
  /// then reads only its input meanwhile, its result going to
  /// Resources::transferWorkspace (a `finish` copies it).
  bool overlapsCompute() const { return overlapped_.count(index_) > 0; }
  /// What the lowering that emitted the last step left for the next
  /// instruction (a multi-tensor group it may join), when it is a T; any
  /// emit clears it.
  template <typename T> T *lastStepState() const {
    return lastStep_.state && lastStep_.type == typeid(T) ? static_cast<T *>(lastStep_.state.get())
                                                          : nullptr;
  }
  template <typename T> void setLastStepState(std::shared_ptr<T> state) {
    lastStep_ = {std::move(state), typeid(T)};
  }
  /// Output i for a kernel that adds into it (bf16 or fp32 by its storage).
  void *sumOut(int i, bool &isBf16);
  /// fill_zero of output 0: dropped again when a writer replaces it.
  void fillZero();
  void emitCheck(const float *hostValue) {
    steps_.push_back({nullptr, index_, false, false, hostValue});
    lastStep_.reset();
  }
  /// Device memory [begin, end).
  using Range = std::pair<const std::byte *, const std::byte *>;
  /// Records `event` on the compute stream right after the steps of the
  /// last instruction lowered so far (in the order issued) that touches
  /// `ranges` in any of its operands' device storage (fp32 and bf16
  /// copies), so that what waits for it need not wait for the steps after
  /// (a copy into a staged buffer's memory: LowerOffload.cpp). False,
  /// recording nothing, where no earlier instruction of the program touches
  /// it or the last one's work may be on another stream (a collective): the
  /// caller then records `event` where it is.
  bool recordAfterLastUse(const std::vector<Range> &ranges, cudaEvent_t event);
  /// Records why the current instruction cannot be lowered.
  void fail(const std::string &why) {
    if (error_.empty())
      error_ = why;
  }

private:
  using Capability = plan::KernelOutput;
  /// Output i's buffer, after deciding whether its kernel writes or adds
  /// (plan::outputUse, the rule the CPU kernels follow).
  uint32_t target(int i, Capability capability, bool *add = nullptr);
  bf16 *bf(uint32_t buffer, const char *role, int i);
  float *f32(uint32_t buffer, const char *role, int i);
  std::string describe(uint32_t buffer) const;

  const plan::Plan &plan_;
  Resources &res_;
  const plan::Program *program_ = nullptr;
  const plan::Instruction *instr_ = nullptr;
  int index_ = -1;
  std::vector<int> order_;
  std::vector<Step> steps_;
  /// The instructions lowered so far, in the order issued, each with the
  /// number of steps emitted once it was (recordAfterLastUse).
  std::vector<std::pair<int, size_t>> issued_;
  std::string error_;
  /// Buffers zero-filled and not written since: the step index of the fill.
  std::map<uint32_t, size_t> pendingZero_;
  /// setGradientsUnwritten: the GRADIENTS arena's accesses so far.
  bool gradientsUnwritten_ = false;
  plan::GradientFirstWrites firstWrites_;
  /// `buffer`'s bytes in the GRADIENTS arena; nullopt for another arena.
  std::optional<plan::ByteRange> gradientRange(uint32_t buffer) const;

  /// Overlapped transfers not yet waited for: the device bytes they touch
  /// and the event recorded on the transfer stream after them.
  struct InFlight {
    std::vector<std::pair<const std::byte *, const std::byte *>> ranges;
    cudaEvent_t done;
    int instruction; // in the plan's order: only those after it wait
    Launch finish;   // on the compute stream after the wait; may be null
  };
  /// The instructions for which overlapsCompute() holds.
  std::set<int> overlapped_;
  std::vector<InFlight> inFlight_;
  /// [begin, end) of `buffer`'s device storage.
  std::pair<const std::byte *, const std::byte *> deviceRange(uint32_t buffer) const;
  /// Whether `buffer`'s device storage, its bf16 copy included (a parameter's
  /// shadow, a staged weight's), overlaps one of `ranges`.
  bool touches(uint32_t buffer, const std::vector<Range> &ranges) const;
  /// order_ and overlapped_ of `program`.
  void orderInstructions(const plan::Program &program);
  /// Makes the compute stream wait for the in-flight transfers that the
  /// instruction `instr` must follow (all of them with `all`).
  void waitForTransfers(const plan::Instruction &instr, bool all);
  struct LastStep {
    std::shared_ptr<void> state;
    std::type_index type = typeid(void);
    void reset() { *this = {}; }
  } lastStep_;
};

/// The lowering of one instruction: emits its steps through the Lowerer,
/// or records why it cannot (Lowerer::fail).
using Lowering = void (*)(Lowerer &, const plan::Attrs &);
/// The CUDA kernel of each plan instruction; an empty entry: none.
using LoweringTable = plan::PerOp<Lowering>;

/// The optional input `i` of rotary and attention: device position ids
/// (documents packed in a row), null when absent.
const int32_t *positionIds(Lowerer &L, int i);
/// The rank's coordinate on the instruction's context_parallel_axis and the
/// axis' size ({0, 1} without one or on a single rank), as the CPU backend
/// reads them (LowerAttention.cpp).
std::pair<int64_t, int64_t> contextParallelOf(Lowerer &L, const plan::Attrs &a);

/// The lowerings of each op family, one function per file: dense layers,
/// norms, rotary and the loss (LowerOps.cpp), attention and ring attention
/// (LowerAttention.cpp), the optimizer
/// (LowerOptimizer.cpp), the vocab-parallel cross-entropy
/// (LowerVocabParallel.cpp), the mixture-of-experts ops (LowerMoE.cpp),
/// expert parallelism's alltoall dispatcher (LowerExpertParallel.cpp), the
/// collectives (LowerCollectives.cpp), the pipeline transfers send and recv
/// (NcclPipeline.cpp), the offloads' copies (LowerOffload.cpp).
void addDenseLowerings(LoweringTable &table);
void addAttentionLowerings(LoweringTable &table);
void addOptimizerLowerings(LoweringTable &table);
void addVocabParallelLowerings(LoweringTable &table);
void addMoELowerings(LoweringTable &table);
void addExpertParallelLowerings(LoweringTable &table);
void addCollectiveLowerings(LoweringTable &table);
void addPipelineLowerings(LoweringTable &table);
/// The offloads' copies (LowerOffload.cpp).
void addOffloadLowerings(LoweringTable &table);
/// An adamw instruction whose weights are host master weights
/// (optimizer_offload): AdamW on the host, after the copies it reads.
void hostAdamW(Lowerer &L, const plan::Attrs &a);
/// A sum_squares instruction of host gradients (grad_offload): the norm's
/// sum on the host, after the copies it reads, then copied to its device
/// output.
void hostSumSquares(Lowerer &L, const plan::Attrs &a);

class NcclCommunicator;

/// A device view of operand i (an input or an output) of the current
/// instruction for a collective: bf16 activations in bf16, everything else
/// in fp32 (LowerCollectives.cpp).
struct CollectiveOperand {
  void *data;
  comm::DType type;
};
CollectiveOperand collectiveOperand(Lowerer &L, bool isInput, int i);

/// Whether `instr` may overlap the weight-gradient GEMMs deferred past it
/// (plan::deferWeightGradients; Lowerer::overlapsCompute): with
/// Resources::overlapSequenceParallel, an all_gather, reduce_scatter or
/// all_reduce of a bf16 activation over an NCCL group of several ranks
/// (tensor and sequence parallelism). LowerCollectives.cpp.
bool mayOverlapCompute(const Resources &r, const plan::Instruction &instr);

/// The NCCL communicator of the instruction's axis (attribute `axis`) with
/// `parts` members; null, after Lowerer::fail saying why, when there is none.
NcclCommunicator *ncclGroupOf(Lowerer &L, const plan::Attrs &a, int64_t parts);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_LOWERING_H
