// The CUDA executor: lowering at creation, eager or graph replay per
// program, host<->device copies of the state the host owns, profiling.
#include "runtime/cuda/CudaExecutor.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/CommProfile.h"
#include "runtime/cuda/DeviceWeights.h"
#include "runtime/cuda/InstructionProfile.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/NcclCommunicator.h"
#include "runtime/cuda/NcclOverlap.h"
#include "runtime/cuda/ParamGatherOverlap.h"
#include "runtime/cuda/NcclPipeline.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/GradientBuckets.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanSchedule.h"
#include "runtime/plan/Roofline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <memory>
#include <set>
#include <sstream>

namespace mt::cuda {

namespace {

/// The bytes an instruction of `family` moves of buffer `id` on the GPU:
/// half the planned size of a bf16 activation; of a parameter (or its
/// staged copy, param_offload), the bf16 shadow the layers read, or the
/// fp32 master the optimizer reads and writes with the shadow it also
/// writes.
double deviceBytes(const plan::Plan &plan, const DeviceArenas &arenas, uint32_t id,
                   bool isOutput, plan::OpFamily family) {
  const double planned = double(plan.buffers(id).size_bytes());
  switch (arenas.storage(id)) {
  case DeviceArenas::Storage::Bf16Activation:
    return planned / 2;
  case DeviceArenas::Storage::Parameter:
  case DeviceArenas::Storage::StagedWeight:
    if (family != plan::OpFamily::Optimizer)
      return planned / 2;
    return isOutput ? planned * 1.5 : planned;
  default:
    return planned;
  }
}

/// A run of a program's steps [begin, end): launched eagerly (a pipeline
/// transfer) or replayed as a CUDA graph (the steps between transfers).
struct Piece {
  size_t begin = 0, end = 0;
  bool eager = false;
  cudaGraphExec_t graph = nullptr; // captured at the first replay
};

struct LoweredProgram {
  const plan::Program *plan = nullptr;
  int64_t slot = 0; // the pipeline slot whose per-micro-batch buffers it uses
  std::vector<Step> steps;
  std::vector<int> order; // the order its instructions are issued in (Lowerer::order)
  /// OUTPUTS buffers written on the device: copied to the host after a run.
  std::vector<uint32_t> deviceOutputs;
  bool capturable = true;
  int64_t runs = 0;
  cudaGraphExec_t graph = nullptr;
  /// Not empty: replayed piece by piece (stagePieces).
  std::vector<Piece> pieces;
  /// The FLOPs and bytes of one run per profile class (plan/Roofline.h).
  std::map<std::string, plan::InstructionWork> work;
  /// The +first variant: runs with Resources::gradientsUnwritten set, after
  /// these GRADIENTS byte ranges are zero-filled (Lowerer::gradientZeroRanges).
  bool writesGradients = false;
  std::vector<std::pair<uint64_t, uint64_t>> gradientZeroRanges;
};

/// A pipeline stage's program whose only steps a CUDA graph cannot hold
/// are its transfers: the pieces that replay it, the transfers eager and
/// the runs of steps between them as graphs; empty for any other program.
/// A send leaves from a stream the compute stream never waits for
/// (NcclPipeline.h): a graph must join every stream it forks before it
/// ends, so a graph holding the send would end only once the receiving
/// stage took it, and under 1F1B each stage sends while the other's next
/// receive waits behind its own send: a deadlock for messages larger than
/// NCCL's buffers. A receive could be captured (the compute stream waits
/// for it as it is), but the channels check each transfer against the
/// schedule on the host and pick a free staging buffer per send, which a
/// replay would skip; it is one launch per program.
std::vector<Piece> stagePieces(const LoweredProgram &program) {
  if (program.capturable || program.plan->virtual_stage() < 0)
    return {};
  std::vector<Piece> pieces;
  for (size_t i = 0; i < program.steps.size(); ++i) {
    const Step &step = program.steps[i];
    const plan::OpSignature *op = plan::findOp(program.plan->instructions(step.instruction).op());
    const bool transfer = step.collective && op && op->family == plan::OpFamily::Pipeline;
    if (step.onHost || step.checkFinite || (step.collective && !transfer))
      return {};
    if (transfer)
      pieces.push_back({i, i + 1, true});
    else if (step.launch && (pieces.empty() || pieces.back().eager))
      pieces.push_back({i, i + 1, false});
    else if (step.launch)
      pieces.back().end = i + 1;
  }
  return pieces;
}

class CudaExecutor final : public exec::Executor {
public:
  CudaExecutor(const plan::Plan &plan, exec::HostMemory &host, const exec::RankContext *rank,
               const CudaOptions &options)
      : plan_(plan), host_(host), rank_(rank), options_(options) {}
  ~CudaExecutor() override;

