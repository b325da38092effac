// The collectives of a group of ranks and the rendezvous of the World, over
// Gloo (TCP transport, FileStore rendezvous). Without Gloo in the build, only
// single-rank worlds and groups of one work.
#include "runtime/comm/Communicator.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <stdexcept>
#include <thread>

#ifndef MT_HAVE_GLOO
#define MT_HAVE_GLOO 0
#endif
#if MT_HAVE_GLOO
#include <gloo/allgather.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#endif

namespace mt::comm {

using std::chrono::milliseconds;

namespace {

// allReduce gathers at most this many floats at once (16 MiB of scratch).
constexpr size_t kScratchFloats = size_t(1) << 22;

std::string formatDuration(milliseconds d) {
  auto ms = d.count();
  if (ms >= 1000 && ms % 1000 == 0)
    return std::to_string(ms / 1000) + " s";
  if (ms >= 1000 && ms % 100 == 0)
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
  return std::to_string(ms) + " ms";
}

std::string joinRanks(const std::vector<int> &ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i)
      s += ',';
    s += std::to_string(ranks[i]);
  }
  return s;
}

// "1,3" or, for long lists, "0,1,2,3,...,63 (64 ranks)".
std::string formatRanks(const std::vector<int> &ranks) {
  if (ranks.size() <= 8)
    return joinRanks(ranks);
  return joinRanks({ranks.begin(), ranks.begin() + 4}) + ",...," +
         std::to_string(ranks.back()) + " (" + std::to_string(ranks.size()) + " ranks)";
}

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
    if (op == ReduceOp::Sum) {
      for (size_t i = 0; i < n; ++i)
        out[i] += x[i];
    } else {
      for (size_t i = 0; i < n; ++i)
        if (std::isnan(x[i]) || x[i] > out[i])
          out[i] = x[i];
    }
  }
}

// What a rank is about to do: {kind, count, root, index of the call}. Ranks
// exchange it before every collective, so ranks that disagree get an error
// naming both calls, instead of a timeout or, for mismatched sizes, Gloo
// aborting the process from its I/O thread.
using Call = std::array<int64_t, 4>;
enum CallKind : int64_t { kAllReduceSum = 1, kAllReduceMax, kAllGather, kBroadcast, kBarrier };
constexpr uint32_t kCallTag = 0; // payload tags are 1 + the call index

uint32_t payloadTag(const Call &call) { return 1 + uint32_t(call[3] % 0x7fffffff); }

