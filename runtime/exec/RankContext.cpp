// Mesh coordinates, the groups of a rank, and their communicators.
#include "runtime/exec/RankContext.h"

#include "runtime/comm/Gloo.h"
#include "runtime/support/Wording.h"

#include <sstream>

namespace mt::exec {
namespace {

int axisIndex(const std::string &axis) {
  for (size_t i = 0; i < RankContext::kAxes.size(); ++i)
    if (axis == RankContext::kAxes[i])
      return int(i);
  return -1;
}

/// The coordinate of `rank` on the mesh (tp fastest-varying).
std::array<int64_t, 5> coordinatesOf(const std::array<int64_t, 5> &sizes, int64_t rank) {
  std::array<int64_t, 5> coord{};
  for (int axis = 4; axis >= 0; --axis) {
    coord[axis] = rank % sizes[axis];
    rank /= sizes[axis];
  }
  return coord;
}

} // namespace

std::vector<GroupSpec> meshGroups(const std::array<int64_t, 5> &sizes, int rank) {
  int64_t world = 1;
  for (int64_t s : sizes)
    world *= s;
  const auto self = coordinatesOf(sizes, rank);
  std::vector<GroupSpec> groups;
  for (int axis = 0; axis < 5; ++axis) {
    if (sizes[axis] == 1)
      continue;
    GroupSpec g{RankContext::kAxes[axis], RankContext::kAxes[axis], {}};
    for (int r = 0; r < world; ++r) {
      auto c = coordinatesOf(sizes, r);
      c[axis] = self[axis];
      if (c == self)
        g.members.push_back(r);
    }
    for (int a = 0; a < 5; ++a)
      if (a != axis)
        g.name.append(".").append(std::to_string(self[a]));
    groups.push_back(std::move(g));
  }
  // Pipeline messages: one group per ordered pair of stages; pp is the
  // slowest axis, so stage s's rank is base + s * stride.
  const int64_t stages = sizes[0], stage = self[0];
  const int64_t stride = world / stages, base = rank - stage * stride;
  for (int64_t from = 0; from < stages; ++from)
    for (int64_t to = 0; to < stages; ++to) {
      if (from == to || (stage != from && stage != to))
        continue;
      std::string pair = std::to_string(from) + "." + std::to_string(to);
      groups.push_back({"p2p." + pair, "p2p." + pair + "." + std::to_string(base),
                        {int(base + from * stride), int(base + to * stride)}});
    }
  // Tied embeddings: the first and the last stage sum their gradients.
  if (stages > 1 && (stage == 0 || stage == stages - 1))
    groups.push_back({"pp_tied", "pp_tied." + std::to_string(base),
                      {int(base), int(base + (stages - 1) * stride)}});
  return groups;
}

Expected<std::unique_ptr<comm::GroupFactory>>
RankContext::connectGloo(const comm::RankInfo &info, std::chrono::milliseconds timeout) {
  auto world = comm::World::connect(info, timeout);
  if (!world)
    return world.status();
  return std::unique_ptr<comm::GroupFactory>(std::move(*world));
}

Expected<std::unique_ptr<RankContext>> RankContext::create(const plan::Mesh &mesh,
                                                           const comm::RankInfo &info,
                                                           std::chrono::milliseconds timeout,
                                                           const Connect &connect) {
  auto ctx = std::unique_ptr<RankContext>(new RankContext());
  ctx->info_ = info;
  ctx->sizes_ = {std::max<int64_t>(mesh.pp(), 1), std::max<int64_t>(mesh.dp(), 1),
                 std::max<int64_t>(mesh.cp(), 1), std::max<int64_t>(mesh.ep(), 1),
                 std::max<int64_t>(mesh.tp(), 1)};
  int64_t planRanks = 1;
  for (int64_t s : ctx->sizes_)
    planRanks *= s;
  if (planRanks != info.worldSize)
    return Status::error("the plan was compiled for " + countOf(planRanks, "rank") +
                         " (pp x dp x cp x ep x tp), but the job has " +
                         std::to_string(info.worldSize) + " (run `mtrun --nproc " +
                         std::to_string(planRanks) + "` or recompile the plan)");
  ctx->coord_ = coordinatesOf(ctx->sizes_, info.rank);
  if (info.worldSize == 1)
    return ctx;
  auto factory = connect(info, timeout);
  if (!factory)
    return factory.status();
  ctx->factory_ = std::move(*factory);
  for (const GroupSpec &g : meshGroups(ctx->sizes_, info.rank)) {
    auto group = ctx->factory_->group(g.name, g.members);
    if (!group)
      return group.status();
    ctx->groups_[g.key] = std::move(*group);
  }
  return ctx;
}

comm::Communicator *RankContext::p2p(int64_t from, int64_t to) const {
  return group("p2p." + std::to_string(from) + "." + std::to_string(to));
}

int64_t RankContext::coordinate(const std::string &axis) const {
  int i = axisIndex(axis);
  return i < 0 ? 0 : coord_[i];
}

int64_t RankContext::axisSize(const std::string &axis) const {
  int i = axisIndex(axis);
  return i < 0 ? 1 : sizes_[i];
}

comm::Communicator *RankContext::group(const std::string &axis) const {
  auto it = groups_.find(axis);
  return it == groups_.end() ? nullptr : it->second.get();
}

comm::Communicator *RankContext::world() const {
  return factory_ ? &factory_->world() : nullptr;
}

std::string RankContext::describe() const {
  std::ostringstream os;
  os << "[rank " << info_.rank << "/" << info_.worldSize << " (";
  for (int a = 0; a < 5; ++a)
    os << (a ? " " : "") << kAxes[a] << "=" << coord_[a];
  os << ")]";
  return os.str();
}

} // namespace mt::exec