  Status initialize();
  Expected<exec::ProgramResult> run(const std::string &name,
                                    const std::function<void(int)> &afterEach) override;
  Expected<std::unique_ptr<exec::PipelineChannels>> openPipeline() override;
  void setPipeline(exec::PipelineChannels *pipeline, int64_t microBatch) override {
    resources_.pipeline = pipeline;
    resources_.microBatch = microBatch;
  }
  Status clearGradients() override;
  Status inputsWritten() override;
  Status stateWritten() override;
  Status readState() override;
  std::string profileReport() const override;

private:
  Status lowerAll();
  Expected<LoweredProgram> lowerProgram(Lowerer &lowerer, const plan::Program &program,
                                        int64_t slot);
  /// The lowered program of `name` for the pipeline slot the host uses now.
  std::string inSlot(const std::string &name) const;
  Status planOverlap();
  /// --profile-comm: every collective step timed, the overlap's events.
  Status planCommProfile();
  /// The bubble the plan's schedule predicts (backward = 2 x forward);
  /// negative without pipeline parallelism.
  double predictedBubble() const;
  /// overlap_param_gather: the optimizer's deferred gathers move to the
  /// start of the next forward_backward (ParamGatherOverlap).
  Status planParamGather();
  /// The lowered program that runs for `name` now: the first micro-batch's
  /// forward_backward (`first`: its +first variant) and, with overlap, the
  /// last one's and the optimizer after it differ.
  std::string variantOf(const std::string &name, bool first);
  Status launchEagerly(LoweredProgram &program, exec::ProgramResult &result);
  /// --profile-comm after a program's launch; after the optimizer (its
  /// overlapped variant when `overlapped`), the step's times.
  Status endProfiledProgram(const std::string &name, bool overlapped);
  /// Captures `program`'s steps [begin, end) as the CUDA graph `graph`.
  Status capture(const LoweredProgram &program, size_t begin, size_t end,
                 cudaGraphExec_t &graph);
  /// A replay of a program in pieces (stagePieces), each graph captured at
  /// its first replay.
  Status launchPieces(LoweredProgram &program);
  Status copyArena(plan::ArenaKind kind, cudaMemcpyKind direction);
  /// Zero-fills [begin, end) byte ranges of the GRADIENTS arena on the stream.
  Status zeroGradients(const std::vector<std::pair<uint64_t, uint64_t>> &ranges);
  std::string where(const LoweredProgram &program, const Step &step) const;

