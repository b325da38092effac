// The collectives of a group of ranks and the rendezvous of the World, over
// Gloo (TCP transport; the job's Store for the rendezvous). Without Gloo in the build, only
// single-rank worlds and groups of one work.
#include "runtime/comm/Gloo.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <thread>

#ifndef MT_HAVE_GLOO
#define MT_HAVE_GLOO 0
#endif
#if MT_HAVE_GLOO
#include <gloo/allgather.h>
#include <gloo/alltoallv.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>
#endif

namespace mt::comm {

using std::chrono::milliseconds;

namespace {

// allReduce gathers at most this many floats at once (16 MiB of scratch).
constexpr size_t kScratchFloats = size_t(1) << 22;

bool isTimeout(const std::string &what) {
  return what.find("Timed out") != std::string::npos ||
         what.find("timeout") != std::string::npos;
}

// The rank-order reduction of allReduce: parts[r * n + i] is rank r's
// element i. The order of the additions is fixed, hence bit-identical
// results everywhere; NaN wins in Max so a NaN check sees it on every rank.
void combine(ReduceOp op, const float *parts, size_t n, int count, float *out) {
  std::copy(parts, parts + n, out);
  for (int r = 1; r < count; ++r) {
    const float *x = parts + size_t(r) * n;
    if (op == ReduceOp::Max) {
      for (size_t i = 0; i < n; ++i)
        if (std::isnan(x[i]) || x[i] > out[i])
          out[i] = x[i];
    } else {
      for (size_t i = 0; i < n; ++i)
        out[i] += x[i];
    }
  }
  if (op == ReduceOp::Avg)
    for (size_t i = 0; i < n; ++i)
      out[i] /= float(count);
}

// What a rank is about to do: {kind, count, root, index of the call}. Ranks
// exchange it before every collective, so ranks that disagree get an error
// naming both calls, instead of a timeout or, for mismatched sizes, Gloo
// aborting the process from its I/O thread. A kind is an operation times 2
// plus the element type (0: fp32, 1: bf16).
using Call = std::array<int64_t, 4>;
enum Operation : int64_t {
  kAllReduceSum = 1,
  kAllReduceMax,
  kAllReduceAvg,
  kAllGather,
  kReduceScatterSum,
  kReduceScatterMax,
  kReduceScatterAvg,
  kBroadcast,
  kBarrier,
  kAllToAllV
};
constexpr uint32_t kCallTag = 0;    // payload tags are 1 + the call index
constexpr uint8_t kP2pSlotPrefix = 0xA0; // above the prefixes of Gloo's algorithms

int64_t kindOf(Operation op, DType type) { return int64_t(op) * 2 + (type == DType::BF16); }

Operation reduction(Operation sum, ReduceOp op) {
  return Operation(int64_t(sum) + (op == ReduceOp::Max ? 1 : op == ReduceOp::Avg ? 2 : 0));
}

uint32_t payloadTag(const Call &call) { return 1 + uint32_t(call[3] % 0x7fffffff); }

std::string describe(const Call &call) {
  std::string count = std::to_string(call[1]) + (call[0] % 2 ? " bf16" : " floats");
  std::string what;
  switch (Operation(call[0] / 2)) {
  case kAllReduceSum:
  case kAllReduceMax:
  case kAllReduceAvg:
    what = std::string("all_reduce(") +
           (call[0] / 2 == kAllReduceSum ? "sum" : call[0] / 2 == kAllReduceMax ? "max" : "avg") +
           ") of " + count;
    break;
  case kAllGather:
    what = "all_gather of " + count + " per rank";
    break;
  case kReduceScatterSum:
  case kReduceScatterMax:
  case kReduceScatterAvg:
    what = "reduce_scatter of " + count + " per rank";
    break;
  case kBroadcast:
    what = "broadcast of " + count + " from group rank " + std::to_string(call[2]);
    break;
  case kBarrier:
    what = "barrier";
    break;
  case kAllToAllV:
    what = "all_to_all_v (" + count + " to send)";
    break;
  default:
    what = "unknown call " + std::to_string(call[0]);
  }
  return what + " as its call #" + std::to_string(call[3]);
}

// Empty when every rank makes this rank's call.
std::string findDisagreement(const std::vector<Call> &all, const std::vector<int> &ranks,
                             int self) {
  for (size_t r = 0; r < all.size(); ++r)
    if (all[r] != all[size_t(self)])
      return "rank " + std::to_string(ranks[size_t(self)]) + " makes " +
             describe(all[size_t(self)]) + ", rank " + std::to_string(ranks[r]) + " makes " +
             describe(all[r]);
  return {};
}

#if MT_HAVE_GLOO
using GlooContext = std::shared_ptr<gloo::Context>;

// Gloo's view of the job's Store (a directory, or TCP: Debian's Gloo has no
// TCP store of its own); Gloo wants failures as exceptions.
class GlooStore : public gloo::rendezvous::Store {
public:
  explicit GlooStore(comm::Store &store) : store_(store) {}
  void set(const std::string &key, const std::vector<char> &data) override {
    if (Status s = store_.set(key, data); !s)
      throw gloo::IoException(s.message());
  }
  std::vector<char> get(const std::string &key) override {
    auto value = store_.get(key);
    if (!value)
      throw gloo::IoException(value.message());
    return std::move(*value);
  }
  void wait(const std::vector<std::string> &keys) override {
    if (Status s = store_.wait(keys); !s)
      throw gloo::IoException(s.message());
  }
  void wait(const std::vector<std::string> &keys, const milliseconds &) override { wait(keys); }

private:
  comm::Store &store_;
};

std::shared_ptr<gloo::rendezvous::Store> makeStore(comm::Store &store) {
  return std::make_shared<GlooStore>(store);
}

std::shared_ptr<gloo::transport::Device> makeDevice(const std::string &host) {
  gloo::transport::tcp::attr attr;
  attr.hostname = host; // empty: Gloo resolves this machine's hostname
  return gloo::transport::tcp::CreateDevice(attr);
}

GlooContext connectMesh(gloo::rendezvous::Store &store, const std::string &prefix, int rank,
                        int size, std::shared_ptr<gloo::transport::Device> &device,
                        milliseconds timeout) {
  gloo::rendezvous::PrefixStore prefixed(prefix, store);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
  context->setTimeout(timeout);
  context->connectFullMesh(prefixed, device);
  return context;
}

// Gloo moves bytes: every element type travels as chars.
void gatherOnce(const GlooContext &context, const void *in, void *out, size_t bytes,
                uint32_t tag, milliseconds timeout) {
  gloo::AllgatherOptions opts(context);
  char *outBytes = static_cast<char *>(out);
  if (in != outBytes + size_t(context->rank) * bytes)
    opts.setInput(static_cast<char *>(const_cast<void *>(in)), bytes); // only read
  opts.setOutput(outBytes, bytes * size_t(context->size));
  opts.setTag(tag);
  opts.setTimeout(timeout);
  gloo::allgather(opts);
}

void broadcastOnce(const GlooContext &context, void *data, size_t bytes, int root, uint32_t tag,
                   milliseconds timeout) {
  gloo::BroadcastOptions opts(context);
  opts.setOutput(static_cast<char *>(data), bytes);
  opts.setRoot(root);
  opts.setTag(tag);
  opts.setTimeout(timeout);
  gloo::broadcast(opts);
}

void gatherCalls(const GlooContext &context, const Call &mine, Call *all,
                 milliseconds timeout) {
  gloo::AllgatherOptions opts(context);
  opts.setInput(const_cast<int64_t *>(mine.data()), mine.size()); // only read
  opts.setOutput(all->data(), mine.size() * size_t(context->size));
  opts.setTag(kCallTag);
  opts.setTimeout(timeout);
  gloo::allgather(opts);
}

// The index-th message in one direction between two ranks: its own slot.
void exchangeOnce(const GlooContext &context, bool sending, void *data, size_t bytes,
                  int peer, uint64_t index, milliseconds timeout) {
  auto buffer = context->createUnboundBuffer(data, bytes);
  uint64_t slot = gloo::Slot::build(kP2pSlotPrefix, uint32_t(index % 0xffffffff));
  if (sending) {
    buffer->send(peer, slot);
    buffer->waitSend(timeout);
  } else {
    buffer->recv(peer, slot);
    buffer->waitRecv(timeout);
  }
}

void allToAllVOnce(const GlooContext &context, const void *in,
                   const std::vector<int64_t> &sendBytes, void *out,
                   const std::vector<int64_t> &recvBytes, uint32_t tag, milliseconds timeout) {
  gloo::AlltoallvOptions opts(context);
  opts.setInput(static_cast<char *>(const_cast<void *>(in)), sendBytes); // only read
  opts.setOutput(static_cast<char *>(out), recvBytes);
  opts.setTag(tag);
  opts.setTimeout(timeout);
  gloo::alltoallv(opts);
}

void closeConnections(const GlooContext &context) { context->closeConnections(); }
#else
// Without Gloo no communicator has more than one member, so these never run.
using GlooContext = std::shared_ptr<gloo::Context>;
[[noreturn]] void unreachable() { throw std::logic_error("built without Gloo"); }
std::shared_ptr<gloo::rendezvous::Store> makeStore(comm::Store &) { unreachable(); }
std::shared_ptr<gloo::transport::Device> makeDevice(const std::string &) { unreachable(); }
GlooContext connectMesh(gloo::rendezvous::Store &, const std::string &, int, int,
                        std::shared_ptr<gloo::transport::Device> &, milliseconds) {
  unreachable();
}
void gatherOnce(const GlooContext &, const void *, void *, size_t, uint32_t, milliseconds) {
  unreachable();
}
void broadcastOnce(const GlooContext &, void *, size_t, int, uint32_t, milliseconds) {
  unreachable();
}
void gatherCalls(const GlooContext &, const Call &, Call *, milliseconds) { unreachable(); }
void exchangeOnce(const GlooContext &, bool, void *, size_t, int, uint64_t, milliseconds) {
  unreachable();
}
void allToAllVOnce(const GlooContext &, const void *, const std::vector<int64_t> &, void *,
                   const std::vector<int64_t> &, uint32_t, milliseconds) {
  unreachable();
}
void closeConnections(const GlooContext &) {}
#endif

} // namespace

//===----------------------------------------------------------------------===//
// GlooCommunicator
//===----------------------------------------------------------------------===//

GlooCommunicator::GlooCommunicator(std::string name, std::vector<int> ranks, int worldRank,
                                   int worldSize, milliseconds timeout,
                                   std::shared_ptr<gloo::Context> context)
    : Communicator(std::move(name), std::move(ranks), worldRank, worldSize), timeout_(timeout),
      context_(std::move(context)), sent_(ranks_.size(), 0), received_(ranks_.size(), 0) {}

GlooCommunicator::~GlooCommunicator() = default;

// Keeps the first failure, and closes the connections so that peers blocked
// on this rank fail now.
Status GlooCommunicator::fail(const char *, const std::string &message) {
  failure_ = message;
  try {
    closeConnections(context_);
  } catch (...) {
    // Already failing; the connections close with the context anyway.
  }
  return Status::error(message);
}

// Exchanges the calls, then runs the Gloo operation; turns whatever it throws
// into a Status.
template <typename Body>
Status GlooCommunicator::guarded(const char *op, const Call &call, Body &&body) {
  if (failure_)
    return Status::error(where(op) + ": not run, this communicator failed earlier: " +
                         *failure_);
  std::string what, disagreement;
  try {
    std::vector<Call> all(ranks_.size());
    gatherCalls(context_, call, all.data(), timeout_);
    disagreement = findDisagreement(all, ranks_, rank_);
    if (disagreement.empty()) {
      body(payloadTag(call));
      return Status::ok();
    }
  } catch (const std::exception &e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  std::string message = where(op);
  if (!disagreement.empty())
    message += ": the ranks disagree: " + disagreement;
  else if (isTimeout(what))
    message += ": no answer from a peer within " + formatDuration(timeout_) + " [gloo: " +
               what + "]";
  else
    message += ": a peer failed or closed its connection (timeout " +
               formatDuration(timeout_) + ") [gloo: " + what + "]";
  return fail(op, message);
}

// The rank-order reduction over the group of `count` floats from `in` into
// `out` (they may alias), gathered in pieces of bounded scratch.
Status GlooCommunicator::reduceInto(const float *in, float *out, size_t count, ReduceOp op) {
  const size_t piece = std::max<size_t>(1, kScratchFloats / size_t(size()));
  return guarded("all_reduce", {kindOf(reduction(kAllReduceSum, op), DType::F32), int64_t(count),
                                -1, int64_t(calls_++)},
                 [&](uint32_t tag) {
                   scratch_.resize(std::min(count, piece) * size_t(size()));
                   for (size_t begin = 0; begin < count; begin += piece) {
                     size_t n = std::min(piece, count - begin);
                     gatherOnce(context_, in + begin, scratch_.data(), n * sizeof(float), tag,
                                timeout_);
                     combine(op, scratch_.data(), n, size(), out + begin);
                   }
                 });
}

// Gathering and adding in rank order instead of Gloo's allreduce: Gloo's ring
// and bcube results agree across ranks, but each chunk is added in an order
// set by the algorithm and the group size (on the tests' data, 13% of the
// elements of a 3-rank ring sum differ from the rank-order sum). The
// rank-order sum is what a single process computes, so every layout can be
// compared bit for bit. It moves (size - 1) x count floats per rank instead
// of about 2 x count: fine for the CPU reference, which values exactness.
Status GlooCommunicator::allReduce(void *data, size_t count, DType type, ReduceOp op) {
  if (type != DType::F32)
    return Status::error(where("all_reduce") + ": the CPU backend reduces fp32 only, got " +
                         nameOf(type));
  if (size() == 1)
    return Status::ok();
  float *values = static_cast<float *>(data);
  return reduceInto(values, values, count, op);
}

// The whole input reduced, this rank's block kept: the same rank-order sums
// as allReduce.
Status GlooCommunicator::reduceScatter(const void *in, void *out, size_t countPerRank,
                                       DType type, ReduceOp op) {
  if (type != DType::F32)
    return Status::error(where("reduce_scatter") +
                         ": the CPU backend reduces fp32 only, got " + nameOf(type));
  const float *whole = static_cast<const float *>(in);
  std::vector<float> reduced(whole, whole + countPerRank * size_t(size()));
  if (size() > 1)
    if (Status s = reduceInto(reduced.data(), reduced.data(), reduced.size(), op); !s)
      return s;
  std::memcpy(out, reduced.data() + size_t(rank_) * countPerRank, countPerRank * sizeof(float));
  return Status::ok();
}

Status GlooCommunicator::allGather(const void *in, void *out, size_t countPerRank, DType type) {
  const size_t bytes = countPerRank * sizeOf(type);
  if (size() == 1) {
    if (in != out && bytes)
      std::memmove(out, in, bytes);
    return Status::ok();
  }
  return guarded("all_gather", {kindOf(kAllGather, type), int64_t(countPerRank), -1,
                                int64_t(calls_++)},
                 [&](uint32_t tag) {
                   if (bytes)
                     gatherOnce(context_, in, out, bytes, tag, timeout_);
                 });
}

// The calls agree on the group size only (each rank has its own counts);
// then every rank gathers every rank's send and receive counts and checks
// all pairs, so that counts that do not pair up fail on every rank alike
// instead of Gloo aborting on a size mismatch.
Status GlooCommunicator::allToAllV(const void *in, const std::vector<size_t> &sendCounts,
                                   void *out, const std::vector<size_t> &recvCounts,
                                   DType type) {
  const size_t n = size_t(size()), elem = sizeOf(type);
  if (sendCounts.size() != n || recvCounts.size() != n)
    return Status::error(where("all_to_all_v") + ": expects " + std::to_string(n) +
                         " send and receive counts, got " + std::to_string(sendCounts.size()) +
                         " and " + std::to_string(recvCounts.size()));
  if (n == 1) {
    if (sendCounts[0] != recvCounts[0])
      return Status::error(where("all_to_all_v") + ": sends " + std::to_string(sendCounts[0]) +
                           " elements to itself but receives " + std::to_string(recvCounts[0]));
    if (in != out && sendCounts[0])
      std::memmove(out, in, sendCounts[0] * elem);
    return Status::ok();
  }
  std::string mismatch;
  Status s = guarded(
      "all_to_all_v", {kindOf(kAllToAllV, type), int64_t(n), -1, int64_t(calls_++)},
      [&](uint32_t tag) {
        // Rank r's row: its n send counts, then its n receive counts.
        std::vector<int64_t> mine(sendCounts.begin(), sendCounts.end()), all(2 * n * n);
        mine.insert(mine.end(), recvCounts.begin(), recvCounts.end());
        gatherOnce(context_, mine.data(), all.data(), 2 * n * sizeof(int64_t), tag, timeout_);
        for (size_t from = 0; from < n && mismatch.empty(); ++from)
          for (size_t to = 0; to < n && mismatch.empty(); ++to) {
            int64_t sent = all[from * 2 * n + to], expected = all[to * 2 * n + n + from];
            if (sent != expected)
              mismatch = "group rank " + std::to_string(from) + " sends " +
                         std::to_string(sent) + " elements to group rank " + std::to_string(to) +
                         ", which expects " + std::to_string(expected);
          }
        if (!mismatch.empty())
          return;
        std::vector<int64_t> sendBytes(n), recvBytes(n);
        for (size_t r = 0; r < n; ++r) {
          sendBytes[r] = int64_t(sendCounts[r] * elem);
          recvBytes[r] = int64_t(recvCounts[r] * elem);
        }
        allToAllVOnce(context_, in, sendBytes, out, recvBytes, tag, timeout_);
      });
  if (s && !mismatch.empty())
    return fail("all_to_all_v", where("all_to_all_v") + ": counts do not pair up: " + mismatch);
  return s;
}

Status GlooCommunicator::broadcast(void *data, size_t count, DType type, int root) {
  if (Status s = checkGroupRank("broadcast", "root", root); !s)
    return s;
  if (size() == 1)
    return Status::ok();
  const size_t bytes = count * sizeOf(type);
  return guarded("broadcast", {kindOf(kBroadcast, type), int64_t(count), root, int64_t(calls_++)},
                 [&](uint32_t tag) {
                   if (bytes)
                     broadcastOnce(context_, data, bytes, root, tag, timeout_);
                 });
}

// Only the two ranks take part, so calls are not exchanged: a size mismatch
// shows as Gloo's error on the receiving side.
Status GlooCommunicator::pointToPoint(bool sending, void *data, size_t bytes, int peer) {
  const char *op = sending ? "send" : "recv";
  if (Status s = checkGroupRank(op, "peer", peer); !s)
    return s;
  if (failure_)
    return Status::error(where(op) + ": not run, this communicator failed earlier: " +
                         *failure_);
  uint64_t index = (sending ? sent_ : received_)[size_t(peer)]++;
  if (bytes == 0)
    return Status::ok();
  try {
    exchangeOnce(context_, sending, data, bytes, peer, index, timeout_);
    return Status::ok();
  } catch (const std::exception &e) {
    std::string what = e.what();
    return fail(op, where(op) + (sending ? " to" : " from") + " group rank " +
                        std::to_string(peer) + ": " +
                        (isTimeout(what) ? "no answer within " + formatDuration(timeout_)
                                         : std::string("the peer failed")) +
                        " [gloo: " + what + "]");
  }
}

Status GlooCommunicator::send(const void *data, size_t count, DType type, int peer) {
  return pointToPoint(true, const_cast<void *>(data), count * sizeOf(type), peer);
}

Status GlooCommunicator::recv(void *data, size_t count, DType type, int peer) {
  return pointToPoint(false, data, count * sizeOf(type), peer);
}

// The exchange of the calls is itself a barrier: no rank finishes an
// allgather before every rank has contributed.
Status GlooCommunicator::barrier() {
  if (size() == 1)
    return Status::ok();
  return guarded("barrier", {kindOf(kBarrier, DType::F32), 0, -1, int64_t(calls_++)},
                 [](uint32_t) {});
}

//===----------------------------------------------------------------------===//
// World
//===----------------------------------------------------------------------===//

World::World(RankInfo info, milliseconds timeout) : info_(std::move(info)), timeout_(timeout) {}

World::~World() = default;

bool World::multiRankSupported() { return MT_HAVE_GLOO; }

// Checks what connect() cannot leave to Gloo, whose failures read poorly.
static Status checkConnectArguments(const RankInfo &info, milliseconds timeout) {
  std::string who = "[rank " + std::to_string(info.rank) + "/" +
                    std::to_string(info.worldSize) + "] ";
  if (timeout.count() <= 0)
    return Status::error(who + "the communication timeout must be positive (got " +
                         std::to_string(timeout.count()) + " ms)");
  if (info.worldSize < 1 || info.rank < 0 || info.rank >= info.worldSize)
    return Status::error(who + "rank must be in [0, world size)");
  if (info.worldSize == 1)
    return Status::ok();
  if (!World::multiRankSupported())
    return Status::error(who + "this build has no Gloo (libgloo-dev), so it cannot run " +
                         std::to_string(info.worldSize) + " ranks on the CPU");
  return Status::ok();
}

// Only when nobody chose a disposition: a program that handles SIGPIPE keeps
// its handler (and then gets EPIPE errors from Gloo all the same).
static void ignoreSigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
    std::signal(SIGPIPE, SIG_IGN);
}

Expected<std::unique_ptr<World>> World::connect(const RankInfo &info, milliseconds timeout) {
  if (Status s = checkConnectArguments(info, timeout); !s)
    return s;
  std::unique_ptr<World> world(new World(info, timeout));
  if (info.worldSize > 1) {
    ignoreSigpipe();
    auto store = openStore(info, timeout);
    if (!store)
      return store.status();
    world->store_ = std::move(*store);
    try {
      world->glooStore_ = makeStore(*world->store_);
      world->device_ = makeDevice(info.host);
    } catch (const std::exception &e) {
      return Status::error("[rank " + std::to_string(info.rank) + "/" +
                           std::to_string(info.worldSize) + "] cannot listen on '" +
                           (info.host.empty() ? "this host's name" : info.host) +
                           "' (MT_COMM_HOST): " + e.what());
    }
  }
  std::vector<int> all(size_t(info.worldSize));
  std::iota(all.begin(), all.end(), 0);
  auto comm = world->group("world", all);
  if (!comm)
    return comm.status();
  world->world_ = std::move(*comm);
  return world;
}

Expected<std::unique_ptr<Communicator>> World::group(const std::string &name,
                                                     const std::vector<int> &ranks) {
  const int self = info_.rank, worldSize = info_.worldSize;
  if (Status s = checkGroupMembers(name, ranks, self, worldSize); !s)
    return s;
  std::string head = "[rank " + std::to_string(self) + "/" + std::to_string(worldSize) +
                     "] group '" + name + "' (ranks " + formatRanks(ranks) + ")";
  auto member = std::find(ranks.begin(), ranks.end(), self);
  if (ranks.size() == 1)
    return std::unique_ptr<Communicator>(
        new GlooCommunicator(name, ranks, self, worldSize, timeout_, nullptr));

  // The key holds the rank list (every tp group may be called "tp") and how
  // often this rank made this group before (so a group can be made again).
  std::string key = name + "/" + joinRanks(ranks);
  key += "/" + std::to_string(created_[key]++);
  try {
    auto context = connectMesh(*glooStore_, key, int(member - ranks.begin()), int(ranks.size()),
                               device_, timeout_);
    return std::unique_ptr<Communicator>(
        new GlooCommunicator(name, ranks, self, worldSize, timeout_, std::move(context)));
  } catch (const std::exception &e) {
    // The store's messages name the store, the keys and the timeout.
    return Status::error(head + ": cannot connect (are all its ranks creating this group?): " +
                         e.what());
  } catch (...) {
    return Status::error(head + ": cannot connect: unknown exception");
  }
}

} // namespace mt::comm
