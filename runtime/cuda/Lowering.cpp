// The lowering driver: operand views, write-or-add decisions, fill_zero.
#include "runtime/cuda/Lowering.h"

#include "runtime/cuda/Check.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/OverlapOrder.h"

#include <algorithm>
#include <numeric>

namespace mt::cuda {

Resources::~Resources() {
  for (void *p : owned)
    (void)cudaFree(p);
  for (cudaEvent_t e : events)
    (void)cudaEventDestroy(e);
  for (cudaStream_t s : {transferStream, copyStream})
    if (s)
      (void)cudaStreamDestroy(s);
}

Expected<cudaEvent_t> Resources::event() {
  cudaEvent_t e = nullptr;
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  events.push_back(e);
  return e;
}

Expected<void *> Resources::allocate(size_t bytes) {
  void *p = nullptr;
  MT_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 256)));
  owned.push_back(p);
  MT_CUDA_CHECK(cudaMemset(p, 0, std::max<size_t>(bytes, 256)));
  return p;
}

std::string Lowerer::describe(uint32_t id) const {
  const plan::Buffer &b = plan_.buffers(id);
  // Appended, not "%" + ...: GCC 12 warns falsely (-Wrestrict) on that
  // chain once it is inlined.
  std::string text = "%";
  text += std::to_string(id) + " '" + b.name() + "' (" + plan::ArenaKind_Name(b.arena()) + " " +
          plan::DType_Name(b.dtype()) + ")";
  return text;
}

bf16 *Lowerer::bf(uint32_t id, const char *role, int i) {
  if (bf16 *p = res_.arenas->bf16Data(id))
    return p;
  fail(std::string(role) + " " + std::to_string(i) + " " + describe(id) +
       " must be a bf16 activation or a parameter");
  return nullptr;
}

float *Lowerer::f32(uint32_t id, const char *role, int i) {
  const plan::Buffer &b = plan_.buffers(id);
  if (b.dtype() == plan::F32 &&
      res_.arenas->storage(id) != DeviceArenas::Storage::Bf16Activation) {
    if (std::byte *p = res_.arenas->data(id))
      return reinterpret_cast<float *>(p);
    fail(std::string(role) + " " + std::to_string(i) + " " + describe(id) +
         " has no fp32 copy on the GPU (optimizer_offload keeps the fp32 weights on the host "
         "and the GPU their bf16 copy; the distributed optimizer keeps only the rank's shard "
         "of a bucket's fp32 masters; where AdamW alone reads fp32 weights, the GPU keeps "
         "each as its bf16 copy and low bits, plan::masterRemainders)");
    return nullptr;
  }
  fail(std::string(role) + " " + std::to_string(i) + " " + describe(id) +
       " must be an fp32 buffer (gradients, optimizer state, inputs, outputs)");
  return nullptr;
}

const int32_t *Lowerer::i32In(int i) {
  uint32_t id = instr_->inputs(i);
  if (plan_.buffers(id).dtype() == plan::I32)
    return reinterpret_cast<const int32_t *>(res_.arenas->data(id));
  fail("input " + std::to_string(i) + " " + describe(id) + " must be I32");
  return nullptr;
}

int32_t *Lowerer::i32Out(int i) {
  uint32_t id = target(i, Capability::Writes);
  if (plan_.buffers(id).dtype() == plan::I32)
    return reinterpret_cast<int32_t *>(res_.arenas->data(id));
  fail("output " + std::to_string(i) + " " + describe(id) + " must be I32");
  return nullptr;
}

std::optional<plan::ByteRange> Lowerer::gradientRange(uint32_t id) const {
  const std::byte *base = res_.arenas->arena(plan::GRADIENTS);
  if (plan_.buffers(id).arena() != plan::GRADIENTS || !base || !res_.arenas->data(id))
    return std::nullopt;
  const auto [begin, end] = deviceRange(id);
  return plan::ByteRange{uint64_t(begin - base), uint64_t(end - base)};
}

