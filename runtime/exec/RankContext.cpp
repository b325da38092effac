// Mesh coordinates, the groups of a rank, and their communicators.
#include "runtime/exec/RankContext.h"

#include "runtime/comm/Gloo.h"
#include "runtime/support/Wording.h"

#include <algorithm>
#include <sstream>

namespace mt::exec {
namespace {

constexpr size_t kPp = 0, kDp = 1, kCp = 2, kTp = 3, kEdp = 4, kEp = 5, kEtp = 6;
/// The axes of each mesh, outermost first: dense, then expert (pp shared).
constexpr std::array<size_t, 4> kDenseGrid = {kPp, kDp, kCp, kTp};
constexpr std::array<size_t, 4> kExpertGrid = {kPp, kEdp, kEp, kEtp};

int axisIndex(const std::string &axis) {
  for (size_t i = 0; i < RankContext::kAxes.size(); ++i)
    if (axis == RankContext::kAxes[i])
      return int(i);
  return -1;
}

std::array<int64_t, 7> sizesOf(const MeshShape &m) {
  return {m.pp, m.dp, m.cp, m.tp, m.edp(), m.ep, m.etp};
}

/// The coordinates of `rank` on both meshes: tp fastest on the dense one,
/// etp fastest on the expert one, over the same ranks of a stage.
std::array<int64_t, 7> coordinatesOf(const MeshShape &m, int64_t rank) {
  const int64_t stageRanks = m.dp * m.cp * m.tp, local = rank % stageRanks;
  return {rank / stageRanks,       local / (m.cp * m.tp), local / m.tp % m.cp, local % m.tp,
          local / (m.ep * m.etp), local / m.etp % m.ep,  local % m.etp};
}

} // namespace

MeshShape MeshShape::of(const plan::Mesh &mesh) {
  auto one = [](int64_t size) { return std::max<int64_t>(size, 1); };
  return {one(mesh.pp()), one(mesh.dp()),  one(mesh.cp()),  one(mesh.tp()),
          one(mesh.ep()), one(mesh.etp()), mesh.experts()};
}

std::vector<GroupSpec> meshGroups(const MeshShape &mesh, int rank) {
  const int64_t world = mesh.world();
  const auto sizes = sizesOf(mesh), self = coordinatesOf(mesh, rank);
  std::vector<GroupSpec> groups;
  // One group per axis: the ranks that share every other coordinate of the
  // axis' mesh.
  auto addGroups = [&](const std::array<size_t, 4> &grid) {
    for (size_t axis : grid) {
      if (sizes[axis] == 1 || (axis == kPp && &grid == &kExpertGrid))
        continue;
      const std::string name(RankContext::kAxes[axis]);
      GroupSpec g{name, name, {}};
      for (int r = 0; r < world; ++r) {
        auto c = coordinatesOf(mesh, r);
        if (std::all_of(grid.begin(), grid.end(),
                        [&](size_t a) { return a == axis || c[a] == self[a]; }))
          g.members.push_back(r);
      }
      for (size_t a : grid)
        if (a != axis)
          g.name.append(".").append(std::to_string(self[a]));
      groups.push_back(std::move(g));
    }
  };
  addGroups(kDenseGrid);
  if (mesh.experts())
    addGroups(kExpertGrid);
  // Pipeline messages: one group per ordered pair of stages; pp is the
  // slowest axis, so stage s's rank is base + s * stride.
  const int64_t stages = mesh.pp, stage = self[kPp];
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
  ctx->shape_ = MeshShape::of(mesh);
  const MeshShape &m = ctx->shape_;
  if ((m.dp * m.cp * m.tp) % (m.ep * m.etp) != 0)
    return Status::error("the plan's mesh does not fold: ep (" + std::to_string(m.ep) +
                         ") x etp (" + std::to_string(m.etp) + ") must divide dp (" +
                         std::to_string(m.dp) + ") x cp (" + std::to_string(m.cp) +
                         ") x tp (" + std::to_string(m.tp) + "); recompile the plan");
  int64_t planRanks = m.world();
  if (planRanks != info.worldSize)
    return Status::error("the plan was compiled for " + countOf(planRanks, "rank") +
                         " (pp x dp x cp x tp), but the job has " +
                         std::to_string(info.worldSize) + " (run `mtrun --nproc " +
                         std::to_string(planRanks) + "` or recompile the plan)");
  ctx->coord_ = coordinatesOf(m, info.rank);
  if (info.worldSize == 1)
    return ctx;
  auto factory = connect(info, timeout);
  if (!factory)
    return factory.status();
  ctx->factory_ = std::move(*factory);
  for (const GroupSpec &g : meshGroups(m, info.rank)) {
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
  return i < 0 ? 1 : sizesOf(shape_)[size_t(i)];
}

comm::Communicator *RankContext::group(const std::string &axis) const {
  auto it = groups_.find(axis);
  return it == groups_.end() ? nullptr : it->second.get();
}

Status RankContext::checkCollectiveGroups(const plan::Plan &plan) const {
  for (const plan::Program &program : plan.programs())
    for (int i = 0; i < program.instructions_size(); ++i) {
      const plan::Instruction &instr = program.instructions(i);
      auto attr = std::find_if(instr.attributes().begin(), instr.attributes().end(),
                               [](const plan::Attribute &a) { return a.name() == "axis"; });
      if (attr == instr.attributes().end())
        continue;
      const plan::Attribute *axis = &*attr;
      if (axisSize(axis->s()) <= 1 || group(axis->s()))
        continue;
      return Status::error(describe() + " program '" + program.name() + "' instruction " +
                           std::to_string(i) + " (" + instr.op() + ") runs over axis '" +
                           axis->s() + "' of size " + std::to_string(axisSize(axis->s())) +
                           ", but this mesh (ep " + std::to_string(shape_.ep) + ", etp " +
                           std::to_string(shape_.etp) +
                           ") makes no group for it; recompile the plan");
    }
  return Status::ok();
}

comm::Communicator *RankContext::world() const {
  return factory_ ? &factory_->world() : nullptr;
}

std::string RankContext::describe() const {
  std::ostringstream os;
  os << "[rank " << info_.rank << "/" << info_.worldSize << " (";
  for (size_t a = 0; a < (shape_.experts() ? kAxes.size() : kDenseGrid.size()); ++a)
    os << (a ? " " : "") << kAxes[a] << "=" << coord_[a];
  os << ")]";
  return os.str();
}

} // namespace mt::exec
