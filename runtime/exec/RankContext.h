// Where this process stands in the job: its rank, its coordinate on the mesh
// (pp, dp, cp, ep, tp; tp fastest-varying, Megatron's order) and one
// communicator per mesh axis of size > 1, made by the backend's
// GroupFactory (Gloo on the CPU, NCCL on the GPU) from the same member lists.
#ifndef MT_RUNTIME_EXEC_RANKCONTEXT_H
#define MT_RUNTIME_EXEC_RANKCONTEXT_H

#include "runtime/comm/Communicator.h"
#include "runtime/comm/RankEnvironment.h"
#include "runtime/plan/plan.pb.h"

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mt::exec {

/// One group this rank belongs to: its name (unique among the groups every
/// rank creates) and its members (world ranks, in group-rank order).
struct GroupSpec {
  std::string key;  // what RankContext files it under: "dp", "pp_tied", "p2p.0.1"
  std::string name; // for the factory and messages: "dp.0.0.0.0"
  std::vector<int> members;
};

/// The groups of `rank` on a mesh of `sizes` (pp, dp, cp, ep, tp), in the
/// order every rank creates them: one per axis of size > 1, then with
/// pipelining one per ordered pair of stages that `rank` is in, and the
/// tied-embedding group of the first and last stage.
std::vector<GroupSpec> meshGroups(const std::array<int64_t, 5> &sizes, int rank);

class RankContext {
public:
  static constexpr std::array<const char *, 5> kAxes = {"pp", "dp", "cp", "ep", "tp"};

  /// How a backend meets the other ranks: a factory of its communicators.
  using Connect = std::function<Expected<std::unique_ptr<comm::GroupFactory>>(
      const comm::RankInfo &, std::chrono::milliseconds)>;
  /// Gloo's World::connect (the CPU backend).
  static Expected<std::unique_ptr<comm::GroupFactory>> connectGloo(const comm::RankInfo &info,
                                                                   std::chrono::milliseconds timeout);

  /// Checks that the job's size equals the plan's mesh, connects the ranks
  /// with `connect` (not called for a single rank) and creates the groups
  /// of meshGroups().
  static Expected<std::unique_ptr<RankContext>> create(const plan::Mesh &mesh,
                                                       const comm::RankInfo &info,
                                                       std::chrono::milliseconds timeout,
                                                       const Connect &connect = connectGloo);

  int rank() const { return info_.rank; }
  int worldSize() const { return info_.worldSize; }
  const comm::RankInfo &info() const { return info_; }
  int64_t coordinate(const std::string &axis) const;
  int64_t axisSize(const std::string &axis) const;
  /// The communicator of `axis` (or "pp_tied"), or null when it has size 1.
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
  std::unique_ptr<comm::GroupFactory> factory_;
  std::map<std::string, std::unique_ptr<comm::Communicator>> groups_;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_RANKCONTEXT_H