  const plan::Plan &plan_;
  exec::HostMemory &host_;
  const exec::RankContext *rank_;
  CudaOptions options_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceArenas> arenas_;
  Resources resources_;
  std::map<std::string, LoweredProgram> programs_;
  std::unique_ptr<GradientReduceOverlap> overlap_; // null: the optimizer reduces
  std::unique_ptr<CommProfile> commProfile_;       // null: no --profile-comm
  // --profile-comm: the programs the schedule runs as the optimizer step
  // ("optimizer_step", or "optimizer.<stage>" in pipelines); a step ends there.
  std::set<std::string> optimizerPrograms_;
  std::unique_ptr<ParamGatherOverlap> gathers_;    // null: the optimizer gathers
  bool gathersPending_ = false; // an optimizer step ran without its gathers
  int64_t microBatchesRun_ = 0;                    // forward_backward runs this step
  bool reducedEarly_ = false; // this step's gradients were reduced during backward
  /// clearGradients left the main gradients to the next program (run zero-
  /// fills what its +first variant does not write, or all of them).
  bool gradientsUncleared_ = false;
  InstructionProfile profile_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

namespace {

/// param_offload with pipelines or the distributed optimizer (their staging
/// of per-stage runs and of buckets) has run only on the CPU backend.
Status refuseUntestedParamOffload(const plan::Plan &plan) {
  const char *with = plan.mesh().pp() > 1 ? "--pp > 1"
                     : plan.buckets_size() > 0 ? "use_distributed_optimizer"
                                               : nullptr;
  if (!plan::weightsOffloaded(plan) || !with)
    return Status::ok();
  return Status::error(std::string("--backend cuda: this plan was compiled with param_offload "
                                   "(--param-offload) and ") +
                       with + ", which the CUDA backend does not run yet; run it with "
                       "--backend cpu, or compile it without one of them");
}

} // namespace

CudaExecutor::~CudaExecutor() {
  for (auto &[name, program] : programs_)
    if (program.graph)
      (void)cudaGraphExecDestroy(program.graph);
  for (auto &[name, program] : programs_)
    for (const Piece &piece : program.pieces)
      if (piece.graph)
        (void)cudaGraphExecDestroy(piece.graph);
  if (start_)
    (void)cudaEventDestroy(start_);
  if (stop_)
    (void)cudaEventDestroy(stop_);
  if (stream_)
    (void)cudaStreamDestroy(stream_);
}

Status CudaExecutor::initialize() {
  // What the plan asks that this backend does not run: said before the device.
  if (Status s = refuseUntestedParamOffload(plan_); !s)
    return s;
  if (Status s = plan::checkInstructions(plan_); !s) // plans built in memory
    return s;
  if (deviceCount() == 0)
    return Status::error("--backend cuda: no CUDA device is visible to this process");
  if (rank_)
    if (Status s = selectDevice(rank_->info()); !s)
      return s;
  MT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  MT_CUDA_CHECK(cudaEventCreate(&start_));
  MT_CUDA_CHECK(cudaEventCreate(&stop_));
  DeviceArenas::Coordinate coordinate;
  if (rank_)
    coordinate = [rank = rank_](const std::string &axis) { return rank->coordinate(axis); };
  auto arenas = DeviceArenas::create(plan_, rank_ ? rank_->describe() : std::string(),
                                     host_.slots(), coordinate);
  if (!arenas)
    return arenas.status();
  arenas_ = std::move(*arenas);
  // The offloads' host arenas (param_offload's HOST_WEIGHTS among them).
  for (const plan::Arena &a : plan_.arenas())
    if (DeviceArenas::isHostArena(a.kind()))
      if (Status s = arenas_->pinHostArena(a.kind(), host_.arena(a.kind()),
                                           host_.arenaBytes(a.kind()));
          !s)
        return s;
  resources_.arenas = arenas_.get();
  resources_.host = &host_;
  resources_.rank = rank_;
  resources_.attention = options_.attention;
  resources_.attention.deterministic =
      options_.attentionDeterministic.value_or(plan_.training().deterministic_mode());
  resources_.overlapTransfers = options_.overlapRingTransfers;
  resources_.overlapSequenceParallel = options_.overlapSequenceParallel;
  resources_.moeGemm = options_.moeGemm;
  resources_.moeLanes = options_.moeLanes;
  auto gemm = GemmRunner::create();
  if (!gemm)
    return gemm.status();
  resources_.gemm = std::make_unique<GemmRunner>(std::move(*gemm));
  resources_.gemm->setChoice(options_.gemmChoice);
  if (Status s = lowerAll(); !s)
    return s;
  if (Status s = planOverlap(); !s)
    return s;
  if (Status s = planParamGather(); !s)
    return s;
  if (Status s = planCommProfile(); !s) // after every program variant exists
    return s;
  if (resources_.workspaceBytes > 0) {
    auto workspace = resources_.allocate(resources_.workspaceBytes);
    if (!workspace)
      return workspace.status();
    resources_.workspace = *workspace;
  }
  if (resources_.transferWorkspaceBytes > 0) {
    auto workspace = resources_.allocate(resources_.transferWorkspaceBytes);
    if (!workspace)
      return workspace.status();
    resources_.transferWorkspace = *workspace;
  }
  return Status::ok();
}

/// The suffix of forward_backward's variant for the first micro-batch of a
/// step (CudaExecutor::lowerAll).
static constexpr const char *kFirst = "+first";

/// The name of `program`'s copy for pipeline slot `slot`.
static std::string slotName(const std::string &program, int64_t slot) {
  return slot == 0 ? program : program + "@slot" + std::to_string(slot);
}

Expected<LoweredProgram> CudaExecutor::lowerProgram(Lowerer &lowerer, const plan::Program &p,
                                                    int64_t slot) {
  arenas_->setSlot(slot);
  host_.setSlot(slot);
  auto steps = lowerer.lower(p);
  if (!steps)
    return steps.status();
  LoweredProgram program;
  program.plan = &p;
  program.slot = slot;
  program.steps = std::move(*steps);
  program.order = lowerer.order();
  for (const plan::Instruction &instr : p.instructions()) {
    for (uint32_t out : instr.outputs())
      if (plan_.buffers(out).arena() == plan::OUTPUTS &&
          !plan::isOp(instr, plan::Op::sqrt) && !plan::isOp(instr, plan::Op::lr_schedule))
        program.deviceOutputs.push_back(out);
  }
  // The offloads' copies are host steps (LowerOffload.cpp): a program
  // with them (under param_offload every forward_backward and
  // optimizer_step) runs eagerly, not as a CUDA graph.
  for (const Step &step : program.steps)
    program.capturable &= !step.onHost && !step.checkFinite && !step.collective;
  if (options_.stageGraphs)
    program.pieces = stagePieces(program);
  // The roofline's work of each instruction, but of a zero-fill that a
  // writer made unnecessary (no step launches it; an AdamW instruction
  // that joined an earlier one's launch still counts).
  std::set<int> launched;
  for (const Step &step : program.steps)
    if (step.launch)
      launched.insert(step.instruction);
  for (int i = 0; i < p.instructions_size(); ++i) {
    const plan::Instruction &instr = p.instructions(i);
    if (plan::isOp(instr, plan::Op::fill_zero) && !launched.count(i))
      continue;
    const plan::OpSignature *op = plan::findOp(instr.op());
    const plan::OpFamily family = op ? op->family : plan::OpFamily::Elementwise;
    plan::InstructionWork w = plan::instructionWork(instr, [&](uint32_t id, bool out) {
      return deviceBytes(plan_, *arenas_, id, out, family);
    });
    plan::InstructionWork &sum = program.work[opClass(instr.op())];
    sum.flops += w.flops;
    sum.bytes += w.bytes;
  }
  return program;
}

Status CudaExecutor::lowerAll() {
  Lowerer lowerer(plan_, resources_);
  for (const plan::Program &p : plan_.programs()) {
    // A pipeline stage's forward and backward run for micro-batches in
    // every slot: one copy per slot, each over that slot's buffers (the
    // host's, for the host scalars it reads).
    const int64_t copies = p.virtual_stage() >= 0 ? host_.slots() : 1;
    // Without pipeline stages, forward_backward is the one program that
    // touches the main gradients before the optimizer: its first run of a
    // step (the +first variant) writes the weight gradients instead of
    // adding them to a zeroed arena, and the rest is zero-filled first
    // (Lowerer::setGradientsUnwritten).
    const bool first = p.name() == "forward_backward" && plan_.mesh().pp() == 1 &&
                       arenas_->arena(plan::GRADIENTS) && !host_.mainGradientsOnHost();
    lowerer.setGradientsUnwritten(first);
    for (int64_t slot = 0; slot < copies; ++slot) {
      auto program = lowerProgram(lowerer, p, slot);
      if (!program)
        return program.status();
      if (first) {
        LoweredProgram variant = *program;
        variant.gradientZeroRanges = lowerer.gradientZeroRanges();
        variant.writesGradients = true;
        programs_[p.name() + kFirst] = std::move(variant);
      }
      programs_[slotName(p.name(), slot)] = std::move(*program);
    }
  }
  lowerer.setGradientsUnwritten(false);
  arenas_->setSlot(0);
  host_.setSlot(0);
  return Status::ok();
}

std::string CudaExecutor::inSlot(const std::string &name) const {
  std::string copy = slotName(name, host_.slot());
  return programs_.count(copy) ? copy : name;
}

Expected<std::unique_ptr<exec::PipelineChannels>> CudaExecutor::openPipeline() {
  if (!rank_)
    return Status::error("pipeline channels need the job's ranks (a plan with pp > 1)");
  auto channels = NcclPipelineChannels::create(plan_, *rank_, stream_);
  if (!channels)
    return channels.status();
  return std::unique_ptr<exec::PipelineChannels>(std::move(*channels));
}

static constexpr const char *kOverlapped = "+overlap";

Status CudaExecutor::planOverlap() {
  // mtc sets it only where the dp reduction is the whole one; a plan that
  // asks for it where nothing overlaps (dp 1 too) is refused, not ignored.
  const bool inBf16 = plan_.training().grad_reduce_in_bf16();
  auto refuseBf16 = [](const std::string &why) {
    return Status::error("the plan reduces the dp gradients in bf16 (grad_reduce_in_fp32: "
                         "false), which the CUDA backend does only in the reduction it overlaps "
                         "with backward, and " + why + ": compile the plan without "
                         "--grad-reduce-in-bf16");
  };
  const char *shape = "this plan's reduction does not overlap (pipelines and other shapes "
                      "reduce in the optimizer program)";
  auto fb = programs_.find("forward_backward"), opt = programs_.find("optimizer_step");
  if (!options_.overlapGradReduce)
    return inBf16 ? refuseBf16("MT_CUDA_OVERLAP=0 turns that off") : Status::ok();
  if (!rank_ || fb == programs_.end() || opt == programs_.end())
    return inBf16 ? refuseBf16(shape) : Status::ok();
  auto overlap = GradientReduceOverlap::plan(plan_, *fb->second.plan, fb->second.order,
                                             *opt->second.plan, opt->second.steps, *rank_,
                                             *arenas_,
                                             options_.bucketElements
                                                 ? options_.bucketElements
                                                 : defaultBucketElements(plan_.mesh().dp()),
                                             options_.sparseEmbeddingGrad);
  if (!overlap)
    return overlap.status();
  if (!*overlap)
    return inBf16 ? refuseBf16(shape) : Status::ok();
  overlap_ = std::move(*overlap);
  LoweredProgram reduced = opt->second;
  reduced.steps = overlap_->withoutReductions(opt->second.steps);
  programs_[opt->first + kOverlapped] = std::move(reduced);
  // The last micro-batch reduces as it goes; it may be the first too.
  for (const std::string &variant : {fb->first, fb->first + kFirst})
    if (auto f = programs_.find(variant); f != programs_.end()) {
      LoweredProgram reducing = f->second;
      reducing.steps = overlap_->withReductions(f->second.steps);
      programs_[variant + kOverlapped] = std::move(reducing);
    }
  return Status::ok();
}

Status CudaExecutor::planCommProfile() {
  if (!options_.profileComm)
    return Status::ok();
  commProfile_ = std::make_unique<CommProfile>();
  for (const plan::StageSchedule &stage : plan_.schedule())
    for (const plan::Action &action : stage.actions())
      if (action.kind() == plan::Action::OPTIMIZER_STEP &&
          action.program() < uint32_t(plan_.programs_size()))
        optimizerPrograms_.insert(plan_.programs(int(action.program())).name());
  for (auto &[name, program] : programs_)
    for (Step &step : program.steps)
      if (step.collective && step.launch) // never captured: collectives run eagerly
        step.launch = commProfile_->timed(
            std::move(step.launch),
            step.profileClass ? step.profileClass
                              : opClass(program.plan->instructions(step.instruction).op()));
  return overlap_ ? overlap_->enableProfile() : Status::ok();
}

double CudaExecutor::predictedBubble() const {
  const int64_t pp = plan_.mesh().pp();
  if (pp < 2)
    return -1;
  auto actions = pipelineActions(plan_);
  if (!actions)
    return -1;
  const int64_t vpp = std::max<int64_t>(1, plan_.training().virtual_stages() / pp);
  Expected<double> span = simulate(*actions, pp, vpp, 2.0, virtualStageCosts(plan_));
  return span ? bubbleFraction(*actions, *span) : -1;
}

static constexpr const char *kGathering = "+gather";

Status CudaExecutor::planParamGather() {
  auto fb = programs_.find("forward_backward"), opt = programs_.find("optimizer_step");
  if (fb == programs_.end() || opt == programs_.end())
    return Status::ok(); // pipelines: the optimizer gathers
  auto gathers = ParamGatherOverlap::plan(plan_, *fb->second.plan, *opt->second.plan,
                                          opt->second.steps, *arenas_);
  if (!gathers)
    return gathers.status();
  if (!*gathers)
    return Status::ok();
  gathers_ = std::move(*gathers);
  // Every optimizer variant leaves its gathers to the next forward, whose
  // variants (the last micro-batch's too, with overlap) start with them.
  for (const std::string &variant : {std::string(), std::string(kOverlapped)})
    if (auto o = programs_.find(opt->first + variant); o != programs_.end()) {
      o->second.steps = gathers_->withoutGathers(o->second.steps);
      o->second.capturable = false;
    }
  const std::string first = kFirst, overlapped = kOverlapped;
  for (const std::string &variant : {std::string(), overlapped, first, first + overlapped}) {
    if (auto f = programs_.find(fb->first + variant); f != programs_.end()) {
      LoweredProgram gathering = f->second;
      gathering.steps = gathers_->withGathers(f->second.steps);
      gathering.capturable = false;
      programs_[f->first + kGathering] = std::move(gathering);
    }
  }
  return Status::ok();
}

std::string CudaExecutor::variantOf(const std::string &name, bool first) {
  std::string variant = first ? name + kFirst : name;
  if (overlap_ && name == "forward_backward" &&
      ++microBatchesRun_ == plan_.training().micro_batches_per_step()) {
    reducedEarly_ = true;
    variant += kOverlapped;
  } else if (overlap_ && name == "optimizer_step" && reducedEarly_) {
    reducedEarly_ = false;
    variant += kOverlapped;
  }
  if (gathers_ && name == "forward_backward" && gathersPending_) {
    gathersPending_ = false;
    variant += kGathering;
  } else if (gathers_ && name == "optimizer_step") {
    gathersPending_ = true;
  }
  return variant;
}

std::string CudaExecutor::where(const LoweredProgram &program, const Step &step) const {
  std::string rank = rank_ ? rank_->describe() + " " : std::string();
  const plan::Instruction &instr = program.plan->instructions(step.instruction);
  return rank + "program '" + program.plan->name() + "' instruction " +
         std::to_string(step.instruction) + " (" + instr.op() +
         (instr.location().empty() ? "" : ", " + instr.location()) + "): ";
}

Status CudaExecutor::launchEagerly(LoweredProgram &program, exec::ProgramResult &result) {
  bool profile = options_.profile && program.runs > 0;
  for (const Step &step : program.steps) {
    if (step.checkFinite && !std::isfinite(*step.checkFinite)) {
      uint32_t id = program.plan->instructions(step.instruction).inputs(0);
      result = {true, "'" + plan_.buffers(id).name() + "' is " +
                          std::to_string(*step.checkFinite)};
      return Status::ok();
    }
    if (!step.launch)
      continue;
    ScopedErrorContext context(where(program, step));
    std::chrono::steady_clock::time_point issued;
    if (profile) {
      issued = std::chrono::steady_clock::now();
      MT_CUDA_CHECK(cudaEventRecord(start_, stream_));
    }
    MT_CUDA_RETURN_IF_ERROR(step.launch(stream_));
    if (profile) {
      const double hostMs =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - issued)
              .count();
      MT_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      MT_CUDA_CHECK(cudaEventSynchronize(stop_));
      float ms = 0;
      MT_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      const std::string &op = program.plan->instructions(step.instruction).op();
      profile_.record(step.profileClass ? step.profileClass : opClass(op), op, ms, hostMs);
    }
    if (options_.syncEachInstruction)
      MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  if (profile) // only to the classes that launched something
    for (const auto &[name, w] : program.work)
      profile_.addWork(name, w.flops, w.bytes);
  return Status::ok();
}

Status CudaExecutor::capture(const LoweredProgram &program, size_t begin, size_t end,
                             cudaGraphExec_t &graphExec) {
  ScopedErrorContext context((rank_ ? rank_->describe() + " " : std::string()) +
                             "capturing program '" + program.plan->name() + "': ");
  MT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  Status launched = Status::ok();
  for (size_t i = begin; i < end; ++i)
    if (const Step &step = program.steps[i]; step.launch && launched)
      launched = step.launch(stream_);
  cudaGraph_t graph = nullptr;
  cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  if (!launched) {
    if (graph)
      (void)cudaGraphDestroy(graph);
    return launched;
  }
  MT_CUDA_CHECK(ended);
  cudaError_t made = cudaGraphInstantiate(&graphExec, graph, 0);
  (void)cudaGraphDestroy(graph);
  MT_CUDA_CHECK(made);
  return Status::ok();
}

Status CudaExecutor::launchPieces(LoweredProgram &program) {
  for (Piece &piece : program.pieces) {
    if (piece.eager) {
      for (size_t i = piece.begin; i < piece.end; ++i)
        if (const Step &step = program.steps[i]; step.launch) {
          ScopedErrorContext context(where(program, step));
          MT_CUDA_RETURN_IF_ERROR(step.launch(stream_));
        }
      continue;
    }
    if (!piece.graph)
      if (Status s = capture(program, piece.begin, piece.end, piece.graph); !s)
        return s;
    ScopedErrorContext context(where(program, program.steps[piece.begin]) +
                               "a CUDA graph from here (MT_CUDA_SYNC=1 names the failing "
                               "instruction): ");
    MT_CUDA_CHECK(cudaGraphLaunch(piece.graph, stream_));
  }
  return Status::ok();
}

Expected<exec::ProgramResult> CudaExecutor::run(const std::string &name,
                                                const std::function<void(int)> &afterEach) {
  if (afterEach)
    return Status::error("the CUDA backend keeps activations on the GPU: per-instruction "
                         "host callbacks need --backend cpu");
  // The first program after clearGradients: its +first variant writes the
  // gradients it can; for any other, the arena is cleared first.
  bool first = false;
  if (gradientsUncleared_) {
    gradientsUncleared_ = false;
    first = programs_.count(name + kFirst) > 0;
    if (!first)
      MT_CUDA_RETURN_IF_ERROR(zeroGradients({{0, arenas_->arenaBytes(plan::GRADIENTS)}}));
  }
  auto it = programs_.find(inSlot(variantOf(name, first)));
  if (it == programs_.end())
    return Status::error("the plan has no program '" + name + "'");
  LoweredProgram &program = it->second;
  // Read by the weight gradients' launches, and so fixed in the variant's
  // CUDA graph when it is captured.
  resources_.gradientsUnwritten = program.writesGradients;
  if (program.writesGradients)
    MT_CUDA_RETURN_IF_ERROR(zeroGradients(program.gradientZeroRanges));
  auto started = std::chrono::steady_clock::now();
  exec::ProgramResult result;
  // The first run is eager: it warms what launchers set up on first use
  // (cuBLASLt algorithms), which capture must not see.
  const bool graphs = options_.graphs && !options_.profile && !options_.syncEachInstruction &&
                      program.runs > 0;
  const bool replay = graphs && program.capturable;
  if (replay && !program.graph)
    if (Status s = capture(program, 0, program.steps.size(), program.graph); !s)
      return s;
  if (commProfile_)
    MT_CUDA_RETURN_IF_ERROR(commProfile_->beginProgram(stream_));
  if (replay) {
    ScopedErrorContext context("program '" + name + "' (CUDA graph; MT_CUDA_SYNC=1 names "
                               "the failing instruction): ");
    MT_CUDA_CHECK(cudaGraphLaunch(program.graph, stream_));
  } else if (graphs && !program.pieces.empty()) {
    if (Status s = launchPieces(program); !s)
      return s;
  } else if (Status s = launchEagerly(program, result); !s) {
    return s;
  }
  if (commProfile_)
    if (Status s = endProfiledProgram(name, it->first.find(kOverlapped) != std::string::npos);
        !s)
      return s;
  if (!program.deviceOutputs.empty() || options_.profile) {
    ScopedErrorContext context("program '" + name + "' (reading its outputs): ");
    arenas_->setSlot(program.slot);
    for (uint32_t id : program.deviceOutputs)
      MT_CUDA_CHECK(cudaMemcpyAsync(host_.data(id), arenas_->data(id),
                                    plan_.buffers(id).size_bytes(), cudaMemcpyDeviceToHost,
                                    stream_));
    MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  if (options_.profile && program.runs > 0) {
    profile_.addWall(name, std::chrono::duration<double, std::milli>(
                               std::chrono::steady_clock::now() - started)
                               .count());
  }
  program.runs += 1;
  return result;
}

Status CudaExecutor::endProfiledProgram(const std::string &name, bool overlapped) {
  ScopedErrorContext context("--profile-comm, program '" + name + "': ");
  MT_CUDA_RETURN_IF_ERROR(commProfile_->endProgram(stream_));
  if (!optimizerPrograms_.count(name))
    return Status::ok();
  // After the optimizer, the compute stream has passed this step's events.
  Expected<OverlapTimes> times = OverlapTimes{};
  if (overlapped) {
    MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    times = overlap_->measured();
    if (!times)
      return times.status();
  }
  return commProfile_->endStep(stream_, overlapped ? &*times : nullptr);
}

Status CudaExecutor::clearGradients() {
  microBatchesRun_ = 0;
  reducedEarly_ = false;
  if (commProfile_)
    MT_CUDA_RETURN_IF_ERROR(commProfile_->beginStep(stream_));
  ScopedErrorContext context("clearing the gradients: ");
  if (programs_.count(std::string("forward_backward") + kFirst))
    gradientsUncleared_ = true; // cleared as the next program needs (run)
  else
    MT_CUDA_RETURN_IF_ERROR(zeroGradients({{0, arenas_->arenaBytes(plan::GRADIENTS)}}));
  if (host_.mainGradientsOnHost()) {
    // grad_offload: the main gradients are the pinned host arena; the last
    // step's copies of them are done before the host zero-fills it.
    MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (resources_.copyStream)
      MT_CUDA_CHECK(cudaStreamSynchronize(resources_.copyStream));
    host_.clear(plan::HOST_GRADIENTS);
  }
  return Status::ok();
}

Status CudaExecutor::zeroGradients(const std::vector<std::pair<uint64_t, uint64_t>> &ranges) {
  ScopedErrorContext context("clearing the gradients: ");
  if (std::byte *g = arenas_->arena(plan::GRADIENTS))
    for (const auto &[begin, end] : ranges)
      if (end > begin)
        MT_CUDA_CHECK(cudaMemsetAsync(g + begin, 0, end - begin, stream_));
  return Status::ok();
}

Status CudaExecutor::copyArena(plan::ArenaKind kind, cudaMemcpyKind direction) {
  std::byte *device = arenas_->arena(kind), *host = host_.arena(kind);
  uint64_t bytes = std::min(arenas_->arenaBytes(kind), host_.arenaBytes(kind));
  if (!device || !host || bytes == 0)
    return Status::ok();
  if (direction == cudaMemcpyHostToDevice)
    MT_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, direction, stream_));
  else
    MT_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, direction, stream_));
  return Status::ok();
}

