// The CPU backend's communication: how the ranks meet (World) and the
// collectives of one group of ranks over host memory (GlooCommunicator),
// over Gloo's TCP transport.
#ifndef MT_RUNTIME_COMM_GLOO_H
#define MT_RUNTIME_COMM_GLOO_H

#include "runtime/comm/Communicator.h"
#include "runtime/comm/RankEnvironment.h"
#include "runtime/comm/Store.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// Gloo stays out of this header: users of MtComm never see its types.
namespace gloo {
class Context;
namespace rendezvous {
class Store;
}
namespace transport {
class Device;
}
} // namespace gloo

namespace mt::comm {

/// A Communicator over host memory. Reductions take fp32; the other calls
/// move fp32 or bf16. Calls block.
///
/// Sum adds the contributions in group-rank order on every rank
/// (((x0 + x1) + x2) + ...), so all ranks get bit-identical results that
/// do not depend on the group size's chunking; Avg divides that sum by the
/// group size; Max propagates NaN.
///
/// Before each collective the members exchange what they are about to do
/// (operation, count, root, call number): ranks that disagree all get an
/// error naming both calls. Every call fails (never hangs) when a peer does
/// not answer within the timeout given to World::connect. After any failure
/// the communicator closes its connections (so blocked peers fail at once
/// instead of at their own timeout) and refuses further calls.
class GlooCommunicator final : public Communicator {
public:
  ~GlooCommunicator() override;

  Memory memory() const override { return Memory::Host; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  Status allReduce(void *data, size_t count, DType type, ReduceOp op) override;
  Status allGather(const void *in, void *out, size_t countPerRank, DType type) override;
  Status reduceScatter(const void *in, void *out, size_t countPerRank, DType type,
                       ReduceOp op) override;
  Status allToAllV(const void *in, const std::vector<size_t> &sendCounts, void *out,
                   const std::vector<size_t> &recvCounts, DType type) override;
  Status broadcast(void *data, size_t count, DType type, int root) override;
  Status send(const void *data, size_t count, DType type, int peer) override;
  Status recv(void *data, size_t count, DType type, int peer) override;
  Status barrier() override;

private:
  friend class World;
  GlooCommunicator(std::string name, std::vector<int> ranks, int worldRank, int worldSize,
                   std::chrono::milliseconds timeout, std::shared_ptr<gloo::Context> context);

  using Call = std::array<int64_t, 4>;
  template <typename Body> Status guarded(const char *op, const Call &call, Body &&body);
  Status fail(const char *op, const std::string &message);
  Status reduceInto(const float *in, float *out, size_t count, ReduceOp op);
  Status pointToPoint(bool sending, void *data, size_t bytes, int peer);

  std::chrono::milliseconds timeout_;
  std::shared_ptr<gloo::Context> context_; // null for a group of one
  uint64_t calls_ = 0;                     // collectives made, for matching them across ranks
  std::vector<uint64_t> sent_, received_;  // point-to-point messages per peer
  std::optional<std::string> failure_;
  std::vector<float> scratch_; // allReduce's gathered contributions
};

/// The connection of this process to all ranks of the job; makes Gloo groups.
class World final : public GroupFactory {
public:
  /// Meets the other ranks through the job's Store (openStore: the
  /// directory info.rendezvous, or TCP at info.storeAddr:storePort).
  /// With worldSize 1 nothing is contacted. `timeout` (> 0) bounds the
  /// rendezvous and every later collective of every group. With more than
  /// one rank it also ignores SIGPIPE if nothing handles it: Gloo writes to
  /// sockets with writev, so a peer that died would otherwise kill this
  /// process instead of failing the collective.
  static Expected<std::unique_ptr<World>> connect(const RankInfo &info,
                                                  std::chrono::milliseconds timeout);
  /// Whether this build can connect more than one rank (it has Gloo).
  static bool multiRankSupported();
  ~World() override;

  const RankInfo &info() const { return info_; }
  Communicator &world() override { return *world_; }
  Expected<std::unique_ptr<Communicator>> group(const std::string &name,
                                                const std::vector<int> &ranks) override;

private:
  World(RankInfo info, std::chrono::milliseconds timeout);

  RankInfo info_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Store> store_;
  // shared_ptr: destructible where Gloo's types are incomplete (no Gloo).
  std::shared_ptr<gloo::rendezvous::Store> glooStore_; // a view of store_
  std::shared_ptr<gloo::transport::Device> device_;
  std::unique_ptr<Communicator> world_;
  std::map<std::string, int> created_; // group key -> times created here
};

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_GLOO_H
