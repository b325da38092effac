// The lowering driver: operand views, write-or-add decisions, fill_zero.
#include "runtime/cuda/Lowering.h"

#include "runtime/cuda/Check.h"

namespace mt::cuda {

Resources::~Resources() {
  for (void *p : owned)
    (void)cudaFree(p);
  for (cudaEvent_t e : copyEvents)
    (void)cudaEventDestroy(e);
  if (copyStream)
    (void)cudaStreamDestroy(copyStream);
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
  return "%" + std::to_string(id) + " '" + b.name() + "' (" +
         plan::ArenaKind_Name(b.arena()) + " " + plan::DType_Name(b.dtype()) + ")";
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
      res_.arenas->storage(id) != DeviceArenas::Storage::Bf16Activation)
    return reinterpret_cast<float *>(res_.arenas->data(id));
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

uint32_t Lowerer::target(int i, Capability capability, bool *add) {
  uint32_t id = instr_->outputs(i);
  auto pending = pendingZero_.find(id);
  bool zeroed = pending != pendingZero_.end();
  bool adds = false;
  switch (plan::outputUse(instr_->op(), zeroed, capability)) {
  case plan::OutputUse::Write:
    break;
  case plan::OutputUse::WriteOverZeroFill:
    steps_[pending->second].launch = nullptr; // the writer replaces the fill
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
    addOptimizerLowerings(t);
    addOffloadLowerings(t);
    addVocabParallelLowerings(t);
    addMoELowerings(t);
    addCollectiveLowerings(t);
    addPipelineLowerings(t);
    return t;
  }();
  return table;
}
} // namespace

Expected<std::vector<Step>> Lowerer::lower(const plan::Program &program) {
  auto lowerings = plan::resolveKernels(program, loweringTable(), "CUDA");
  if (!lowerings)
    return Status::error(lowerings.message() + " (the CUDA backend runs Llama, Qwen and "
                                               "mixture-of-experts plans; use --backend cpu)");
  steps_.clear();
  pendingZero_.clear();
  for (int i = 0; i < program.instructions_size(); ++i) {
    instr_ = &program.instructions(i);
    index_ = i;
    error_.clear();
    (*(*lowerings)[size_t(i)])(*this, plan::Attrs(*instr_));
    if (!error_.empty())
      return Status::error("program '" + program.name() + "' instruction " +
                           std::to_string(i) + " (" + instr_->op() +
                           (instr_->location().empty() ? "" : ", " + instr_->location()) +
                           "): " + error_);
  }
  return std::move(steps_);
}

} // namespace mt::cuda
