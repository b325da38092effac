// Pipeline transfers over NCCL pair groups, and the lowering of the plan's
// send and recv instructions to them.
#include "runtime/cuda/NcclPipeline.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/Lowering.h"

namespace mt::cuda {
namespace {

/// The NCCL communicator of the pair group from stage `from` to `to`.
Expected<NcclCommunicator *> pairGroup(const exec::RankContext &rank, int64_t from, int64_t to) {
  auto *group = dynamic_cast<NcclCommunicator *>(rank.p2p(from, to));
  if (!group)
    return Status::error("the pipeline group of stages " + std::to_string(from) + " -> " +
                         std::to_string(to) + " is not an NCCL communicator (make the "
                         "RankContext with cuda::connectNccl)");
  return group;
}

} // namespace

Expected<std::unique_ptr<NcclPipelineChannels>>
NcclPipelineChannels::create(const plan::Plan &plan, const exec::RankContext &rank,
                             cudaStream_t compute) {
  const int64_t pp = rank.axisSize("pp"), self = rank.coordinate("pp");
  auto sends = pipelineMessages(plan, self, true), receives = pipelineMessages(plan, self, false);
  std::unique_ptr<NcclPipelineChannels> c(new NcclPipelineChannels(compute, self));
  MT_CUDA_CHECK(cudaStreamCreateWithFlags(&c->transfer_, cudaStreamNonBlocking));
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&c->copied_, cudaEventDisableTiming));
  for (int64_t other = 0; other < pp; ++other) {
    if (other == self)
      continue;
    Peer &peer = c->peers_[other];
    auto out = pairGroup(rank, self, other), in = pairGroup(rank, other, self);
    if (!out || !in)
      return out ? in.status() : out.status();
    peer.sendGroup = *out, peer.receiveGroup = *in;
    if (sends[other] != pipelineMessages(plan, other, false)[self])
      return Status::error("the plan's schedule makes stage " + std::to_string(self) +
                           "'s messages to stage " + std::to_string(other) + " in another "
                           "order than that stage receives them, which NCCL cannot match");
    peer.sendOrder = std::move(sends[other]), peer.receiveOrder = std::move(receives[other]);
  }
  if (Status s = c->connect(); !s)
    return s;
  return c;
}

Status NcclPipelineChannels::connect() {
  if (peers_.empty())
    return Status::ok();
  ScopedErrorContext context("connecting the pipeline stages: ");
  auto buffer = freeStaging(2 * peers_.size() * sizeof(bf16));
  if (!buffer)
    return buffer.status();
  bf16 *out = static_cast<bf16 *>((*buffer)->data), *in = out + peers_.size();
  NcclCommunicator *any = peers_.begin()->second.sendGroup;
  Status s = any->grouped([&]() -> Status {
    size_t i = 0;
    for (auto &[stage, peer] : peers_) {
      peer.sendGroup->setStream(transfer_);
      peer.receiveGroup->setStream(transfer_);
      MT_CUDA_RETURN_IF_ERROR(
          peer.sendGroup->send(out + i, 1, comm::DType::BF16, 1 - peer.sendGroup->rank()));
      MT_CUDA_RETURN_IF_ERROR(
          peer.receiveGroup->recv(in + i, 1, comm::DType::BF16, 1 - peer.receiveGroup->rank()));
      ++i;
    }
    return Status::ok();
  });
  if (!s)
    return s;
  MT_CUDA_CHECK(cudaStreamSynchronize(transfer_));
  return Status::ok();
}

NcclPipelineChannels::~NcclPipelineChannels() {
  if (transfer_)
    (void)cudaStreamSynchronize(transfer_);
  for (Staging &s : staging_) {
    (void)cudaFree(s.data);
    (void)cudaEventDestroy(s.sent);
  }
  if (copied_)
    (void)cudaEventDestroy(copied_);
  if (transfer_)
    (void)cudaStreamDestroy(transfer_);
}

std::string NcclPipelineChannels::where(int64_t stage, const Key &key) const {
  return "micro-batch " + std::to_string(key.first) + ", buffer %" +
         std::to_string(key.second) + " (stage " + std::to_string(self_) + " <-> " +
         std::to_string(stage) + ")";
}

Status NcclPipelineChannels::checkTurn(const char *what, int64_t stage, const Key &key,
                                       const std::vector<Key> &order, size_t done) const {
  if (done < order.size() && order[done] == key)
    return Status::ok();
  return Status::error(std::string("pipeline ") + what + " of " + where(stage, key) +
                       " out of the schedule's order: " +
                       (done < order.size() ? "it expects " + where(stage, order[done])
                                            : std::string("the step has no more")));
}

