// Buckets of the dp gradient all-reduce (or of the distributed optimizer's
// reduce-scatters), launched on a communication stream during backward, and
// the optimizer's wait for them.
#include "runtime/cuda/NcclOverlap.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/NcclCommunicator.h"

#include <algorithm>
#include <map>

namespace mt::cuda {

struct GradientReduceOverlap::State {
  struct Span {
    float *data;
    size_t count;
  };
  /// A distributed optimizer's gradient bucket reduce-scattered into the
  /// rank's shard.
  struct Scatter {
    const float *in;
    float *out;
    size_t countPerRank;
  };
  struct Bucket {
    int lastWriter = -1; // the forward_backward instruction after which it starts
    std::vector<Span> spans;
    std::vector<Scatter> scatters;
    cudaEvent_t ready = nullptr;
  };
  NcclCommunicator *comm = nullptr;
  comm::ReduceOp op = comm::ReduceOp::Sum;
  std::vector<Bucket> buckets;
  int reductions = 0; // the optimizer's leading all_reduce instructions
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;

  ~State() {
    for (Bucket &b : buckets)
      if (b.ready)
        (void)cudaEventDestroy(b.ready);
    if (done)
      (void)cudaEventDestroy(done);
    if (stream)
      (void)cudaStreamDestroy(stream);
  }

  /// Enqueued on the compute stream after bucket b's last gradient write.
  Status launch(size_t b, cudaStream_t compute) {
    Bucket &bucket = buckets[b];
    MT_CUDA_CHECK(cudaEventRecord(bucket.ready, compute));
    MT_CUDA_CHECK(cudaStreamWaitEvent(stream, bucket.ready, 0));
    comm->setStream(stream);
    Status s = comm->grouped([&]() -> Status {
      for (const Span &span : bucket.spans)
        if (Status st = comm->allReduce(span.data, span.count, comm::DType::F32, op); !st)
          return st;
      for (const Scatter &sc : bucket.scatters)
        if (Status st = comm->reduceScatter(sc.in, sc.out, sc.countPerRank, comm::DType::F32, op);
            !st)
          return st;
      return Status::ok();
    });
    if (!s)
      return s;
    if (b + 1 == buckets.size())
      MT_CUDA_CHECK(cudaEventRecord(done, stream));
    return Status::ok();
  }
};

namespace {

// In --profile, the time the compute stream spends on these steps: the
// bucket launches enqueue, the final wait is the communication not hidden.
constexpr const char *kCommunication = "communication (NCCL)";

/// The optimizer's leading reductions of fp32 gradients over one axis with
/// one operation: in-place all-reduces of gradient buffers, or (the
/// distributed optimizer) reduce-scatters of whole gradient buckets into
/// 32-bit shards (in place: the shard views of their buckets). Empty when they have another shape.
struct Reductions {
  std::vector<uint32_t> buffers; // the reduced gradient buffers (the buckets)
  std::vector<uint32_t> shards;  // reduce-scatters: each bucket's output
  std::string axis, reduce;
};

Reductions leadingReductions(const plan::Plan &plan, const plan::Program &optimizer,
                             DeviceArenas &arenas) {
  Reductions r;
  const std::string first =
      optimizer.instructions_size() ? optimizer.instructions(0).op() : std::string();
  if (first != "all_reduce" && first != "reduce_scatter")
    return r;
  for (const plan::Instruction &in : optimizer.instructions()) {
    if (in.op() != first)
      break;
    const plan::Attrs a(in);
    if (r.buffers.empty()) {
      r.axis = a.s("axis");
      r.reduce = a.s("reduce");
    }
    const uint32_t id = in.inputs(0), out = in.outputs(0);
    const bool scatter = first == "reduce_scatter";
    const bool shaped = scatter ? a.i("outer") == 1 &&
                                      arenas.storage(out) != DeviceArenas::Storage::Bf16Activation
                                : out == id;
    if (!shaped || a.s("axis") != r.axis || a.s("reduce") != r.reduce ||
        plan.buffers(id).arena() != plan::GRADIENTS || plan.buffers(id).dtype() != plan::F32 ||
        arenas.storage(id) == DeviceArenas::Storage::Bf16Activation)
      return {};
    r.buffers.push_back(id);
    if (scatter)
      r.shards.push_back(out);
  }
  return r;
}

/// The buffers forward_backward writes that make up gradient buffer `id`:
/// a bucket's members, or the buffer itself.
std::vector<uint32_t> writtenAs(const plan::Plan &plan, uint32_t id) {
  std::map<std::string, const plan::Parameter *> byName;
  for (const plan::Parameter &p : plan.parameters())
    byName[p.name()] = &p;
  for (const plan::Bucket &b : plan.buckets())
    if (b.grad_buffer() == id) {
      std::vector<uint32_t> members;
      for (const plan::BucketMember &m : b.members())
        members.push_back(byName.at(m.param())->grad_buffer());
      return members;
    }
  return {id};
}

} // namespace

Expected<std::unique_ptr<GradientReduceOverlap>> GradientReduceOverlap::plan(
    const plan::Plan &plan, const plan::Program &forwardBackward, const plan::Program &optimizer,
    const std::vector<Step> &optimizerSteps, const exec::RankContext &rank, DeviceArenas &arenas,
    size_t bucketElements) {
  const Reductions reductions = leadingReductions(plan, optimizer, arenas);
  const std::vector<uint32_t> &reduced = reductions.buffers;
  const std::optional<comm::ReduceOp> op = comm::reduceOpNamed(reductions.reduce);
  auto *comm = reduced.empty() ? nullptr
                               : dynamic_cast<NcclCommunicator *>(rank.group(reductions.axis));
  if (!comm || !op || *op == comm::ReduceOp::Max) // gradients are summed or averaged
    return std::unique_ptr<GradientReduceOverlap>();
  for (const Step &step : optimizerSteps)
    if (step.instruction < int(reduced.size()) && step.launch && !step.collective)
      return std::unique_ptr<GradientReduceOverlap>();

  // The last instruction of forward_backward that writes each gradient
  // (any member of a bucket).
  std::map<uint32_t, int> lastWriter;
  std::map<uint32_t, uint32_t> reducedAs; // a written buffer -> its reduced buffer
  for (uint32_t id : reduced) {
    lastWriter[id] = forwardBackward.instructions_size() - 1;
    for (uint32_t part : writtenAs(plan, id))
      reducedAs[part] = id;
  }
  std::map<uint32_t, int> written;
  for (int i = 0; i < forwardBackward.instructions_size(); ++i)
    for (uint32_t out : forwardBackward.instructions(i).outputs())
      if (auto it = reducedAs.find(out); it != reducedAs.end())
        written[it->second] = i;
  for (auto [id, i] : written)
    lastWriter[id] = i;
  std::vector<uint32_t> order = reduced;
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return lastWriter[a] < lastWriter[b]; });

  auto state = std::make_shared<State>();
  state->comm = comm;
  state->op = *op;
  state->reductions = int(reduced.size());
  std::map<uint32_t, uint32_t> shardOf;
  for (size_t i = 0; i < reductions.shards.size(); ++i)
    shardOf[reduced[i]] = reductions.shards[i];
  size_t inBucket = 0;
  for (uint32_t id : order) {
    if (auto shard = shardOf.find(id); shard != shardOf.end()) {
      // The plan's buckets are the distributed optimizer's: one each.
      state->buckets.emplace_back();
      state->buckets.back().lastWriter = lastWriter[id];
      state->buckets.back().scatters.push_back(
          {reinterpret_cast<const float *>(arenas.data(id)),
           reinterpret_cast<float *>(arenas.data(shard->second)),
           size_t(plan::elementsOf(plan.buffers(shard->second)))});
      continue;
    }
    if (state->buckets.empty() || inBucket >= bucketElements) {
      state->buckets.emplace_back();
      inBucket = 0;
    }
    State::Bucket &bucket = state->buckets.back();
    float *data = reinterpret_cast<float *>(arenas.data(id));
    const size_t count = size_t(plan::elementsOf(plan.buffers(id)));
    State::Span *last = bucket.spans.empty() ? nullptr : &bucket.spans.back();
    if (last && last->data + last->count == data) { // neighbours in memory: one call
      last->count += count;
    } else if (last && data + count == last->data) { // backward meets them in reverse
      last->data = data;
      last->count += count;
    } else {
      bucket.spans.push_back({data, count});
    }
    bucket.lastWriter = std::max(bucket.lastWriter, lastWriter[id]);
    inBucket += count;
  }
  ScopedErrorContext context("planning the overlap of the gradient all-reduce: ");
  MT_CUDA_CHECK(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking));
  for (State::Bucket &bucket : state->buckets)
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&bucket.ready, cudaEventDisableTiming));
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&state->done, cudaEventDisableTiming));
  return std::unique_ptr<GradientReduceOverlap>(new GradientReduceOverlap(std::move(state)));
}