std::string describe(const Call &call) {
  std::string count = std::to_string(call[1]) + " floats";
  std::string what;
  switch (call[0]) {
  case kAllReduceSum:
    what = "all_reduce(sum) of " + count;
    break;
  case kAllReduceMax:
    what = "all_reduce(max) of " + count;
    break;
  case kAllGather:
    what = "all_gather of " + count + " per rank";
    break;
  case kBroadcast:
    what = "broadcast of " + count + " from group rank " + std::to_string(call[2]);
    break;
  case kBarrier:
    what = "barrier";
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

// FileStore's get() waits a fixed 30 s and its wait() rounds the elapsed time
// down to whole seconds; this one waits exactly the World's timeout.
class TimedFileStore : public gloo::rendezvous::FileStore {
public:
  TimedFileStore(const std::string &dir, milliseconds timeout)
      : FileStore(dir), timeout_(timeout) {}
  void wait(const std::vector<std::string> &keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string> &keys, const milliseconds &) override {
    auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (!check(keys)) {
      if (std::chrono::steady_clock::now() >= deadline)
        throw gloo::IoException("Timed out waiting for the rendezvous keys of the peers");
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  std::vector<char> get(const std::string &key) override {
    wait({key});
    return FileStore::get(key);
  }

private:
  milliseconds timeout_;
};

std::shared_ptr<gloo::rendezvous::Store> makeStore(const std::string &dir,
                                                   milliseconds timeout) {
  return std::make_shared<TimedFileStore>(dir, timeout);
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

void gatherOnce(const GlooContext &context, const float *in, float *out, size_t n,
                uint32_t tag, milliseconds timeout) {
  gloo::AllgatherOptions opts(context);
  if (in != out + size_t(context->rank) * n)
    opts.setInput(const_cast<float *>(in), n); // only read
  opts.setOutput(out, n * size_t(context->size));
  opts.setTag(tag);
  opts.setTimeout(timeout);
  gloo::allgather(opts);
}

void broadcastOnce(const GlooContext &context, float *data, size_t n, int root, uint32_t tag,
                   milliseconds timeout) {
  gloo::BroadcastOptions opts(context);
  opts.setOutput(data, n);
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

void closeConnections(const GlooContext &context) { context->closeConnections(); }
#else
// Without Gloo no communicator has more than one member, so these never run.
using GlooContext = std::shared_ptr<gloo::Context>;
[[noreturn]] void unreachable() { throw std::logic_error("built without Gloo"); }
std::shared_ptr<gloo::rendezvous::Store> makeStore(const std::string &, milliseconds) {
  unreachable();
}
std::shared_ptr<gloo::transport::Device> makeDevice(const std::string &) { unreachable(); }
GlooContext connectMesh(gloo::rendezvous::Store &, const std::string &, int, int,
                        std::shared_ptr<gloo::transport::Device> &, milliseconds) {
  unreachable();
}
void gatherOnce(const GlooContext &, const float *, float *, size_t, uint32_t, milliseconds) {
  unreachable();
}
void broadcastOnce(const GlooContext &, float *, size_t, int, uint32_t, milliseconds) {
  unreachable();
}
void gatherCalls(const GlooContext &, const Call &, Call *, milliseconds) { unreachable(); }
void closeConnections(const GlooContext &) {}
#endif

} // namespace

//===----------------------------------------------------------------------===//
// Communicator
//===----------------------------------------------------------------------===//

Communicator::Communicator(std::string name, std::vector<int> ranks, int worldRank,
                           int worldSize, milliseconds timeout,
                           std::shared_ptr<gloo::Context> context)
    : name_(std::move(name)), ranks_(std::move(ranks)), worldRank_(worldRank),
      worldSize_(worldSize), timeout_(timeout), context_(std::move(context)) {
  rank_ = int(std::find(ranks_.begin(), ranks_.end(), worldRank_) - ranks_.begin());
}

Communicator::~Communicator() = default;

std::string Communicator::where(const char *op) const {
  return "[rank " + std::to_string(worldRank_) + "/" + std::to_string(worldSize_) + "] " + op +
         " over group '" + name_ + "' (ranks " + formatRanks(ranks_) + ")";
}

// Exchanges the calls, then runs the Gloo operation; turns whatever it throws
// into a Status, and closes the connections so that peers blocked on this
// rank fail now.
template <typename Body>
Status Communicator::guarded(const char *op, int64_t kind, size_t count, int root, Body &&body) {
  if (failure_)
    return Status::error(where(op) + ": not run, this communicator failed earlier: " +
                         *failure_);
  const Call mine = {kind, int64_t(count), root, int64_t(calls_++)};
  std::string what, disagreement;
  try {
    std::vector<Call> all(ranks_.size());
    gatherCalls(context_, mine, all.data(), timeout_);
    disagreement = findDisagreement(all, ranks_, rank_);
    if (disagreement.empty()) {
      body(payloadTag(mine));
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
  failure_ = message;
  try {
    closeConnections(context_);
  } catch (...) {
    // Already failing; the connections close with the context anyway.
  }
  return Status::error(message);
}

// Gathering and adding in rank order instead of Gloo's allreduce: Gloo's ring
// and bcube results agree across ranks, but each chunk is added in an order
// set by the algorithm and the group size (on the tests' data, 13% of the
// elements of a 3-rank ring sum differ from the rank-order sum). The
// rank-order sum is what a single process computes, so every layout can be
// compared bit for bit. It moves (size - 1) x count floats per rank instead
// of about 2 x count: fine for the CPU reference, which values exactness.
Status Communicator::allReduce(float *data, size_t count, ReduceOp op) {
  if (size() == 1)
    return Status::ok();
  const size_t piece = std::max<size_t>(1, kScratchFloats / size_t(size()));
  const int64_t kind = op == ReduceOp::Sum ? kAllReduceSum : kAllReduceMax;
  return guarded("all_reduce", kind, count, -1, [&](uint32_t tag) {
    scratch_.resize(std::min(count, piece) * size_t(size()));
    for (size_t begin = 0; begin < count; begin += piece) {
      size_t n = std::min(piece, count - begin);
      gatherOnce(context_, data + begin, scratch_.data(), n, tag, timeout_);
      combine(op, scratch_.data(), n, size(), data + begin);
    }
  });
}

Status Communicator::allGather(const float *in, float *out, size_t countPerRank) {
  if (size() == 1) {
    if (in != out && countPerRank)
      std::memmove(out, in, countPerRank * sizeof(float));
    return Status::ok();
  }
  return guarded("all_gather", kAllGather, countPerRank, -1, [&](uint32_t tag) {
    if (countPerRank)
      gatherOnce(context_, in, out, countPerRank, tag, timeout_);
  });
}

Status Communicator::broadcast(float *data, size_t count, int root) {
  if (root < 0 || root >= size())
    return Status::error(where("broadcast") + ": root " + std::to_string(root) +
                         " is not a group rank (0.." + std::to_string(size() - 1) + ")");
  if (size() == 1)
    return Status::ok();
  return guarded("broadcast", kBroadcast, count, root, [&](uint32_t tag) {
    if (count)
      broadcastOnce(context_, data, count, root, tag, timeout_);
  });
}

// The exchange of the calls is itself a barrier: no rank finishes an
// allgather before every rank has contributed.
Status Communicator::barrier() {
  if (size() == 1)
    return Status::ok();
  return guarded("barrier", kBarrier, 0, -1, [](uint32_t) {});
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
  if (info.rendezvous.empty())
    return Status::error(who + "no rendezvous directory (MT_RENDEZVOUS) for " +
                         std::to_string(info.worldSize) + " ranks");
  std::error_code ec;
  if (!std::filesystem::is_directory(info.rendezvous, ec))
    return Status::error(who + "rendezvous directory '" + info.rendezvous +
                         "' does not exist (MT_RENDEZVOUS)");
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
    try {
      world->store_ = makeStore(info.rendezvous, timeout);
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
  std::string head = "[rank " + std::to_string(self) + "/" + std::to_string(worldSize) +
                     "] group '" + name + "' (ranks " + formatRanks(ranks) + ")";
  if (name.empty() || ranks.empty())
    return Status::error(head + ": a group needs a name and at least one rank");
  std::vector<int> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.front() < 0 || sorted.back() >= worldSize)
    return Status::error(head + ": ranks must be in [0, " + std::to_string(worldSize) + ")");
  if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end())
    return Status::error(head + ": rank " + std::to_string(*dup) + " is listed twice");
  auto member = std::find(ranks.begin(), ranks.end(), self);
  if (member == ranks.end())
    return Status::error(head + ": rank " + std::to_string(self) +
                         " is not a member; only members create a group");
  if (ranks.size() == 1)
    return std::unique_ptr<Communicator>(
        new Communicator(name, ranks, self, worldSize, timeout_, nullptr));

  // The key holds the rank list (every tp group may be called "tp") and how
  // often this rank made this group before (so a group can be made again).
  std::string key = name + "/" + joinRanks(ranks);
  key += "/" + std::to_string(created_[key]++);
  try {
    auto context = connectMesh(*store_, key, int(member - ranks.begin()), int(ranks.size()),
                               device_, timeout_);
    return std::unique_ptr<Communicator>(
        new Communicator(name, ranks, self, worldSize, timeout_, std::move(context)));
  } catch (const std::exception &e) {
    std::string what = e.what();
    if (what.find("already exists") != std::string::npos)
      return Status::error(head + ": the rendezvous directory '" + info_.rendezvous +
                           "' holds the keys of an earlier job; give every job a fresh "
                           "directory [gloo: " + what + "]");
    if (isTimeout(what))
      return Status::error(head + ": no answer from a peer within " +
                           formatDuration(timeout_) + " (are all " +
                           std::to_string(worldSize) +
                           " ranks running, with the same MT_RENDEZVOUS '" +
                           info_.rendezvous + "', and creating this group?) [gloo: " + what +
                           "]");
    return Status::error(head + ": cannot connect: " + what);
  } catch (...) {
    return Status::error(head + ": cannot connect: unknown exception");
  }
}

} // namespace mt::comm
