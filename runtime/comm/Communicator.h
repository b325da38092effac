// The collectives of one group of ranks, as every backend offers them: the
// Communicator interface (Gloo on the CPU, runtime/comm/Gloo.h; NCCL on the
// GPU, runtime/cuda/NcclCommunicator.h) and the GroupFactory that makes a
// backend's groups.
#ifndef MT_RUNTIME_COMM_COMMUNICATOR_H
#define MT_RUNTIME_COMM_COMMUNICATOR_H

#include "runtime/support/Status.h"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mt::comm {

/// Element types of collective buffers.
enum class DType { F32, BF16 };
/// Bytes per element.
size_t sizeOf(DType type);
const char *nameOf(DType type);

/// Sum, max (NaN propagates on the CPU backend), or mean over the group
/// (the sum divided by the group size: Megatron's gradient averaging over dp).
enum class ReduceOp { Sum, Max, Avg };

/// The ReduceOp of a plan all_reduce's `reduce` attribute: "sum" (also when
/// empty: the attribute is absent), "max" or "mean"; nullopt for any other.
inline std::optional<ReduceOp> reduceOpNamed(std::string_view name) {
  if (name.empty() || name == "sum")
    return ReduceOp::Sum;
  if (name == "max")
    return ReduceOp::Max;
  if (name == "mean")
    return ReduceOp::Avg;
  return std::nullopt;
}

/// Where the buffers of a communicator's collectives live.
enum class Memory { Host, Device };

/// The collectives of one group of ranks. Group rank i is the i-th entry of
/// the rank list the group was created with. Every member makes the same
/// calls in the same order with the same counts; one thread at a time per
/// communicator.
///
/// The data calls take buffers in memory(): host memory for Gloo, device
/// memory for NCCL (ordered on the stream the NCCL communicator is given;
/// they return once enqueued). The *Host calls take fp32 host buffers on
/// every backend and return when the result is there: they serve the
/// runtime's bookkeeping (losses, norms, checkpoints), and a Device
/// communicator stages them through GPU memory.
class Communicator {
public:
  virtual ~Communicator() = default;
  Communicator(const Communicator &) = delete;
  Communicator &operator=(const Communicator &) = delete;

  int rank() const { return rank_; }
  int size() const { return int(ranks_.size()); }
  const std::string &name() const { return name_; }
  /// The world ranks of the members, in group-rank order.
  const std::vector<int> &worldRanks() const { return ranks_; }
  virtual Memory memory() const = 0;

  /// In place: data[i] = op over the members' data[i].
  virtual Status allReduce(void *data, size_t count, DType type, ReduceOp op) = 0;
  /// out[r * countPerRank + i] = member r's in[i]. `in` may alias its own
  /// slot of `out` (out + rank() * countPerRank elements).
  virtual Status allGather(const void *in, void *out, size_t countPerRank, DType type) = 0;
  /// out[i] = op over the members' in[rank() * countPerRank + i] (`in` holds
  /// size() blocks of countPerRank).
  virtual Status reduceScatter(const void *in, void *out, size_t countPerRank, DType type,
                               ReduceOp op) = 0;
  /// All-to-all with per-peer counts (MoE token dispatch): `in` holds
  /// size() consecutive blocks, block p of sendCounts[p] elements going to
  /// group rank p; `out` gets size() consecutive blocks, block r of
  /// recvCounts[r] elements coming from group rank r (rank order). recvCounts[r]
  /// must equal member r's sendCounts[rank()]: a mismatch is an error on
  /// every backend that can see it (Gloo checks; NCCL cannot). Both vectors
  /// have size() entries.
  virtual Status allToAllV(const void *in, const std::vector<size_t> &sendCounts, void *out,
                           const std::vector<size_t> &recvCounts, DType type) = 0;
  /// `root` is a group rank; its `data` is copied to every other member.
  virtual Status broadcast(void *data, size_t count, DType type, int root) = 0;
  /// To / from group rank `peer`; the k-th send to a peer matches that
  /// peer's k-th recv from this rank.
  virtual Status send(const void *data, size_t count, DType type, int peer) = 0;
  virtual Status recv(void *data, size_t count, DType type, int peer) = 0;
  /// Returns when every member has called it (a Device communicator: also
  /// when its earlier calls have completed).
  virtual Status barrier() = 0;

  /// fp32 host buffers on every backend (see the class comment).
  virtual Status allReduceHost(float *data, size_t count, ReduceOp op);
  virtual Status allGatherHost(const float *in, float *out, size_t countPerRank);
  virtual Status broadcastHost(float *data, size_t count, int root);

protected:
  Communicator(std::string name, std::vector<int> ranks, int worldRank, int worldSize);
  /// "[rank 3/8] all_reduce over group 'dp.0.0.0.0' (ranks 1,3)", to start messages.
  std::string where(const char *op) const;
  /// Checks a root or peer argument: a group rank other than this one for a
  /// peer, any group rank for a root.
  Status checkGroupRank(const char *op, const char *role, int groupRank) const;

  std::string name_;
  std::vector<int> ranks_;
  int rank_ = 0, worldRank_ = 0, worldSize_ = 1;
};

/// "0,1,2,...": every rank, for keys.
std::string joinRanks(const std::vector<int> &ranks);
/// "1,3" or, for long lists, "0,1,2,3,...,63 (64 ranks)".
std::string formatRanks(const std::vector<int> &ranks);

/// How one backend makes the communicators of this rank's groups, once
/// the ranks have met (World::connect for Gloo, cuda::connectNccl).
class GroupFactory {
public:
  virtual ~GroupFactory() = default;
  /// The group of all ranks, named "world".
  virtual Communicator &world() = 0;
  /// A communicator for `ranks` (world ranks, distinct, this rank among
  /// them). Every member calls it with the same name and list, in the same
  /// order relative to its other group() calls; non-members must not.
  virtual Expected<std::unique_ptr<Communicator>> group(const std::string &name,
                                                        const std::vector<int> &ranks) = 0;
};

/// Checks group() arguments for rank `self` of `worldSize`: a name, members
/// in [0, worldSize), none twice, `self` among them.
Status checkGroupMembers(const std::string &name, const std::vector<int> &ranks, int self,
                         int worldSize);

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_COMMUNICATOR_H