Status CudaExecutor::inputsWritten() {
  ScopedErrorContext context("copying the inputs to the GPU: ");
  arenas_->setSlot(host_.slot()); // a pipeline's micro-batch fills its own slot
  return copyArena(plan::INPUTS, cudaMemcpyHostToDevice);
}

Status CudaExecutor::stateWritten() {
  gathersPending_ = false; // the host's weights replace them
  ScopedErrorContext context("copying the weights to the GPU: ");
  MT_CUDA_RETURN_IF_ERROR(writeWeights(plan_, host_, *arenas_, stream_));
  MT_CUDA_RETURN_IF_ERROR(copyArena(plan::OPTIMIZER, cudaMemcpyHostToDevice));
  MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return Status::ok();
}

Status CudaExecutor::readState() {
  if (gathersPending_) {
    ScopedErrorContext context("gathering the updated weights: ");
    MT_CUDA_RETURN_IF_ERROR(gathers_->gatherNow(stream_));
    gathersPending_ = false;
  }
  ScopedErrorContext context("copying the weights from the GPU: ");
  MT_CUDA_RETURN_IF_ERROR(copyArena(plan::OPTIMIZER, cudaMemcpyDeviceToHost));
  MT_CUDA_RETURN_IF_ERROR(readWeights(plan_, host_, *arenas_, rank_, stream_));
  if (arenas_->arena(plan::PARAMETERS))
    return Status::ok();
  // The copies to the host arenas are done: optimizer_offload's masters
  // and param_offload's HOST_WEIGHTS (the weights themselves, which its
  // optimizer's copies to the host have updated).
  if (resources_.copyStream)
    MT_CUDA_CHECK(cudaStreamSynchronize(resources_.copyStream));
  // optimizer_offload without param_offload (plan::fp32WeightsOnHost): the
  // fp32 weights are the host masters.
  for (const plan::Parameter &p : plan_.parameters())
    if (p.trainable() && p.master_buffer() != 0 &&
        plan_.buffers(p.param_buffer()).arena() == plan::PARAMETERS &&
        host_.data(p.param_buffer()) != host_.data(p.master_buffer()))
      std::memcpy(host_.data(p.param_buffer()), host_.data(p.master_buffer()),
                  plan_.buffers(p.param_buffer()).size_bytes());
  return Status::ok();
}

std::string CudaExecutor::profileReport() const {
  std::ostringstream out;
  size_t free = 0, total = 0;
  (void)cudaMemGetInfo(&free, &total);
  out << "GPU memory: plan arenas " << std::fixed << std::setprecision(2)
      << double(arenas_->totalBytes()) / double(1ull << 30) << " GiB, workspaces "
      << double(resources_.workspaceBytes) / double(1ull << 30) << " GiB; device in use "
      << double(total - free) / double(1ull << 30) << " GiB\n";
  if (commProfile_)
    out << commProfile_->report(predictedBubble());
  if (!profile_.empty())
    out << profile_.report();
  return out.str();
}

} // namespace

Expected<std::unique_ptr<exec::Executor>> createCudaExecutor(const plan::Plan &plan,
                                                             exec::HostMemory &host,
                                                             const exec::RankContext *rank,
                                                             const CudaOptions &options) {
  auto executor = std::make_unique<CudaExecutor>(plan, host, rank, options);
  if (Status s = executor->initialize(); !s)
    return s;
  return std::unique_ptr<exec::Executor>(std::move(executor));
}

} // namespace mt::cuda
