// The CUDA executor: lowering at creation (CudaExecutorPrograms.cpp), eager
// or graph replay per program, host<->device copies of the state the host
// owns, profiling.
#include "runtime/cuda/CudaExecutorImpl.h"
#include "runtime/plan/CudaSupport.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>

namespace mt::cuda {

namespace executor {

CudaExecutor::~CudaExecutor() {
  for (auto &[name, program] : programs_) {
    for (cudaGraphExec_t graph : {program.graph, program.timedGraph})
      if (graph)
        (void)cudaGraphExecDestroy(graph);
    for (cudaEvent_t event : program.timedEvents)
      if (event)
        (void)cudaEventDestroy(event);
  }
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
  if (std::optional<plan::CudaGap> gap = plan::cudaGapOf(plan_))
    return Status::error("--backend cuda: this plan " + gap->what +
                         ", which the CUDA backend does not run yet; run it with --backend cpu, "
                         "or compile it " + gap->fix);
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

Expected<std::unique_ptr<exec::PipelineChannels>> CudaExecutor::openPipeline() {
  if (!rank_)
    return Status::error("pipeline channels need the job's ranks (a plan with pp > 1)");
  auto channels = NcclPipelineChannels::create(plan_, *rank_, stream_);
  if (!channels)
    return channels.status();
  return std::unique_ptr<exec::PipelineChannels>(std::move(*channels));
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
  if (profile)
    recordWork(program);
  return Status::ok();
}

void CudaExecutor::recordWork(const LoweredProgram &program) {
  for (const auto &[name, w] : program.work) // only to the classes that launched something
    profile_.addWork(name, w.flops, w.bytes);
}

Status CudaExecutor::launchTimed(LoweredProgram &program) {
  if (!program.timedGraph) {
    if (program.timedEvents.empty()) { // not after a failed capture
      const auto launching = std::count_if(program.steps.begin(), program.steps.end(),
                                           [](const Step &step) { return bool(step.launch); });
      program.timedEvents.assign(size_t(launching) + 1, nullptr);
      ScopedErrorContext context("--profile's events: ");
      for (cudaEvent_t &event : program.timedEvents)
        MT_CUDA_CHECK(cudaEventCreate(&event));
    }
    if (Status s = capture(program, 0, program.steps.size(), program.timedGraph,
                           &program.timedEvents);
        !s)
      return s;
  }
  ScopedErrorContext context("program '" + program.plan->name() + "' (CUDA graph with --profile's "
                             "events; MT_CUDA_SYNC=1 names the failing instruction): ");
  MT_CUDA_CHECK(cudaGraphLaunch(program.timedGraph, stream_));
  return Status::ok();
}

Status CudaExecutor::recordTimedRun(const LoweredProgram &program) {
  ScopedErrorContext context("--profile, program '" + program.plan->name() + "': ");
  size_t k = 0; // the events around the k-th launching step: k and k + 1
  for (const Step &step : program.steps) {
    if (!step.launch)
      continue;
    float ms = 0;
    MT_CUDA_CHECK(
        cudaEventElapsedTime(&ms, program.timedEvents[k], program.timedEvents[k + 1]));
    ++k;
    const std::string &op = program.plan->instructions(step.instruction).op();
    profile_.recordInGraph(step.profileClass ? step.profileClass : opClass(op), op, ms);
  }
  recordWork(program);
  return Status::ok();
}

Status CudaExecutor::capture(const LoweredProgram &program, size_t begin, size_t end,
                             cudaGraphExec_t &graphExec, const std::vector<cudaEvent_t> *timing) {
  ScopedErrorContext context((rank_ ? rank_->describe() + " " : std::string()) +
                             "capturing program '" + program.plan->name() + "': ");
  MT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  Status launched = Status::ok();
  size_t marks = 0;
  // External: a node of the graph, recorded by every replay.
  auto mark = [&]() -> Status {
    if (!timing)
      return Status::ok();
    MT_CUDA_CHECK(cudaEventRecordWithFlags((*timing)[marks++], stream_, cudaEventRecordExternal));
    return Status::ok();
  };
  launched = mark();
  for (size_t i = begin; i < end; ++i)
    if (const Step &step = program.steps[i]; step.launch && launched)
      if (launched = step.launch(stream_); launched)
        launched = mark();
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
      MT_CUDA_RETURN_IF_ERROR(zeroGradients(allGradients()));
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
  // (cuBLASLt algorithms), which capture must not see. --profile times a
  // program that replays as one graph inside its replay (the clocks and
  // gaps of a real step), any other instruction by instruction.
  const bool graphs = options_.graphs && !options_.syncEachInstruction && program.runs > 0;
  const bool timed = graphs && options_.profile && program.capturable;
  const bool replay = graphs && !options_.profile && program.capturable;
  if (replay && !program.graph)
    if (Status s = capture(program, 0, program.steps.size(), program.graph); !s)
      return s;
  if (commProfile_)
    MT_CUDA_RETURN_IF_ERROR(commProfile_->beginProgram(stream_));
  if (replay) {
    ScopedErrorContext context("program '" + name + "' (CUDA graph; MT_CUDA_SYNC=1 names "
                               "the failing instruction): ");
    MT_CUDA_CHECK(cudaGraphLaunch(program.graph, stream_));
  } else if (timed) {
    if (Status s = launchTimed(program); !s)
      return s;
  } else if (graphs && !options_.profile && !program.pieces.empty()) {
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
  if (timed)
    if (Status s = recordTimedRun(program); !s)
      return s;
  if (options_.profile && program.runs > 0)
    profile_.addWall(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count());
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
  // --profile skips each program's first run, and so the first step.
  if (options_.profile && stepsStarted_++ > 0)
    profile_.addStep();
  microBatchesRun_ = 0;
  reducedEarly_ = false;
  if (commProfile_)
    MT_CUDA_RETURN_IF_ERROR(commProfile_->beginStep(stream_));
  ScopedErrorContext context("clearing the gradients: ");
  if (programs_.count(std::string("forward_backward") + kFirst))
    gradientsUncleared_ = true; // cleared as the next program needs (run)
  else
    MT_CUDA_RETURN_IF_ERROR(zeroGradients(allGradients()));
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

std::vector<plan::ByteRange> CudaExecutor::allGradients() const {
  return {{0, arenas_->arenaBytes(plan::GRADIENTS)}};
}

Status CudaExecutor::zeroGradients(const std::vector<plan::ByteRange> &ranges) {
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
  if (arenas_->arena(plan::PARAMETERS) || arenas_->parameterRemainders())
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
  auto executor = std::make_unique<executor::CudaExecutor>(plan, host, rank, options);
  if (Status s = executor->initialize(); !s)
    return s;
  return std::unique_ptr<exec::Executor>(std::move(executor));
}

} // namespace mt::cuda
