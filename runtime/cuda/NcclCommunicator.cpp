// NCCL communicators: bootstrap through the rendezvous store, data
// calls on a stream, host calls staged through device memory.
#include "runtime/cuda/NcclCommunicator.h"

#include "runtime/cuda/Check.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>

namespace mt::cuda {

using comm::DType;
using comm::ReduceOp;

namespace {

ncclDataType_t ncclType(DType type) { return type == DType::F32 ? ncclFloat32 : ncclBfloat16; }

ncclRedOp_t ncclOp(ReduceOp op) {
  switch (op) {
  case ReduceOp::Sum:
    return ncclSum;
  case ReduceOp::Max:
    return ncclMax;
  case ReduceOp::Avg:
    return ncclAvg;
  }
  return ncclSum;
}

std::string who(const comm::RankInfo &info) {
  return "[rank " + std::to_string(info.rank) + "/" + std::to_string(info.worldSize) + "] ";
}

} // namespace

/// Runs an NCCL call of the enclosing member through launch(): watched,
/// refused after a failure of this rank, a failed result as its Status.
#define MT_NCCL_CHECK(op, call)                                                \
  do {                                                                         \
    if (Status mtNcclStatus_ = launch(op, #call, [&] { return (call); });      \
        !mtNcclStatus_)                                                        \
      return mtNcclStatus_;                                                    \
  } while (0)

/// Refuses a data call after a failure.
#define MT_NCCL_REFUSE_IF_FAILED(op)                                           \
  do {                                                                         \
    if (Status mtNcclStatus_ = refuseIfFailed(op); !mtNcclStatus_)             \
      return mtNcclStatus_;                                                    \
  } while (0)

Status selectDevice(const comm::RankInfo &info) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return Status::error(who(info) + "no CUDA device is visible to this process");
  }
  const int device = count == 1 ? 0 : info.localRank;
  if (device >= count)
    return Status::error(who(info) + "local rank " + std::to_string(info.localRank) +
                         " (from the " + info.source + " variables) has no GPU: this process "
                         "sees " + std::to_string(count) +
                         " (start at most that many ranks per machine, or give each one GPU "
                         "with CUDA_VISIBLE_DEVICES)");
  MT_CUDA_CHECK(cudaSetDevice(device));
  return Status::ok();
}

Expected<std::unique_ptr<NcclCommunicator>>
NcclCommunicator::create(const std::string &name, const std::vector<int> &ranks,
                         const comm::RankInfo &info, comm::Store &store,
                         const std::string &key, std::shared_ptr<NcclWatchdog> watchdog) {
  if (Status s = comm::checkGroupMembers(name, ranks, info.rank, info.worldSize); !s)
    return s;
  const int groupRank = int(std::find(ranks.begin(), ranks.end(), info.rank) - ranks.begin());
  const int n = int(ranks.size());
  const std::string head = who(info) + "NCCL group '" + name + "' (ranks " +
                           comm::formatRanks(ranks) + "): ";
  // Every member is there before anyone enters ncclCommInitRank, which
  // would otherwise wait without a bound for a rank that never started.
  if (Status s = store.set(key + "/arrived/" + std::to_string(groupRank), {}); !s)
    return Status::error(head + s.message());
  std::vector<std::string> arrivals;
  for (int r = 0; r < n; ++r)
    arrivals.push_back(key + "/arrived/" + std::to_string(r));
  if (Status s = store.wait(arrivals); !s)
    return Status::error(head + s.message() + " (are all " + std::to_string(info.worldSize) +
                         " ranks running, and creating this group?)");
  ncclUniqueId id;
  if (groupRank == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess)
      return Status::error(head + "ncclGetUniqueId: " + ncclGetErrorString(r));
    if (Status s = store.set(key + "/id", std::vector<char>(id.internal, id.internal + sizeof(id)));
        !s)
      return Status::error(head + s.message());
  } else {
    auto value = store.get(key + "/id");
    if (!value)
      return Status::error(head + value.message());
    if (value->size() != sizeof(id))
      return Status::error(head + "the published ncclUniqueId has " +
                           std::to_string(value->size()) + " bytes, expected " +
                           std::to_string(sizeof(id)));
    std::memcpy(id.internal, value->data(), sizeof(id));
  }
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator(name, ranks, info.rank,
                                                           info.worldSize));
  MT_CUDA_CHECK(cudaStreamCreateWithFlags(&c->own_, cudaStreamNonBlocking));
  c->stream_ = c->own_;
  ncclComm_t made = nullptr;
  if (ncclResult_t r = ncclCommInitRank(&made, n, id, groupRank); r != ncclSuccess)
    return Status::error(head + "ncclCommInitRank: " + ncclGetErrorString(r) + " (" +
                         ncclGetLastError(nullptr) + ")");
  c->comm_ = made;
  c->watchdog_ = std::move(watchdog);
  c->watchdog_->add(made);
  return c;
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ && !watchdog_) // ncclCommInitRank succeeded, the rest of create() did not
    (void)ncclCommDestroy(comm_);
  if (comm_ && watchdog_) {
    auto hold = watchdog_->hold();
    // Not when the watchdog aborted it: the handle is gone.
    if (watchdog_->remove(comm_))
      (void)(failed_ || watchdog_->failure() ? ncclCommAbort(comm_) : ncclCommDestroy(comm_));
  }
  if (scratch_)
    (void)cudaFree(scratch_);
  if (own_)
    (void)cudaStreamDestroy(own_);
}

