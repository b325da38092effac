// Buckets of the dp gradient all-reduce (or of the distributed optimizer's
// reduce-scatters), launched on a communication stream during backward, and
// the optimizer's wait for them.
#include "runtime/cuda/NcclOverlap.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/NcclCommunicator.h"
#include "runtime/plan/GradientBuckets.h"
#include "runtime/plan/GradientWrites.h"
#include "runtime/plan/OpRegistry.h"

#include <algorithm>
#include <optional>

namespace mt::cuda {

/// A timing event recorded on `stream`; inside a capture, as a graph node
/// (cudaEventRecordExternal), so that replays record it too. Outside one
/// (the first, eager run of a program) a plain record: the external flag is
/// an error there (cudaErrorIllegalState).
static Status recordTiming(cudaEvent_t event, cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  MT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  MT_CUDA_CHECK(capture == cudaStreamCaptureStatusActive
                    ? cudaEventRecordWithFlags(event, stream, cudaEventRecordExternal)
                    : cudaEventRecord(event, stream));
  return Status::ok();
}

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
    int lastWriter = -1; // the position in `order` after which it starts
    std::vector<Span> spans;
    std::vector<Scatter> scatters;
    cudaEvent_t ready = nullptr;
    cudaEvent_t started = nullptr, reduced = nullptr; // --profile-comm's timing events
  };
  NcclCommunicator *comm = nullptr;
  comm::ReduceOp op = comm::ReduceOp::Sum;
  /// forward_backward's issue order (Lowerer::order) and, per instruction,
  /// its position in it.
  std::vector<int> order, position;
  std::vector<Bucket> buckets;
  int reductions = 0; // the optimizer's leading all_reduce instructions
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
  /// --profile-comm: the compute stream before and after its wait for the
  /// last bucket; null when off.
  cudaEvent_t backwardEnd = nullptr, waited = nullptr;
  /// grad_reduce_in_bf16: room for the largest bucket rounded to bf16
  /// (bf16Elements); null: the reduction sums fp32.
  bf16 *scratch = nullptr;
  /// The embedding gradient kept sparse on this (the last) micro-batch
  /// (plan::ReducedGradientWrites::sparseWriter): in place of its
  /// scatter-add, its ids and bf16 dy rows are copied into this rank's
  /// block of the gathered buffers; once the bucket of its gradient is
  /// reduced, the communication stream gathers every dp rank's block and
  /// adds them all, in rank order (the same sum on every rank), times the
  /// reduction's factor. All-reduce is linear: the dense result up to fp32
  /// rounding, and the bucket no longer waits for the end of backward.
  struct SparseRows {
    int instruction = -1; // in forward_backward; -1: none is kept sparse
    size_t bucket = 0;    // the bucket of its gradient
    const int32_t *ids = nullptr;
    const bf16 *dy = nullptr;
    float *dtable = nullptr; // the fp32 main gradient, reduced in place
    int64_t tokens = 0, vocab = 0, hidden = 0;
    float scale = 1.0f; // 1/dp for a mean reduction
    int32_t *gatheredIds = nullptr; // [dp * tokens], rank-major
    bf16 *gatheredDy = nullptr;     // [dp * tokens, hidden], rank-major
    void *first = nullptr;          // embeddingBackward's workspace
    cudaEvent_t stashed = nullptr;  // this rank's block is written
    /// --profile-comm's timing events around the gather and the addition.
    cudaEvent_t started = nullptr, added = nullptr;
  } sparse;

  ~State() {
    for (void *p : {static_cast<void *>(scratch), static_cast<void *>(sparse.gatheredIds),
                    static_cast<void *>(sparse.gatheredDy), sparse.first})
      if (p)
        (void)cudaFree(p);
    for (cudaEvent_t e : {sparse.stashed, sparse.started, sparse.added})
      if (e)
        (void)cudaEventDestroy(e);
    for (Bucket &b : buckets)
      for (cudaEvent_t e : {b.ready, b.started, b.reduced})
        if (e)
          (void)cudaEventDestroy(e);
    for (cudaEvent_t e : {done, backwardEnd, waited})
      if (e)
        (void)cudaEventDestroy(e);
    if (stream)
      (void)cudaStreamDestroy(stream);
  }

  /// The bf16 elements reduceInBf16 needs for `bucket`: each span, and
  /// each scatter's input and shard.
  size_t bf16Elements(const Bucket &bucket) const {
    size_t n = 0;
    for (const Span &span : bucket.spans)
      n += span.count;
    for (const Scatter &sc : bucket.scatters)
      n += sc.countPerRank * size_t(comm->size() + 1);
    return n;
  }

  /// grad_reduce_in_bf16 (Megatron's grad_reduce_in_fp32 = false): the
  /// bucket's fp32 gradients rounded to bf16 in `scratch`, reduced there in
  /// one NCCL group, and widened back into the fp32 gradients (or shards).
  /// The gradients stay fp32 in backward, unlike Megatron's bf16 buffers:
  /// the two casts cost memory traffic the halved NCCL bytes must repay.
  Status reduceInBf16(const Bucket &bucket) {
    const size_t parts = size_t(comm->size());
    std::vector<bf16 *> at; // per span, then per scatter: its bf16 input
    bf16 *next = scratch;
    for (const Span &span : bucket.spans) {
      MT_CUDA_RETURN_IF_ERROR(castFloatToBf16(span.data, next, int64_t(span.count), stream));
      at.push_back(next);
      next += span.count;
    }
    for (const Scatter &sc : bucket.scatters) {
      MT_CUDA_RETURN_IF_ERROR(
          castFloatToBf16(sc.in, next, int64_t(sc.countPerRank * parts), stream));
      at.push_back(next);
      next += sc.countPerRank * (parts + 1); // the shard follows the input
    }
    Status s = comm->grouped([&]() -> Status {
      size_t i = 0;
      for (const Span &span : bucket.spans)
        if (Status st = comm->allReduce(at[i++], span.count, comm::DType::BF16, op); !st)
          return st;
      for (const Scatter &sc : bucket.scatters) {
        bf16 *in = at[i++];
        if (Status st = comm->reduceScatter(in, in + sc.countPerRank * parts, sc.countPerRank,
                                            comm::DType::BF16, op);
            !st)
          return st;
      }
      return Status::ok();
    });
    if (!s)
      return s;
    size_t i = 0;
    for (const Span &span : bucket.spans)
      MT_CUDA_RETURN_IF_ERROR(castBf16ToFloat(at[i++], span.data, int64_t(span.count), stream));
    for (const Scatter &sc : bucket.scatters) {
      const bf16 *shard = at[i++] + sc.countPerRank * parts;
      MT_CUDA_RETURN_IF_ERROR(castBf16ToFloat(shard, sc.out, int64_t(sc.countPerRank), stream));
    }
    return Status::ok();
  }

  /// Enqueued on the compute stream after bucket b's last gradient write.
  Status launch(size_t b, cudaStream_t compute) {
    Bucket &bucket = buckets[b];
    MT_CUDA_CHECK(cudaEventRecord(bucket.ready, compute));
    MT_CUDA_CHECK(cudaStreamWaitEvent(stream, bucket.ready, 0));
    if (bucket.started)
      MT_CUDA_RETURN_IF_ERROR(recordTiming(bucket.started, stream));
    comm->setStream(stream);
    Status s = scratch ? reduceInBf16(bucket) : comm->grouped([&]() -> Status {
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
    if (bucket.reduced)
      MT_CUDA_RETURN_IF_ERROR(recordTiming(bucket.reduced, stream));
    return Status::ok();
  }

  /// On the compute stream, in place of the sparse writer's scatter-add:
  /// its ids and rows into this rank's block of the gathered buffers (a
  /// copy, since the instructions after it may reuse their memory).
  Status stash(cudaStream_t compute) {
    const size_t t = size_t(sparse.tokens), h = size_t(sparse.hidden);
    const size_t rank = size_t(comm->rank());
    MT_CUDA_CHECK(cudaMemcpyAsync(sparse.gatheredIds + rank * t, sparse.ids, t * sizeof(int32_t),
                                  cudaMemcpyDeviceToDevice, compute));
    MT_CUDA_CHECK(cudaMemcpyAsync(sparse.gatheredDy + rank * t * h, sparse.dy,
                                  t * h * sizeof(bf16), cudaMemcpyDeviceToDevice, compute));
    MT_CUDA_CHECK(cudaEventRecord(sparse.stashed, compute));
    return Status::ok();
  }

  /// On the communication stream, after the bucket of the sparse gradient
  /// (enqueued there before): every rank's rows gathered in place and
  /// added into the reduced gradient.
  Status addGatheredRows() {
    MT_CUDA_CHECK(cudaStreamWaitEvent(stream, sparse.stashed, 0));
    if (sparse.started)
      MT_CUDA_RETURN_IF_ERROR(recordTiming(sparse.started, stream));
    const size_t t = size_t(sparse.tokens), h = size_t(sparse.hidden);
    const size_t rank = size_t(comm->rank());
    comm->setStream(stream);
    Status s = comm->grouped([&]() -> Status {
      // An all-gather moves bytes: the int32 ids travel as 32-bit words.
      if (Status st = comm->allGather(sparse.gatheredIds + rank * t, sparse.gatheredIds, t,
                                      comm::DType::F32);
          !st)
        return st;
      return comm->allGather(sparse.gatheredDy + rank * t * h, sparse.gatheredDy, t * h,
                             comm::DType::BF16);
    });
    if (!s)
      return s;
    MT_CUDA_RETURN_IF_ERROR(embeddingBackward(
        sparse.gatheredIds, sparse.gatheredDy, sparse.dtable, sparse.first,
        int64_t(comm->size()) * sparse.tokens, sparse.vocab, sparse.hidden, stream, 0, sparse.scale));
    if (sparse.added)
      MT_CUDA_RETURN_IF_ERROR(recordTiming(sparse.added, stream));
    return Status::ok();
  }

  /// The sparse writer `instruction` of forward_backward, whose gradient
  /// the bucket `bucket` reduces, set up: its operands and the gathered
  /// buffers. An error names what is missing.
  Status planSparse(const plan::Program &forwardBackward, int instruction, size_t bucket,
                    const DeviceArenas &arenas);

  /// Forms the buckets of the gradient buffers `reduced`, all-reduced in
  /// buckets of about `bucketElements` (neighbours in memory merged into one
  /// call), or with the distributed optimizer reduce-scattered into
  /// `shards`, one bucket each; each starts after the last writer of its
  /// gradients in `writes`. Returns the bucket of writes.sparseReduced.
  size_t formBuckets(const plan::Plan &plan, const std::vector<uint32_t> &reduced,
                     const std::vector<uint32_t> &shards,
                     const plan::ReducedGradientWrites &writes, const DeviceArenas &arenas,
                     size_t bucketElements);

  /// The communication stream, the buckets' events and, with
  /// `bf16Reduction` (grad_reduce_in_bf16), the scratch of the largest.
  Status createStreamAndEvents(bool bf16Reduction);
};

size_t GradientReduceOverlap::State::formBuckets(const plan::Plan &plan,
                                                 const std::vector<uint32_t> &reduced,
                                                 const std::vector<uint32_t> &shards,
                                                 const plan::ReducedGradientWrites &writes,
                                                 const DeviceArenas &arenas,
                                                 size_t bucketElements) {
  const bool scatter = !shards.empty();
  std::vector<GradientToReduce> gradients;
  for (size_t k = 0; k < reduced.size(); ++k)
    gradients.push_back({size_t(plan::elementsOf(plan.buffers(reduced[k]))), writes.lastWriter[k]});
  size_t sparseBucket = 0;
  for (const std::vector<size_t> &members :
       formGradientBuckets(gradients, scatter ? 1 : bucketElements)) {
    Bucket &bucket = buckets.emplace_back();
    for (size_t k : members) {
      if (k == writes.sparseReduced)
        sparseBucket = buckets.size() - 1;
      bucket.lastWriter = std::max(bucket.lastWriter, gradients[k].lastWriter);
      if (scatter) {
        bucket.scatters.push_back({reinterpret_cast<const float *>(arenas.data(reduced[k])),
                                   reinterpret_cast<float *>(arenas.data(shards[k])),
                                   size_t(plan::elementsOf(plan.buffers(shards[k])))});
        continue;
      }
      float *data = reinterpret_cast<float *>(arenas.data(reduced[k]));
      const size_t count = gradients[k].elements;
      Span *last = bucket.spans.empty() ? nullptr : &bucket.spans.back();
      if (last && last->data + last->count == data) { // neighbours in memory: one call
        last->count += count;
      } else if (last && data + count == last->data) { // backward meets them in reverse
        last->data = data;
        last->count += count;
      } else {
        bucket.spans.push_back({data, count});
      }
    }
  }
  return sparseBucket;
}

Status GradientReduceOverlap::State::createStreamAndEvents(bool bf16Reduction) {
  ScopedErrorContext context("planning the overlap of the gradient all-reduce: ");
  MT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (Bucket &bucket : buckets)
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&bucket.ready, cudaEventDisableTiming));
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  if (bf16Reduction) {
    size_t largest = 0;
    for (const Bucket &bucket : buckets)
      largest = std::max(largest, bf16Elements(bucket));
    MT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void **>(&scratch), largest * sizeof(bf16)));
  }
  return Status::ok();
}