std::function<bool()> Lowerer::f32OutOrSum(int i, float *&out) {
  bool add = true;
  out = f32(target(i, Capability::WritesOrAdds, &add), "output", i);
  if (add)
    return [] { return true; };
  if (plan_.buffers(instr_->outputs(i)).arena() != plan::GRADIENTS)
    return [] { return false; }; // over a dropped zero-fill
  const bool *unwritten = &res_.gradientsUnwritten;
  return [unwritten] { return !*unwritten; };
}

uint32_t Lowerer::target(int i, Capability capability, bool *add) {
  uint32_t id = instr_->outputs(i);
  auto pending = pendingZero_.find(id);
  bool zeroed = pending != pendingZero_.end();
  // A main gradient no instruction touched yet holds zeros (or is written
  // whole by the writer this decides on).
  const std::optional<plan::ByteRange> gradient =
      gradientsUnwritten_ ? gradientRange(id) : std::nullopt;
  const bool unwritten = gradient && firstWrites_.untouched(*gradient);
  bool adds = false;
  switch (plan::outputUse(instr_->op(), zeroed || unwritten, capability)) {
  case plan::OutputUse::Write:
    break;
  case plan::OutputUse::WriteOverZeroFill:
    if (zeroed)
      steps_[pending->second].launch = nullptr; // the writer replaces the fill
    else
      firstWrites_.wrote(*gradient); // kept out of the caller's zero-fill
    break;
  case plan::OutputUse::AddIntoZeroFill: // the fill stays
  case plan::OutputUse::AddToEarlierValues:
    adds = true;
    break;
  case plan::OutputUse::ErrorMustAddButWrites:
    fail("output " + describe(id) + " adds to earlier values, and the CUDA kernel of '" +
         instr_->op() + "' can only write it");
    adds = true;
    break;
  case plan::OutputUse::ErrorMustWriteButAdds:
    fail("output " + describe(id) + " is written by '" + instr_->op() +
         "', whose CUDA kernel can only add to it");
    break;
  }
  if (zeroed)
    pendingZero_.erase(pending);
  if (gradient)
    firstWrites_.touch(*gradient);
  if (add)
    *add = adds;
  return id;
}

void *Lowerer::sumOut(int i, bool &isBf16) {
  uint32_t id = target(i, Capability::Adds);
  isBf16 = res_.arenas->storage(id) == DeviceArenas::Storage::Bf16Activation;
  return isBf16 ? static_cast<void *>(res_.arenas->bf16Data(id))
                : static_cast<void *>(f32(id, "output", i));
}

const int64_t *Lowerer::hostI64In(int i) {
  uint32_t id = instr_->inputs(i);
  const plan::Buffer &b = plan_.buffers(id);
  if (b.dtype() == plan::I64 && b.arena() == plan::INPUTS)
    return res_.host->i64(id);
  fail("input " + std::to_string(i) + " " + describe(id) + " must be an I64 input");
  return nullptr;
}

bf16 *Lowerer::bfOutOrSum(int i, bool &add) {
  return bf(target(i, Capability::WritesOrAdds, &add), "output", i);
}

float *Lowerer::hostScalar(uint32_t id) {
  const plan::Buffer &b = plan_.buffers(id);
  if (b.arena() == plan::OUTPUTS || b.arena() == plan::INPUTS)
    return reinterpret_cast<float *>(res_.host->data(id));
  return &res_.hostScalars[id];
}

void Lowerer::fillZero() {
  uint32_t id = instr_->outputs(0);
  bool bf16Activation = res_.arenas->storage(id) == DeviceArenas::Storage::Bf16Activation;
  void *p = bf16Activation ? static_cast<void *>(res_.arenas->bf16Data(id))
                           : static_cast<void *>(res_.arenas->data(id));
  size_t bytes = size_t(plan::elementsOf(plan_.buffers(id))) * (bf16Activation ? 2 : 4);
  emit([p, bytes](cudaStream_t s) -> Status {
    MT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, s));
    return Status::ok();
  });
  if (bf16Activation)
    pendingZero_[id] = steps_.size() - 1;
}