Status NcclCommunicator::check(ncclResult_t result, const char *op, const char *call) {
  failed_ = true;
  std::string last = ncclGetLastError(comm_);
  return Status::error(errorContext() + where(op) + ": " + call + ": " +
                       ncclGetErrorString(result) + (last.empty() ? "" : " (" + last + ")"));
}

Status NcclCommunicator::allReduce(void *data, size_t count, DType type, ReduceOp op) {
  MT_NCCL_REFUSE_IF_FAILED("all_reduce");
  MT_NCCL_CHECK("all_reduce", ncclAllReduce(data, data, count, ncclType(type), ncclOp(op),
                                            comm_, stream_));
  return Status::ok();
}

Status NcclCommunicator::allGather(const void *in, void *out, size_t countPerRank,
                                   DType type) {
  MT_NCCL_REFUSE_IF_FAILED("all_gather");
  MT_NCCL_CHECK("all_gather",
                ncclAllGather(in, out, countPerRank, ncclType(type), comm_, stream_));
  return Status::ok();
}

Status NcclCommunicator::reduceScatter(const void *in, void *out, size_t countPerRank,
                                       DType type, ReduceOp op) {
  MT_NCCL_REFUSE_IF_FAILED("reduce_scatter");
  MT_NCCL_CHECK("reduce_scatter", ncclReduceScatter(in, out, countPerRank, ncclType(type),
                                                    ncclOp(op), comm_, stream_));
  return Status::ok();
}

Status NcclCommunicator::allToAllV(const void *in, const std::vector<size_t> &sendCounts,
                                   void *out, const std::vector<size_t> &recvCounts,
                                   DType type) {
  const size_t n = size_t(size()), elem = comm::sizeOf(type);
  if (sendCounts.size() != n || recvCounts.size() != n)
    return Status::error(where("all_to_all_v") + ": expects " + std::to_string(n) +
                         " send and receive counts, got " + std::to_string(sendCounts.size()) +
                         " and " + std::to_string(recvCounts.size()));
  MT_NCCL_REFUSE_IF_FAILED("all_to_all_v");
  return grouped([&]() -> Status {
    const char *src = static_cast<const char *>(in);
    char *dst = static_cast<char *>(out);
    for (size_t p = 0; p < n; ++p) {
      if (sendCounts[p])
        MT_NCCL_CHECK("all_to_all_v", ncclSend(src, sendCounts[p], ncclType(type), int(p),
                                               comm_, stream_));
      if (recvCounts[p])
        MT_NCCL_CHECK("all_to_all_v", ncclRecv(dst, recvCounts[p], ncclType(type), int(p),
                                               comm_, stream_));
      src += sendCounts[p] * elem;
      dst += recvCounts[p] * elem;
    }
    return Status::ok();
  });
}