Status GradientReduceOverlap::State::planSparse(const plan::Program &forwardBackward,
                                                int instruction, size_t bucket,
                                                const DeviceArenas &arenas) {
  const plan::Instruction &in = forwardBackward.instructions(instruction);
  const plan::Attrs a(in);
  sparse.instruction = instruction;
  sparse.bucket = bucket;
  sparse.ids = reinterpret_cast<const int32_t *>(arenas.data(in.inputs(0)));
  sparse.dy = arenas.bf16Data(in.inputs(1));
  sparse.dtable = reinterpret_cast<float *>(arenas.data(in.outputs(0)));
  sparse.tokens = a.i("tokens");
  sparse.vocab = a.i("vocab");
  sparse.hidden = a.i("hidden");
  sparse.scale = op == comm::ReduceOp::Avg ? 1.0f / float(comm->size()) : 1.0f;
  if (!sparse.ids || !sparse.dy || !sparse.dtable)
    return Status::error("the sparse embedding gradient (MT_CUDA_SPARSE_EMBEDDING_GRAD): "
                         "instruction " + std::to_string(instruction) + " (" + in.location() +
                         ") has no device ids, bf16 dy or fp32 gradient");
  const size_t rows = size_t(comm->size()) * size_t(sparse.tokens);
  MT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void **>(&sparse.gatheredIds), rows * sizeof(int32_t)));
  MT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void **>(&sparse.gatheredDy),
                           rows * size_t(sparse.hidden) * sizeof(bf16)));
  MT_CUDA_CHECK(cudaMalloc(&sparse.first, embeddingBackwardWorkspaceBytes(sparse.vocab)));
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&sparse.stashed, cudaEventDisableTiming));
  return Status::ok();
}

