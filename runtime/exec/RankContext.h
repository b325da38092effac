// Where this process stands in the job: its rank, its coordinates on the
// mesh of dense layers (pp, dp, cp, tp; tp fastest-varying, Megatron's
// order) and of expert layers (pp, edp, ep, etp; MoE parallel folding) and
// one communicator per axis of size > 1, made by the backend's GroupFactory
// (Gloo on the CPU, NCCL on the GPU) from the same member lists.
#ifndef MT_RUNTIME_EXEC_RANKCONTEXT_H
#define MT_RUNTIME_EXEC_RANKCONTEXT_H

#include "runtime/comm/Communicator.h"
#include "runtime/comm/RankEnvironment.h"
#include "runtime/plan/MeshAxes.h"
#include "runtime/plan/plan.pb.h"

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mt::exec {

/// One group this rank belongs to: its name (unique among the groups every
/// rank creates) and its members (world ranks, in group-rank order).
struct GroupSpec {
  std::string key;  // what RankContext files it under: "dp", "pp_tied", "p2p.0.1"
  std::string name; // for the factory and messages: "dp.0.0.0.0"
  std::vector<int> members;
};

/// The sizes of a plan's mesh (sizes left at 0 count as 1): world =
/// pp·dp·cp·tp, and expert layers divide each stage's dp·cp·tp ranks into
/// edp·ep·etp (Megatron-Core's MoE parallel folding).
struct MeshShape {
  int64_t pp = 1, dp = 1, cp = 1, tp = 1, ep = 1, etp = 1;
  bool expertMesh = false; // plan::Mesh's experts

  static MeshShape of(const plan::Mesh &mesh);
  int64_t world() const { return pp * dp * cp * tp; }
  /// Expert data parallelism: dp·cp·tp / (ep·etp).
  int64_t edp() const { return dp * cp * tp / (ep * etp); }
  /// Whether expert layers have a mesh of their own: experts split over ep
  /// or etp (the compiler writes etp 1 for dense models), or laid on it
  /// whole under tp (plan::Mesh's experts).
  bool experts() const { return ep > 1 || etp > 1 || expertMesh; }
};

/// The groups of `rank` on `mesh`, in the order every rank creates them:
/// one per dense axis (pp, dp, cp, tp) of size > 1, with experts() one
/// per expert axis (edp, ep, etp) of size > 1, then with pipelining one per
/// ordered pair of stages that `rank` is in, and the tied-embedding group
/// of the first and last stage. `mesh` must fold (ep·etp divides dp·cp·tp).
std::vector<GroupSpec> meshGroups(const MeshShape &mesh, int rank);

class RankContext {
public:
  /// The axes of both meshes: dense (pp, dp, cp, tp), then expert (edp,
  /// ep, etp; pp is shared), as runtime/plan/MeshAxes.h declares them.
  static constexpr std::array<std::string_view, 7> kAxes = {
      plan::kDenseAxes[0],  plan::kDenseAxes[1],  plan::kDenseAxes[2], plan::kDenseAxes[3],
      plan::kExpertAxes[1], plan::kExpertAxes[2], plan::kExpertAxes[3]};
  static_assert(plan::kExpertAxes[0] == plan::kDenseAxes[0], "the meshes share pp");

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
  /// Whether this rank can run every instruction of `plan` that names a
  /// mesh axis (attribute `axis`): the axis has size 1 here or the rank has
  /// its group. The backends run a collective without a group as one rank,
  /// so a missing group (an expert axis of a mesh without ep, for which no
  /// expert groups are made) would otherwise reduce nothing, silently. The
  /// error names the program, the instruction and the axis.
  Status checkCollectiveGroups(const plan::Plan &plan) const;
  /// "[rank 3/8 (pp=0 dp=1 cp=0 tp=1)]" (with ep: "... edp=0 ep=1 etp=0"),
  /// to prefix messages.
  std::string describe() const;

private:
  comm::RankInfo info_;
  MeshShape shape_;
  std::array<int64_t, 7> coord_{};
  std::unique_ptr<comm::GroupFactory> factory_;
  std::map<std::string, std::unique_ptr<comm::Communicator>> groups_;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_RANKCONTEXT_H