Status NcclCommunicator::broadcast(void *data, size_t count, DType type, int root) {
  if (Status s = checkGroupRank("broadcast", "root", root); !s)
    return s;
  MT_NCCL_REFUSE_IF_FAILED("broadcast");
  MT_NCCL_CHECK("broadcast",
                ncclBroadcast(data, data, count, ncclType(type), root, comm_, stream_));
  return Status::ok();
}

Status NcclCommunicator::send(const void *data, size_t count, DType type, int peer) {
  if (Status s = checkGroupRank("send", "peer", peer); !s)
    return s;
  MT_NCCL_REFUSE_IF_FAILED("send");
  MT_NCCL_CHECK("send", ncclSend(data, count, ncclType(type), peer, comm_, stream_));
  return Status::ok();
}

Status NcclCommunicator::recv(void *data, size_t count, DType type, int peer) {
  if (Status s = checkGroupRank("recv", "peer", peer); !s)
    return s;
  MT_NCCL_REFUSE_IF_FAILED("recv");
  MT_NCCL_CHECK("recv", ncclRecv(data, count, ncclType(type), peer, comm_, stream_));
  return Status::ok();
}

Status NcclCommunicator::refuseIfFailed(const char *op) {
  if (auto failure = watchdog_->failure()) {
    failed_ = true;
    return Status::error(*failure);
  }
  if (failed_)
    return Status::error(where(op) + ": not run, this communicator failed earlier");
  return Status::ok();
}

template <typename Call>
Status NcclCommunicator::launch(const char *op, const char *text, Call &&nccl) {
  auto hold = watchdog_->hold();
  if (Status s = refuseIfFailed(op); !s)
    return s;
  const ncclResult_t result = nccl();
  if (Status s = refuseIfFailed(op); !s) // aborted while the call was stuck
    return s;
  if (result != ncclSuccess)
    return check(result, op, text);
  return watchdog_->enqueued(comm_, stream_, errorContext() + where(op));
}

Status NcclCommunicator::grouped(const std::function<Status()> &calls) {
  auto hold = watchdog_->hold();
  if (Status s = refuseIfFailed("group"); !s)
    return s;
  if (ncclResult_t r = ncclGroupStart(); r != ncclSuccess)
    return check(r, "group", "ncclGroupStart()");
  watchdog_->beginGroup();
  Status s = calls();
  // The group is closed whatever happened inside: NCCL allows no other
  // call on this thread while one is open.
  ncclResult_t ended = ncclGroupEnd();
  Status watched = watchdog_->endGroup();
  if (!s)
    return s;
  if (Status f = refuseIfFailed("group"); !f)
    return f;
  if (ended != ncclSuccess)
    return check(ended, "group", "ncclGroupEnd()");
  return watched;
}

Expected<void *> NcclCommunicator::scratch(size_t bytes) {
  bytes = std::max<size_t>(bytes, 256);
  if (bytes > scratchBytes_) {
    if (scratch_) {
      MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
      MT_CUDA_CHECK(cudaFree(scratch_));
      scratch_ = nullptr;
      scratchBytes_ = 0;
    }
    MT_CUDA_CHECK(cudaMalloc(&scratch_, bytes));
    scratchBytes_ = bytes;
  }
  return scratch_;
}

Status NcclCommunicator::staged(const char *op, const void *in, size_t inBytes, void *out,
                                size_t outBytes, const std::function<Status(void *)> &body) {
  ScopedErrorContext context(errorContext() + where(op) + " of host data: ");
  auto buffer = scratch(std::max(inBytes, outBytes));
  if (!buffer)
    return buffer.status();
  if (inBytes)
    MT_CUDA_CHECK(cudaMemcpyAsync(*buffer, in, inBytes, cudaMemcpyHostToDevice, stream_));
  if (Status s = body(*buffer); !s)
    return s;
  if (outBytes)
    MT_CUDA_CHECK(cudaMemcpyAsync(out, *buffer, outBytes, cudaMemcpyDeviceToHost, stream_));
  MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return refuseIfFailed(op); // the wait may have ended in the watchdog's abort
}