namespace {

// In --profile, the time the compute stream spends on these steps: the
// bucket launches enqueue, the final wait is the communication not hidden.
constexpr const char *kCommunication = "communication (NCCL)";

/// The optimizer's leading reductions of fp32 gradients over one axis with
/// one operation: in-place all-reduces of gradient buffers, or (the
/// distributed optimizer) reduce-scatters of whole gradient buckets into
/// 32-bit shards (in place: the shard views of their buckets); the run ends
/// at the first instruction of another kind, axis or shape (mt-build-
/// optimizer orders the reductions axis by axis, before any scale). Empty
/// when the optimizer starts otherwise, or when forward_backward drives the
/// axis' communicator itself (cp's ring shifts, tp's collectives): one NCCL
/// communicator is never used from two streams at once.
struct Reductions {
  std::vector<uint32_t> buffers; // the reduced gradient buffers (the buckets)
  std::vector<uint32_t> shards;  // reduce-scatters: each bucket's output
  std::string axis, reduce;
};

Reductions leadingReductions(const plan::Plan &plan, const plan::Program &forwardBackward,
                             const plan::Program &optimizer, DeviceArenas &arenas) {
  Reductions r;
  const std::optional<plan::Op> first =
      optimizer.instructions_size() ? plan::opOf(optimizer.instructions(0)) : std::nullopt;
  if (first != plan::Op::all_reduce && first != plan::Op::reduce_scatter)
    return r;
  for (const plan::Instruction &in : optimizer.instructions()) {
    if (plan::opOf(in) != first)
      break;
    const plan::Attrs a(in);
    if (r.buffers.empty()) {
      r.axis = a.s("axis");
      r.reduce = a.s("reduce");
    }
    const uint32_t id = in.inputs(0), out = in.outputs(0);
    const bool scatter = first == plan::Op::reduce_scatter;
    const bool shaped = scatter ? a.i("outer") == 1 &&
                                      arenas.storage(out) != DeviceArenas::Storage::Bf16Activation
                                : out == id;
    if (!shaped || a.s("axis") != r.axis || a.s("reduce") != r.reduce ||
        plan.buffers(id).arena() != plan::GRADIENTS || plan.buffers(id).dtype() != plan::F32 ||
        arenas.storage(id) == DeviceArenas::Storage::Bf16Activation)
      break;
    r.buffers.push_back(id);
    if (scatter)
      r.shards.push_back(out);
  }
  for (const plan::Instruction &in : forwardBackward.instructions())
    if (const plan::OpSignature *op = plan::findOp(in.op());
        !r.buffers.empty() && op && op->family == plan::OpFamily::Collective &&
        plan::Attrs(in).s("axis") == r.axis)
      return {};
  return r;
}

} // namespace

