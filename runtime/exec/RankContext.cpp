// Mesh coordinates and per-axis communicators.
#include "runtime/exec/RankContext.h"

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

} // namespace

Expected<std::unique_ptr<RankContext>> RankContext::create(const plan::Mesh &mesh,
                                                           const comm::RankInfo &info,
                                                           std::chrono::milliseconds timeout) {
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
  int64_t rest = info.rank;
  for (int axis = 4; axis >= 0; --axis) {
    ctx->coord_[axis] = rest % ctx->sizes_[axis];
    rest /= ctx->sizes_[axis];
  }
  if (info.worldSize == 1)
    return ctx;
  auto world = comm::World::connect(info, timeout);
  if (!world)
    return world.status();
  ctx->world_ = std::move(*world);
  // Every rank creates every axis's group it belongs to, in the same order.
  for (int axis = 0; axis < 5; ++axis) {
    if (ctx->sizes_[axis] == 1)
      continue;
    std::vector<int> members;
    for (int r = 0; r < info.worldSize; ++r) {
      int64_t rr = r, same = true;
      for (int a = 4; a >= 0; --a) {
        int64_t c = rr % ctx->sizes_[a];
        rr /= ctx->sizes_[a];
        if (a != axis && c != ctx->coord_[a])
          same = false;
      }
      if (same)
        members.push_back(r);
    }
    std::ostringstream name;
    name << kAxes[axis];
    for (int a = 0; a < 5; ++a)
      if (a != axis)
        name << "." << ctx->coord_[a];
    auto group = ctx->world_->group(name.str(), members);
    if (!group)
      return group.status();
    ctx->groups_[kAxes[axis]] = std::move(*group);
  }
  // Pipeline messages: one group per ordered pair of stages, created in the
  // same order on every rank.
  int64_t stages = ctx->sizes_[0];
  for (int64_t from = 0; from < stages; ++from)
    for (int64_t to = 0; to < stages; ++to) {
      int64_t self = ctx->coord_[0];
      if (from == to || (self != from && self != to))
        continue;
      int64_t stride = info.worldSize / stages; // pp is the slowest axis
      int64_t base = info.rank - self * stride;
      std::vector<int> members = {int(base + from * stride), int(base + to * stride)};
      auto group = ctx->world_->group("p2p." + std::to_string(from) + "." + std::to_string(to) +
                                          "." + std::to_string(base),
                                      members);
      if (!group)
        return group.status();
      ctx->p2p_[{from, to}] = std::move(*group);
    }
  // Tied embeddings: the first and the last stage sum their gradients.
  if (int64_t self = ctx->coord_[0]; stages > 1 && (self == 0 || self == stages - 1)) {
    int64_t stride = info.worldSize / stages, base = info.rank - self * stride;
    std::vector<int> members = {int(base), int(base + (stages - 1) * stride)};
    auto group = ctx->world_->group("pp_tied." + std::to_string(base), members);
    if (!group)
      return group.status();
    ctx->groups_["pp_tied"] = std::move(*group);
  }
  return ctx;
}

comm::Communicator *RankContext::p2p(int64_t from, int64_t to) const {
  auto it = p2p_.find({from, to});
  return it == p2p_.end() ? nullptr : it->second.get();
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
  return world_ ? &world_->world() : nullptr;
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