Expected<NcclPipelineChannels::Staging *> NcclPipelineChannels::freeStaging(size_t bytes) {
  for (Staging &s : staging_) {
    if (s.bytes < bytes)
      continue;
    cudaError_t done = cudaEventQuery(s.sent); // never recorded: done
    if (done == cudaSuccess)
      return &s;
    if (done != cudaErrorNotReady)
      MT_CUDA_CHECK(done);
  }
  Staging &s = staging_.emplace_back(); // owned from here, freed by the destructor
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&s.sent, cudaEventDisableTiming));
  MT_CUDA_CHECK(cudaMalloc(&s.data, bytes));
  s.bytes = bytes;
  return &s;
}

Status NcclPipelineChannels::send(int64_t toStage, int64_t microBatch, uint32_t tag,
                                  const void *data, int64_t count) {
  auto it = peers_.find(toStage);
  if (it == peers_.end())
    return Status::error("no pipeline channel to stage " + std::to_string(toStage));
  Peer &peer = it->second;
  if (Status s = checkTurn("send", toStage, {microBatch, tag}, peer.sendOrder, peer.sent); !s)
    return s;
  const size_t bytes = size_t(count) * sizeof(bf16);
  auto staging = freeStaging(bytes);
  if (!staging)
    return staging.status();
  Staging &s = **staging;
  MT_CUDA_CHECK(cudaMemcpyAsync(s.data, data, bytes, cudaMemcpyDeviceToDevice, compute_));
  MT_CUDA_CHECK(cudaEventRecord(copied_, compute_));
  MT_CUDA_CHECK(cudaStreamWaitEvent(transfer_, copied_, 0));
  peer.sendGroup->setStream(transfer_);
  if (Status st = peer.sendGroup->send(s.data, size_t(count), comm::DType::BF16,
                                       1 - peer.sendGroup->rank());
      !st)
    return st;
  MT_CUDA_CHECK(cudaEventRecord(s.sent, transfer_));
  ++peer.sent;
  return Status::ok();
}

Status NcclPipelineChannels::receive(int64_t fromStage, int64_t microBatch, uint32_t tag,
                                     void *out, int64_t count) {
  auto it = peers_.find(fromStage);
  if (it == peers_.end())
    return Status::error("no pipeline channel from stage " + std::to_string(fromStage));
  Peer &peer = it->second;
  if (Status s = checkTurn("receive", fromStage, {microBatch, tag}, peer.receiveOrder,
                           peer.received);
      !s)
    return s;
  peer.receiveGroup->setStream(compute_);
  if (Status s = peer.receiveGroup->recv(out, size_t(count), comm::DType::BF16,
                                         1 - peer.receiveGroup->rank());
      !s)
    return s;
  ++peer.received;
  return Status::ok();
}

Status NcclPipelineChannels::flush() {
  for (auto &[stage, peer] : peers_) {
    if (peer.sent != peer.sendOrder.size() || peer.received != peer.receiveOrder.size())
      return Status::error("pipeline step ended with " + std::to_string(peer.sent) + " of " +
                           std::to_string(peer.sendOrder.size()) + " messages sent to and " +
                           std::to_string(peer.received) + " of " +
                           std::to_string(peer.receiveOrder.size()) +
                           " received from stage " + std::to_string(stage) + " (stage " +
                           std::to_string(self_) + ")");
    peer.sent = peer.received = 0;
  }
  ScopedErrorContext context("waiting for the pipeline sends of the step: ");
  MT_CUDA_CHECK(cudaStreamSynchronize(transfer_));
  return Status::ok();
}

namespace {
/// A send (or recv) of the pipeline: enqueued on the transfer channels when
/// its step runs, for the micro-batch the executor is at.
void transfer(Lowerer &L, const plan::Attrs &a, bool send) {
  const std::string op = send ? "send" : "recv";
  Resources *r = &L.resources();
  if (!r->rank || r->rank->axisSize("pp") < 2) {
    L.fail(op + " needs the ranks of a pipeline (a plan with pp > 1)");
    return;
  }
  const int64_t peer = a.i("peer_virtual_stage") % r->rank->axisSize("pp"), n = a.i("n");
  const plan::Instruction &in = L.instruction();
  if (send) {
    const bf16 *data = L.bfIn(0);
    const uint32_t tag = in.inputs(0);
    L.emitCollective([=](cudaStream_t) -> Status {
      if (!r->pipeline)
        return Status::error("send outside a pipeline");
      return r->pipeline->send(peer, r->microBatch, tag, data, n);
    });
  } else {
    bf16 *out = L.bfOut(0);
    const uint32_t tag = in.outputs(0);
    L.emitCollective([=](cudaStream_t) -> Status {
      if (!r->pipeline)
        return Status::error("recv outside a pipeline");
      return r->pipeline->receive(peer, r->microBatch, tag, out, n);
    });
  }
}
} // namespace

void addPipelineLowerings(LoweringTable &t) {
  t[plan::Op::send] = [](Lowerer &L, const plan::Attrs &a) { transfer(L, a, true); };
  t[plan::Op::recv] = [](Lowerer &L, const plan::Attrs &a) { transfer(L, a, false); };
}

} // namespace mt::cuda