Expected<std::unique_ptr<GradientReduceOverlap>> GradientReduceOverlap::plan(
    const plan::Plan &plan, const plan::Program &forwardBackward, const std::vector<int> &order,
    const plan::Program &optimizer, const std::vector<Step> &optimizerSteps,
    const exec::RankContext &rank, DeviceArenas &arenas, size_t bucketElements,
    bool sparseEmbeddingGrad) {
  if (order.size() != size_t(forwardBackward.instructions_size()))
    return Status::error("the overlap of the gradient reduction: an issue order of " +
                         std::to_string(order.size()) + " instructions for forward_backward's " +
                         std::to_string(forwardBackward.instructions_size()));
  if (order.empty())
    return std::unique_ptr<GradientReduceOverlap>();
  const Reductions reductions = leadingReductions(plan, forwardBackward, optimizer, arenas);
  const std::vector<uint32_t> &reduced = reductions.buffers;
  const std::optional<comm::ReduceOp> op = comm::reduceOpNamed(reductions.reduce);
  auto *comm = reduced.empty() ? nullptr
                               : dynamic_cast<NcclCommunicator *>(rank.group(reductions.axis));
  if (!comm || !op || *op == comm::ReduceOp::Max) // gradients are summed or averaged
    return std::unique_ptr<GradientReduceOverlap>();
  for (const Step &step : optimizerSteps)
    if (step.instruction < int(reduced.size()) && step.launch && !step.collective)
      return std::unique_ptr<GradientReduceOverlap>();

  // The distributed optimizer's buckets are the plan's: one each.
  const bool scatter = !reductions.shards.empty();
  // The embedding's rows are added after the reduction only where it
  // leaves the whole fp32 gradient in place: not into a reduce-scatter's
  // shard, not into gradients rounded to bf16 for it.
  const plan::ReducedGradientWrites writes = plan::reducedGradientWrites(
      plan, forwardBackward, order, reduced,
      sparseEmbeddingGrad && !scatter && !plan.training().grad_reduce_in_bf16());
  auto state = std::make_shared<State>();
  state->comm = comm;
  state->op = *op;
  state->reductions = int(reduced.size());
  state->order = order;
  state->position.resize(order.size());
  for (size_t at = 0; at < order.size(); ++at)
    state->position[size_t(order[at])] = int(at);
  const size_t sparseBucket =
      state->formBuckets(plan, reduced, reductions.shards, writes, arenas, bucketElements);
  if (Status s = state->createStreamAndEvents(plan.training().grad_reduce_in_bf16()); !s)
    return s;
  if (writes.sparseWriter >= 0) {
    ScopedErrorContext context("planning the overlap of the gradient all-reduce: ");
    MT_CUDA_RETURN_IF_ERROR(
        state->planSparse(forwardBackward, writes.sparseWriter, sparseBucket, arenas));
  }
  return std::unique_ptr<GradientReduceOverlap>(new GradientReduceOverlap(std::move(state)));
}