namespace {
const LoweringTable &loweringTable() {
  static const LoweringTable table = [] {
    LoweringTable t;
    t[plan::Op::fill_zero] = [](Lowerer &L, const plan::Attrs &) { L.fillZero(); };
    addDenseLowerings(t);
    addAttentionLowerings(t);
    addOptimizerLowerings(t);
    addOffloadLowerings(t);
    addVocabParallelLowerings(t);
    addMoELowerings(t);
    addExpertParallelLowerings(t);
    addCollectiveLowerings(t);
    addPipelineLowerings(t);
    return t;
  }();
  return table;
}
} // namespace

std::pair<const std::byte *, const std::byte *> Lowerer::deviceRange(uint32_t id) const {
  const bool half = res_.arenas->storage(id) == DeviceArenas::Storage::Bf16Activation;
  const auto *begin = half ? reinterpret_cast<const std::byte *>(res_.arenas->bf16Data(id))
                           : res_.arenas->data(id);
  return {begin, begin + size_t(plan::elementsOf(plan_.buffers(id))) * (half ? 2 : 4)};
}

void *Lowerer::workspaceFor(size_t bytes) {
  if (instr_->has_workspace()) {
    // The buffer is the kernel's alone while it runs; aligned as
    // cudaMalloc aligns the shared one.
    const auto [begin, end] = deviceRange(instr_->workspace());
    const uintptr_t first = reinterpret_cast<uintptr_t>(begin);
    const uintptr_t aligned = (first + plan::kPlannedWorkspaceAlignment - 1) /
                              plan::kPlannedWorkspaceAlignment *
                              plan::kPlannedWorkspaceAlignment;
    const auto *from = reinterpret_cast<const std::byte *>(aligned);
    // Bytes a transfer overlapping compute still reads or writes (the
    // input of a collective whose result nothing read yet) are not free on
    // the device, though dead in the plan's order: waiting for it would
    // undo the overlap.
    const bool inFlight = std::any_of(inFlight_.begin(), inFlight_.end(), [&](const InFlight &f) {
      return std::any_of(f.ranges.begin(), f.ranges.end(), [&](const Range &r) {
        return from < r.second && r.first < from + bytes;
      });
    });
    if (aligned + bytes <= reinterpret_cast<uintptr_t>(end) && !inFlight)
      return reinterpret_cast<void *>(aligned);
  }
  needWorkspace(bytes);
  return nullptr;
}

void Lowerer::emitOverlappedCollective(Launch launch, const std::vector<uint32_t> &buffers,
                                       Launch finish) {
  if (!res_.transferStream) {
    if (cudaError_t e = cudaStreamCreateWithFlags(&res_.transferStream, cudaStreamNonBlocking);
        e != cudaSuccess)
      return fail(std::string("creating the transfer stream: ") + cudaGetErrorString(e));
  }
  auto fork = res_.event(), done = res_.event();
  if (!fork || !done)
    return fail(fork ? done.message() : fork.message());
  cudaStream_t transfer = res_.transferStream;
  emitCollective([launch = std::move(launch), transfer, fork = *fork,
                  done = *done](cudaStream_t s) -> Status {
    MT_CUDA_CHECK(cudaEventRecord(fork, s));
    MT_CUDA_CHECK(cudaStreamWaitEvent(transfer, fork, 0));
    MT_CUDA_RETURN_IF_ERROR(launch(transfer));
    MT_CUDA_CHECK(cudaEventRecord(done, transfer));
    return Status::ok();
  });
  InFlight flight{{}, *done, index_, std::move(finish)};
  for (uint32_t id : buffers)
    flight.ranges.push_back(deviceRange(id));
  inFlight_.push_back(std::move(flight));
}

