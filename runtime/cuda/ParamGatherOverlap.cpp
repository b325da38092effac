// The distributed optimizer's weight all-gathers behind the next forward.
#include "runtime/cuda/ParamGatherOverlap.h"

#include "runtime/cuda/Check.h"
#include "runtime/plan/GradientWrites.h"
#include "runtime/plan/OpRegistry.h"

#include <set>

namespace mt::cuda {

struct ParamGatherOverlap::State {
  struct Gather {
    Launch launch;     // the lowered all_gather (of the bf16 shadow from a master
                       // shard, or of fp32 weights and their shadow's refresh)
    int firstUse = -1; // the first forward_backward instruction reading it
    cudaEvent_t ready = nullptr;
  };
  std::vector<Gather> gathers;
  std::set<int> instructions; // the optimizer's deferred instructions
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr;

  ~State() {
    for (Gather &g : gathers)
      if (g.ready)
        (void)cudaEventDestroy(g.ready);
    if (start)
      (void)cudaEventDestroy(start);
    if (stream)
      (void)cudaStreamDestroy(stream);
  }
};

namespace {

constexpr const char *kCommunication = "communication (NCCL)";

} // namespace

Expected<std::unique_ptr<ParamGatherOverlap>>
ParamGatherOverlap::plan(const plan::Plan &plan, const plan::Program &forwardBackward,
                         const plan::Program &optimizer, const std::vector<Step> &optimizerSteps,
                         DeviceArenas &arenas) {
  auto state = std::make_shared<State>();
  for (int i = 0; i < optimizer.instructions_size(); ++i) {
    const plan::Instruction &in = optimizer.instructions(i);
    const plan::Attrs a(in);
    if (a.i("deferred") != 1)
      continue;
    const plan::Bucket *bucket = nullptr;
    for (const plan::Bucket &b : plan.buckets())
      if (in.outputs_size() == 1 && b.param_buffer() == in.outputs(0))
        bucket = &b;
    std::vector<const Step *> steps;
    for (const Step &step : optimizerSteps)
      if (step.instruction == i && step.launch)
        steps.push_back(&step);
    if (!plan::isOp(in, plan::Op::all_gather) || !bucket || a.i("outer") != 1 || steps.size() != 1 ||
        arenas.storage(in.inputs(0)) != DeviceArenas::Storage::ShardView)
      return std::unique_ptr<ParamGatherOverlap>();
    State::Gather gather{steps[0]->launch};
    const std::set<uint32_t> readers = plan::weightReadersOf(plan, *bucket);
    for (int j = 0; j < forwardBackward.instructions_size() && gather.firstUse < 0; ++j)
      for (uint32_t id : forwardBackward.instructions(j).inputs())
        if (readers.count(id))
          gather.firstUse = j;
    state->gathers.push_back(gather);
    state->instructions.insert(i);
  }
  if (state->gathers.empty())
    return std::unique_ptr<ParamGatherOverlap>();
  ScopedErrorContext context("planning the overlap of the parameter all-gather: ");
  MT_CUDA_CHECK(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking));
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&state->start, cudaEventDisableTiming));
  for (State::Gather &g : state->gathers)
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&g.ready, cudaEventDisableTiming));
  return std::unique_ptr<ParamGatherOverlap>(new ParamGatherOverlap(std::move(state)));
}

ParamGatherOverlap::~ParamGatherOverlap() = default;

size_t ParamGatherOverlap::bucketCount() const { return state_->gathers.size(); }

std::vector<Step> ParamGatherOverlap::withoutGathers(const std::vector<Step> &steps) const {
  std::vector<Step> out;
  for (const Step &step : steps)
    if (!state_->instructions.count(step.instruction))
      out.push_back(step);
  return out;
}

std::vector<Step> ParamGatherOverlap::withGathers(const std::vector<Step> &steps) const {
  std::shared_ptr<State> state = state_;
  const int first = steps.empty() ? 0 : steps.front().instruction;
  // NCCL calls keep the program out of CUDA graphs (collective).
  std::vector<Step> out = {{[state](cudaStream_t compute) -> Status {
                              MT_CUDA_CHECK(cudaEventRecord(state->start, compute));
                              MT_CUDA_CHECK(cudaStreamWaitEvent(state->stream, state->start, 0));
                              for (State::Gather &g : state->gathers) {
                                MT_CUDA_RETURN_IF_ERROR(g.launch(state->stream));
                                MT_CUDA_CHECK(cudaEventRecord(g.ready, state->stream));
                              }
                              return Status::ok();
                            },
                            first, false, true, nullptr, kCommunication}};
  auto waitFor = [&](size_t g, int instruction) {
    out.push_back({[state, g](cudaStream_t compute) -> Status {
                     MT_CUDA_CHECK(cudaStreamWaitEvent(compute, state->gathers[g].ready, 0));
                     return Status::ok();
                   },
                   instruction, false, true, nullptr, kCommunication});
  };
  // A bucket nothing reads is waited for at once: the gradient
  // reduce-scatters over the same group must not meet a gather still running.
  std::vector<bool> waited(state_->gathers.size(), false);
  for (size_t g = 0; g < waited.size(); ++g)
    if (state_->gathers[g].firstUse < 0) {
      waitFor(g, first);
      waited[g] = true;
    }
  for (const Step &step : steps) {
    for (size_t g = 0; g < waited.size(); ++g)
      if (!waited[g] && state_->gathers[g].firstUse >= 0 &&
          step.instruction >= state_->gathers[g].firstUse) {
        waitFor(g, step.instruction);
        waited[g] = true;
      }
    out.push_back(step);
  }
  return out;
}

Status ParamGatherOverlap::gatherNow(cudaStream_t stream) const {
  for (const State::Gather &g : state_->gathers)
    MT_CUDA_RETURN_IF_ERROR(g.launch(stream));
  return Status::ok();
}

} // namespace mt::cuda