GradientReduceOverlap::~GradientReduceOverlap() = default;

size_t GradientReduceOverlap::bucketCount() const { return state_->buckets.size(); }

std::vector<Step> GradientReduceOverlap::withReductions(const std::vector<Step> &steps) const {
  std::vector<Step> out;
  std::shared_ptr<State> state = state_;
  const State::SparseRows &sparse = state_->sparse;
  size_t next = 0;
  bool stashed = false, added = sparse.instruction < 0;
  auto instructionAt = [&](int at) { return state_->order[size_t(std::max(at, 0))]; };
  auto step = [&](Launch launch, int instruction) {
    out.push_back({std::move(launch), instruction, false, false, nullptr, kCommunication});
  };
  // The gathered rows are added once both the stash and the reduction of
  // their bucket are enqueued (the communication stream runs in order).
  auto addRowsWhenDue = [&] {
    if (!added && stashed && next > sparse.bucket) {
      step([state](cudaStream_t) { return state->addGatheredRows(); }, sparse.instruction);
      added = true;
    }
  };
  auto launchBucket = [&] {
    const size_t b = next++;
    step([state, b](cudaStream_t s) { return state->launch(b, s); },
         instructionAt(state_->buckets[b].lastWriter));
    addRowsWhenDue();
  };
  for (const Step &s : steps) {
    while (next < state_->buckets.size() &&
           state_->position[size_t(s.instruction)] > state_->buckets[next].lastWriter)
      launchBucket();
    if (s.instruction != sparse.instruction) {
      out.push_back(s);
    } else if (!stashed) { // the stash replaces the scatter-add
      out.push_back({[state](cudaStream_t c) { return state->stash(c); }, s.instruction, false,
                     false, nullptr, nullptr});
      stashed = true;
      addRowsWhenDue();
    }
  }
  while (next < state_->buckets.size())
    launchBucket();
  if (!added) // no step of the sparse writer: its rows would be lost
    step([](cudaStream_t) {
           return Status::error("the sparse embedding gradient: forward_backward has no step "
                                "of its embedding_grad (MT_CUDA_SPARSE_EMBEDDING_GRAD=0 runs "
                                "without it)");
         },
         sparse.instruction);
  // The compute stream waits for all the communication stream's work: the
  // optimizer reads the reduced gradients, and a captured graph joins the
  // communication stream back (as CUDA graphs require) before it ends.
  step([state](cudaStream_t s) -> Status {
         if (state->backwardEnd)
           MT_CUDA_RETURN_IF_ERROR(recordTiming(state->backwardEnd, s));
         MT_CUDA_CHECK(cudaEventRecord(state->done, state->stream));
         MT_CUDA_CHECK(cudaStreamWaitEvent(s, state->done, 0));
         if (state->waited)
           MT_CUDA_RETURN_IF_ERROR(recordTiming(state->waited, s));
         return Status::ok();
       },
       instructionAt(state_->buckets.back().lastWriter));
  return out;
}