void Lowerer::waitForTransfers(const plan::Instruction &instr, bool all) {
  // Only instructions after the transfer in the plan's order: one before
  // it (a weight gradient deferred past it) touches none of its memory the
  // transfer writes meanwhile (plan::deferWeightGradients), and must read
  // what a `finish` overwrites first.
  auto touches = [&](const InFlight &flight) {
    if (all)
      return true;
    if (index_ < flight.instruction)
      return false;
    // Not its planned workspace: workspaceFor leaves one that a transfer
    // still uses for the shared workspace rather than wait.
    for (const auto *ids : {&instr.inputs(), &instr.outputs()})
      for (uint32_t id : *ids) {
        const auto [begin, end] = deviceRange(id);
        for (const auto &[b, e] : flight.ranges)
          if (begin < e && b < end)
            return true;
      }
    return false;
  };
  // Transfers finish in their stream's order: waiting for the last one that
  // must be waited for covers those before it.
  size_t waited = 0;
  for (size_t i = 0; i < inFlight_.size(); ++i)
    if (touches(inFlight_[i]))
      waited = i + 1;
  if (waited == 0)
    return;
  const cudaEvent_t done = inFlight_[waited - 1].done;
  std::vector<Launch> finishes;
  for (size_t i = 0; i < waited; ++i)
    if (inFlight_[i].finish)
      finishes.push_back(inFlight_[i].finish);
  lastStep_.reset(); // no later instruction joins a step from before the wait
  // A collective step: --profile-comm times the wait as the communication
  // the compute stream did not hide.
  steps_.push_back({[done, finishes](cudaStream_t s) -> Status {
                      MT_CUDA_CHECK(cudaStreamWaitEvent(s, done, 0));
                      for (const Launch &finish : finishes)
                        MT_CUDA_RETURN_IF_ERROR(finish(s));
                      return Status::ok();
                    },
                    index_, false, true, nullptr, "communication (NCCL)"});
  inFlight_.erase(inFlight_.begin(), inFlight_.begin() + std::ptrdiff_t(waited));
}

bool Lowerer::touches(uint32_t id, const std::vector<Range> &ranges) const {
  auto overlaps = [&](const Range &own) {
    for (const auto &[begin, end] : ranges)
      if (own.first && own.first < end && begin < own.second)
        return true;
    return false;
  };
  if (overlaps(deviceRange(id)))
    return true;
  const DeviceArenas::Storage storage = res_.arenas->storage(id);
  const bf16 *copy = storage == DeviceArenas::Storage::Parameter ||
                             storage == DeviceArenas::Storage::StagedWeight
                         ? res_.arenas->bf16Data(id)
                         : nullptr;
  const int64_t n = plan::elementsOf(plan_.buffers(id));
  if (const uint16_t *low = res_.arenas->remainderData(id);
      low && overlaps({reinterpret_cast<const std::byte *>(low),
                       reinterpret_cast<const std::byte *>(low + n)}))
    return true;
  return copy && overlaps({reinterpret_cast<const std::byte *>(copy),
                           reinterpret_cast<const std::byte *>(copy + n)});
}

bool Lowerer::recordAfterLastUse(const std::vector<Range> &ranges, cudaEvent_t event) {
  for (auto it = issued_.rbegin(); it != issued_.rend(); ++it) {
    const plan::Instruction &in = program_->instructions(it->first);
    bool used = false;
    for (uint32_t id : plan::buffersTouched(in))
      used = used || touches(id, ranges);
    if (!used)
      continue;
    // Its work ends with the last step emitted by then; a fill that a
    // later writer may still drop (pendingZero_) holds no such work.
    const size_t last = it->second;
    if (last == 0)
      return false;
    Step &step = steps_[last - 1];
    if (step.collective || std::any_of(pendingZero_.begin(), pendingZero_.end(),
                                       [&](const auto &p) { return p.second == last - 1; }))
      return false;
    step.launch = [launch = std::move(step.launch), event](cudaStream_t s) -> Status {
      if (launch)
        MT_CUDA_RETURN_IF_ERROR(launch(s));
      MT_CUDA_CHECK(cudaEventRecord(event, s));
      return Status::ok();
    };
    return true;
  }
  return false;
}

