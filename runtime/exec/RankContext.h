// Where this process stands in the job: its rank, its coordinate on the mesh
// (pp, dp, cp, ep, tp; tp fastest-varying, Megatron's order) and one
// communicator per mesh axis of size > 1.
#ifndef MT_RUNTIME_EXEC_RANKCONTEXT_H
#define MT_RUNTIME_EXEC_RANKCONTEXT_H

#include "runtime/comm/Communicator.h"
#include "runtime/plan/plan.pb.h"

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace mt::exec {

class RankContext {
public:
  static constexpr std::array<const char *, 5> kAxes = {"pp", "dp", "cp", "ep", "tp"};

  /// Checks that the job's size equals the plan's mesh, connects the ranks
  /// and creates the group of each axis.
  static Expected<std::unique_ptr<RankContext>> create(const plan::Mesh &mesh,
                                                       const comm::RankInfo &info,
                                                       std::chrono::milliseconds timeout);

  int rank() const { return info_.rank; }
  int worldSize() const { return info_.worldSize; }
  int64_t coordinate(const std::string &axis) const;
  int64_t axisSize(const std::string &axis) const;
  /// The communicator of `axis`, or null when the axis has size 1.
  comm::Communicator *group(const std::string &axis) const;
  /// The two-rank group for messages from pipeline stage `from` to stage
  /// `to` (same coordinates on the other axes); null without pipelining.
  comm::Communicator *p2p(int64_t from, int64_t to) const;
  /// The world group (null for a single rank).
  comm::Communicator *world() const;
  /// "[rank 3/8 (pp=0 dp=1 cp=0 ep=0 tp=1)]", to prefix messages.
  std::string describe() const;

private:
  comm::RankInfo info_;
  std::array<int64_t, 5> sizes_{}, coord_{};
  std::unique_ptr<comm::World> world_;
  std::map<std::string, std::unique_ptr<comm::Communicator>> groups_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<comm::Communicator>> p2p_;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_RANKCONTEXT_H
