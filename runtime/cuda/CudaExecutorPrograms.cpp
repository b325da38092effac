// The CUDA executor's programs: each plan program lowered once (a copy per
// pipeline slot), and the variants the executor picks per run (the first
// micro-batch's, overlapped gradient reduction, deferred parameter gathers).
#include "runtime/cuda/CudaExecutorImpl.h"

namespace mt::cuda::executor {

/// The bytes an instruction of `family` moves of buffer `id` on the GPU:
/// half the planned size of a bf16 activation; of a parameter (or its
/// staged copy, param_offload), the bf16 shadow the layers read, or the
/// fp32 master the optimizer reads and writes with the shadow it also
/// writes (or the shadow and the master's low bits, 2 + 2 bytes each way).
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
    return isOutput && !arenas.remainderData(id) ? planned * 1.5 : planned;
  default:
    return planned;
  }
}


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

} // namespace mt::cuda::executor