void Lowerer::orderInstructions(const plan::Program &program) {
  order_.resize(size_t(program.instructions_size()));
  std::iota(order_.begin(), order_.end(), 0);
  overlapped_.clear();
  if (!res_.overlapSequenceParallel)
    return;
  order_ = plan::deferWeightGradients(
      program, [&](int i) { return mayOverlapCompute(res_, program.instructions(i)); },
      [&](uint32_t id) {
        const auto [begin, end] = deviceRange(id);
        return plan::ByteRange{reinterpret_cast<uintptr_t>(begin),
                               reinterpret_cast<uintptr_t>(end)};
      });
  // A collective overlaps compute where work that does not read its result
  // follows it (a weight gradient deferred past it always does: that makes
  // the order's assumption true); the others stay on the compute stream,
  // as the forward's, whose readers need them at once.
  for (size_t at = 0; at < order_.size(); ++at) {
    const plan::Instruction &collective = program.instructions(order_[at]);
    if (!mayOverlapCompute(res_, collective))
      continue;
    for (size_t next = at + 1; next < order_.size(); ++next) {
      const plan::Instruction &in = program.instructions(order_[next]);
      const plan::OpSignature *op = plan::findOp(in.op());
      auto result = [&](const auto &ids) {
        return std::find(ids.begin(), ids.end(), collective.outputs(0)) != ids.end();
      };
      if (result(in.inputs()) || result(in.outputs()) ||
          (op && (op->family == plan::OpFamily::Collective ||
                  op->family == plan::OpFamily::Pipeline)))
        break;
      if (!plan::isOp(in, plan::Op::fill_zero)) { // a zero-fill hides nothing
        overlapped_.insert(order_[at]);
        break;
      }
    }
  }
}

Expected<std::vector<Step>> Lowerer::lower(const plan::Program &program) {
  auto lowerings = plan::resolveKernels(program, loweringTable(), "CUDA");
  if (!lowerings)
    return Status::error(lowerings.message() + " (the CUDA backend runs Llama, Qwen and "
                                               "mixture-of-experts plans; use --backend cpu)");
  steps_.clear();
  issued_.clear();
  pendingZero_.clear();
  inFlight_.clear();
  firstWrites_.clear();
  program_ = &program;
  orderInstructions(program);
  for (int i : order_) {
    instr_ = &program.instructions(i);
    index_ = i;
    error_.clear();
    if (gradientsUnwritten_)
      for (uint32_t id : instr_->inputs())
        if (std::optional<plan::ByteRange> r = gradientRange(id))
          firstWrites_.touch(*r);
    // A collective on the compute stream follows every transfer (one NCCL
    // communicator is never driven from two streams at once), except those
    // that themselves go to the transfer stream, in its order; one that
    // overlaps compute follows the one before it (they share
    // transferWorkspace).
    const plan::OpSignature *op = plan::findOp(instr_->op());
    const bool collective = op && (op->family == plan::OpFamily::Collective ||
                                   op->family == plan::OpFamily::Pipeline);
    const bool ring = plan::isOp(*instr_, plan::Op::ring_shift) && res_.overlapTransfers;
    waitForTransfers(*instr_, collective && !ring && !overlapsCompute());
    if (overlapsCompute())
      waitForTransfers(*instr_, std::any_of(inFlight_.begin(), inFlight_.end(),
                                            [](const InFlight &f) { return bool(f.finish); }));
    (*(*lowerings)[size_t(i)])(*this, plan::Attrs(*instr_));
    if (!error_.empty())
      return Status::error("program '" + program.name() + "' instruction " +
                           std::to_string(i) + " (" + instr_->op() +
                           (instr_->location().empty() ? "" : ", " + instr_->location()) +
                           "): " + error_);
    issued_.push_back({i, steps_.size()});
  }
  if (instr_)
    waitForTransfers(*instr_, true); // the program ends on the compute stream
  return std::move(steps_);
}

} // namespace mt::cuda