Status NcclCommunicator::allReduceHost(float *data, size_t count, ReduceOp op) {
  const size_t bytes = count * sizeof(float);
  return staged("all_reduce", data, bytes, data, bytes,
                [&](void *d) { return allReduce(d, count, DType::F32, op); });
}

// The input goes straight to this rank's slot of the output: in place.
Status NcclCommunicator::allGatherHost(const float *in, float *out, size_t countPerRank) {
  const size_t bytes = countPerRank * sizeof(float);
  ScopedErrorContext context(errorContext() + where("all_gather") + " of host data: ");
  auto buffer = scratch(bytes * size_t(size()));
  if (!buffer)
    return buffer.status();
  char *slot = static_cast<char *>(*buffer) + size_t(rank()) * bytes;
  if (bytes)
    MT_CUDA_CHECK(cudaMemcpyAsync(slot, in, bytes, cudaMemcpyHostToDevice, stream_));
  if (Status s = allGather(slot, *buffer, countPerRank, DType::F32); !s)
    return s;
  if (bytes)
    MT_CUDA_CHECK(cudaMemcpyAsync(out, *buffer, bytes * size_t(size()), cudaMemcpyDeviceToHost,
                                  stream_));
  MT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return refuseIfFailed("all_gather");
}

Status NcclCommunicator::broadcastHost(float *data, size_t count, int root) {
  const size_t bytes = count * sizeof(float);
  return staged("broadcast", data, bytes, data, bytes,
                [&](void *d) { return broadcast(d, count, DType::F32, root); });
}

Status NcclCommunicator::barrier() {
  return staged("barrier", nullptr, 0, nullptr, 0,
                [&](void *d) { return allReduce(d, 1, DType::F32, ReduceOp::Sum); });
}

namespace {

/// The NCCL groups of one rank; group() keys each in the store by name,
/// members and how often this rank made it before.
class NcclGroups final : public comm::GroupFactory {
public:
  NcclGroups(comm::RankInfo info, std::unique_ptr<comm::Store> store,
             std::chrono::milliseconds timeout)
      : info_(std::move(info)), store_(std::move(store)),
        watchdog_(std::make_shared<NcclWatchdog>(timeout)) {}

  Status connectWorld() {
    std::vector<int> all(size_t(info_.worldSize));
    std::iota(all.begin(), all.end(), 0);
    auto world = group("world", all);
    if (!world)
      return world.status();
    world_ = std::move(*world);
    return Status::ok();
  }

  comm::Communicator &world() override { return *world_; }

  Expected<std::unique_ptr<comm::Communicator>> group(const std::string &name,
                                                      const std::vector<int> &ranks) override {
    std::string key = "nccl/" + name + "/" + comm::joinRanks(ranks);
    const int before = created_[key]++; // a group made again gets fresh keys
    key.append("/").append(std::to_string(before));
    auto made = NcclCommunicator::create(name, ranks, info_, *store_, key, watchdog_);
    if (!made)
      return made.status();
    return std::unique_ptr<comm::Communicator>(std::move(*made));
  }

private:
  comm::RankInfo info_;
  std::unique_ptr<comm::Store> store_;
  std::shared_ptr<NcclWatchdog> watchdog_; // on this rank's GPU: made after selectDevice
  std::unique_ptr<comm::Communicator> world_;
  std::map<std::string, int> created_;
};

} // namespace

Expected<std::unique_ptr<comm::GroupFactory>> connectNccl(const comm::RankInfo &info,
                                                          std::chrono::milliseconds timeout) {
  auto store = comm::openStore(info, timeout);
  if (!store)
    return store.status();
  if (Status s = selectDevice(info); !s)
    return s;
  auto groups = std::make_unique<NcclGroups>(info, std::move(*store), timeout);
  if (Status s = groups->connectWorld(); !s)
    return s;
  return std::unique_ptr<comm::GroupFactory>(std::move(groups));
}

} // namespace mt::cuda