Status GradientReduceOverlap::enableProfile() {
  ScopedErrorContext context("--profile-comm, the overlapped gradient reduction: ");
  for (State::Bucket &bucket : state_->buckets)
    for (cudaEvent_t *e : {&bucket.started, &bucket.reduced})
      if (!*e)
        MT_CUDA_CHECK(cudaEventCreate(e));
  for (cudaEvent_t *e : {&state_->backwardEnd, &state_->waited})
    if (!*e)
      MT_CUDA_CHECK(cudaEventCreate(e));
  if (state_->sparse.instruction >= 0)
    for (cudaEvent_t *e : {&state_->sparse.started, &state_->sparse.added})
      if (!*e)
        MT_CUDA_CHECK(cudaEventCreate(e));
  return Status::ok();
}

Expected<OverlapTimes> GradientReduceOverlap::measured() const {
  if (!state_->waited)
    return Status::error("the overlapped gradient reduction is not profiled (enableProfile)");
  auto ms = [](cudaEvent_t from, cudaEvent_t to) -> Expected<double> {
    float t = 0;
    MT_CUDA_CHECK(cudaEventElapsedTime(&t, from, to));
    return double(t);
  };
  OverlapTimes times;
  for (const State::Bucket &bucket : state_->buckets) {
    auto t = ms(bucket.started, bucket.reduced);
    if (!t)
      return t.status();
    times.reducing += *t;
    times.lastBucket = *t;
  }
  const State::Bucket &last = state_->buckets.back();
  for (const State::Span &span : last.spans)
    times.lastBucketElements += span.count;
  for (const State::Scatter &sc : last.scatters)
    times.lastBucketElements += sc.countPerRank * size_t(state_->comm->size());
  auto tail = ms(state_->backwardEnd, state_->buckets.back().reduced);
  auto wait = ms(state_->backwardEnd, state_->waited);
  if (!tail || !wait)
    return tail ? wait.status() : tail.status();
  times.tail = std::max(0.0, *tail); // negative: reduced before backward ended
  if (const State::SparseRows &sparse = state_->sparse; sparse.started) {
    // The sparse embedding rows' gather and addition count as reduction.
    auto adding = ms(sparse.started, sparse.added), added = ms(state_->backwardEnd, sparse.added);
    if (!adding || !added)
      return adding ? added.status() : adding.status();
    times.reducing += *adding;
    times.sparseRows = *adding;
    times.tail = std::max(times.tail, *added);
  }
  times.optimizerWait = *wait;
  return times;
}

std::vector<Step> GradientReduceOverlap::withoutReductions(const std::vector<Step> &steps) const {
  std::vector<Step> out;
  for (const Step &step : steps)
    if (step.instruction >= state_->reductions)
      out.push_back(step);
  return out;
}

} // namespace mt::cuda
