// What every Communicator shares: names in messages, argument checks, and
// the host calls of communicators whose buffers are host memory.
#include "runtime/comm/Communicator.h"

#include <algorithm>

namespace mt::comm {

size_t sizeOf(DType type) { return type == DType::F32 ? 4 : 2; }

const char *nameOf(DType type) { return type == DType::F32 ? "fp32" : "bf16"; }

std::string joinRanks(const std::vector<int> &ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i)
      s += ',';
    s += std::to_string(ranks[i]);
  }
  return s;
}

std::string formatRanks(const std::vector<int> &ranks) {
  if (ranks.size() <= 8)
    return joinRanks(ranks);
  return joinRanks({ranks.begin(), ranks.begin() + 4}) + ",...," +
         std::to_string(ranks.back()) + " (" + std::to_string(ranks.size()) + " ranks)";
}

Communicator::Communicator(std::string name, std::vector<int> ranks, int worldRank,
                           int worldSize)
    : name_(std::move(name)), ranks_(std::move(ranks)), worldRank_(worldRank),
      worldSize_(worldSize) {
  rank_ = int(std::find(ranks_.begin(), ranks_.end(), worldRank_) - ranks_.begin());
}

std::string Communicator::where(const char *op) const {
  return "[rank " + std::to_string(worldRank_) + "/" + std::to_string(worldSize_) + "] " + op +
         " over group '" + name_ + "' (ranks " + formatRanks(ranks_) + ")";
}

Status Communicator::checkGroupRank(const char *op, const char *role, int groupRank) const {
  bool peer = std::string(role) == "peer";
  if (groupRank >= 0 && groupRank < size() && !(peer && groupRank == rank_))
    return Status::ok();
  return Status::error(where(op) + ": " + role + " " + std::to_string(groupRank) +
                       " is not a group rank (0.." + std::to_string(size() - 1) + ")" +
                       (peer ? " other than this rank's " + std::to_string(rank_) : ""));
}

Status Communicator::allReduceHost(float *data, size_t count, ReduceOp op) {
  if (memory() != Memory::Host)
    return Status::error(where("all_reduce") + ": this backend must stage host buffers");
  return allReduce(data, count, DType::F32, op);
}

Status Communicator::allGatherHost(const float *in, float *out, size_t countPerRank) {
  if (memory() != Memory::Host)
    return Status::error(where("all_gather") + ": this backend must stage host buffers");
  return allGather(in, out, countPerRank, DType::F32);
}

Status Communicator::broadcastHost(float *data, size_t count, int root) {
  if (memory() != Memory::Host)
    return Status::error(where("broadcast") + ": this backend must stage host buffers");
  return broadcast(data, count, DType::F32, root);
}

Status checkGroupMembers(const std::string &name, const std::vector<int> &ranks, int self,
                         int worldSize) {
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
  if (std::find(ranks.begin(), ranks.end(), self) == ranks.end())
    return Status::error(head + ": rank " + std::to_string(self) +
                         " is not a member; only members create a group");
  return Status::ok();
}

} // namespace mt::comm