GradientReduceOverlap::~GradientReduceOverlap() = default;

size_t GradientReduceOverlap::bucketCount() const { return state_->buckets.size(); }

std::vector<Step> GradientReduceOverlap::withReductions(const std::vector<Step> &steps) const {
  std::vector<Step> out;
  size_t next = 0;
  auto launchBucket = [&] {
    const size_t b = next++;
    std::shared_ptr<State> state = state_;
    out.push_back({[state, b](cudaStream_t s) { return state->launch(b, s); },
                   state_->buckets[b].lastWriter, false, false, nullptr, kCommunication});
  };
  for (const Step &step : steps) {
    while (next < state_->buckets.size() && step.instruction > state_->buckets[next].lastWriter)
      launchBucket();
    out.push_back(step);
  }
  while (next < state_->buckets.size())
    launchBucket();
  // The compute stream waits for the last bucket: the optimizer reads the
  // reduced gradients, and a captured graph joins the communication stream
  // back (as CUDA graphs require) before it ends.
  std::shared_ptr<State> state = state_;
  out.push_back({[state](cudaStream_t s) -> Status {
                   MT_CUDA_CHECK(cudaStreamWaitEvent(s, state->done, 0));
                   return Status::ok();
                 },
                 state_->buckets.back().lastWriter, false, false, nullptr, kCommunication});
  return out;
}

std::vector<Step> GradientReduceOverlap::withoutReductions(const std::vector<Step> &steps) const {
  std::vector<Step> out;
  for (const Step &step : steps)
    if (step.instruction >= state_->reductions)
      out.push_back(step);
  return out;
}

} // namespace mt::cuda
