// Multi-rank communication on the CPU: which rank this process is
// (rankFromEnvironment), how the ranks meet (World) and the collectives of
// one group of ranks (Communicator), over Gloo's TCP transport.
#ifndef MT_RUNTIME_COMM_COMMUNICATOR_H
#define MT_RUNTIME_COMM_COMMUNICATOR_H

#include "runtime/support/Status.h"

#include <chrono>
#include <cstddef>
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

/// Where this process sits among the ranks of a job.
struct RankInfo {
  int rank = 0, worldSize = 1, localRank = 0;
  /// A directory every rank can reach, fresh for each job (MT_RENDEZVOUS).
  std::string rendezvous;
  /// The address this rank listens on (MT_COMM_HOST); empty: the hostname.
  std::string host;
  /// The variables the values came from: "mtrun" (MT_RANK...), "torchrun", "slurm",
  /// "openmpi", or "none" (a single rank).
  std::string source = "none";
  /// torchrun's MASTER_ADDR / MASTER_PORT, recorded for messages only: the
  /// Gloo build used here has no TCP store, ranks meet in `rendezvous`.
  std::string masterAddr;
  int masterPort = 0;
};

/// Reads the rank from, in this order: MT_RANK/MT_WORLD_SIZE/MT_LOCAL_RANK
/// (mtrun --nproc), torchrun's RANK/WORLD_SIZE/LOCAL_RANK, Slurm's
/// SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, OpenMPI's
/// OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK. MT_RENDEZVOUS (required when
/// there is more than one rank) and MT_COMM_HOST apply to every style.
/// Without any of these variables: a single rank.
Expected<RankInfo> rankFromEnvironment();

enum class ReduceOp { Sum, Max };

/// The collectives of one group of ranks. Group rank i is the i-th entry of
/// the rank list the group was created with. Calls block; every member must
/// make the same calls in the same order with the same counts. One thread
/// at a time per communicator.
///
/// Before each collective the members exchange what they are about to do
/// (operation, count, root, call number): ranks that disagree all get an
/// error naming both calls. Every call fails (never hangs) when a peer does
/// not answer within the timeout given to World::connect. After any failure
/// the communicator closes its connections (so blocked peers fail at once
/// instead of at their own timeout) and refuses further calls.
class Communicator {
public:
  ~Communicator();
  Communicator(const Communicator &) = delete;
  Communicator &operator=(const Communicator &) = delete;

  int rank() const { return rank_; }
  int size() const { return int(ranks_.size()); }
  const std::string &name() const { return name_; }
  /// The world ranks of the members, in group-rank order.
  const std::vector<int> &worldRanks() const { return ranks_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// In place. Sum adds the contributions in group-rank order on every rank
  /// (((x0 + x1) + x2) + ...), so all ranks get bit-identical results that
  /// do not depend on the group size's chunking; Max propagates NaN.
  Status allReduce(float *data, size_t count, ReduceOp op);
  /// out[r * countPerRank + i] = rank r's in[i]. `in` may alias its own
  /// slot of `out` (out + rank() * countPerRank).
  Status allGather(const float *in, float *out, size_t countPerRank);
  /// `root` is a group rank; its `data` is copied to every other member.
  Status broadcast(float *data, size_t count, int root);
  Status barrier();

private:
  friend class World;
  Communicator(std::string name, std::vector<int> ranks, int worldRank,
               int worldSize, std::chrono::milliseconds timeout,
               std::shared_ptr<gloo::Context> context);

  std::string where(const char *op) const;
  template <typename Body>
  Status guarded(const char *op, int64_t kind, size_t count, int root, Body &&body);

  std::string name_;
  std::vector<int> ranks_;
  int rank_ = 0, worldRank_ = 0, worldSize_ = 1;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<gloo::Context> context_; // null for a group of one
  uint64_t calls_ = 0; // collectives made, for matching them across ranks
  std::optional<std::string> failure_;
  std::vector<float> scratch_; // allReduce's gathered contributions
};

/// The connection of this process to all ranks of the job; makes groups.
class World {
public:
  /// Meets the other ranks through a gloo FileStore in info.rendezvous.
  /// With worldSize 1 nothing is contacted. `timeout` (> 0) bounds the
  /// rendezvous and every later collective of every group. With more than
  /// one rank it also ignores SIGPIPE if nothing handles it: Gloo writes to
  /// sockets with writev, so a peer that died would otherwise kill this
  /// process instead of failing the collective.
  static Expected<std::unique_ptr<World>> connect(const RankInfo &info,
                                                  std::chrono::milliseconds timeout);
  /// Whether this build can connect more than one rank (it has Gloo).
  static bool multiRankSupported();
  ~World();

  const RankInfo &info() const { return info_; }
  /// The group of all ranks, named "world".
  Communicator &world() { return *world_; }
  /// A communicator for `ranks` (world ranks, distinct, this rank among
  /// them). Every member calls it with the same name and list, in the same
  /// order relative to its other group() calls; non-members must not.
  Expected<std::unique_ptr<Communicator>> group(const std::string &name,
                                                const std::vector<int> &ranks);

private:
  World(RankInfo info, std::chrono::milliseconds timeout);

  RankInfo info_;
  std::chrono::milliseconds timeout_;
  // shared_ptr: destructible where Gloo's types are incomplete (no Gloo).
  std::shared_ptr<gloo::rendezvous::Store> store_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::unique_ptr<Communicator> world_;
  std::map<std::string, int> created_; // group key -> times created here
};

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_COMMUNICATOR_H
