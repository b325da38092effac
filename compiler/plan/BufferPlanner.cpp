// Buffer creation, parameter tables and static offsets of a plan.
#include "compiler/plan/BufferPlanner.h"

#include "dialects/mt/MtMesh.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/support/CheckedMath.h"

#include <algorithm>
#include <tuple>
#include <map>

using namespace mlir;

namespace mt {
namespace {

constexpr uint64_t kAlignment = 64;

uint64_t alignUp(uint64_t x) { return (x + kAlignment - 1) / kAlignment * kAlignment; }

plan::DType dtypeOf(Type element) {
  if (element.isInteger(32))
    return plan::I32;
  if (element.isInteger(64))
    return plan::I64;
  // Floating-point state lives in fp32 (master weights, main gradients);
  // the compute precision is the backend's.
  return plan::F32;
}

uint64_t bytesOf(plan::DType dtype) { return dtype == plan::I64 ? 8 : 4; }

} // namespace

uint32_t BufferPlanner::addBuffer(const std::string &name, RankedTensorType type,
                                  plan::ArenaKind arena) {
  auto *b = plan_.add_buffers();
  uint32_t id = plan_.buffers_size() - 1;
  b->set_id(id);
  b->set_name(name);
  b->set_dtype(dtypeOf(type.getElementType()));
  for (int64_t d : type.getShape())
    b->add_shape(d);
  b->set_arena(arena);
  // checkTensorSizes bounds every tensor of the model; a product that
  // overflows here anyway is reported by assignOffsets, naming the buffer.
  auto elements = checkedProduct(type.getShape());
  auto bytes = elements ? checkedMul<uint64_t>(*elements, bytesOf(b->dtype())) : std::nullopt;
  if (!bytes && overflow_.isOk())
    overflow_ = Status::error("buffer '" + name + "' has more bytes than 64-bit sizes count");
  b->set_size_bytes(bytes.value_or(0));
  return id;
}

uint32_t BufferPlanner::addWorkspace(const std::string &name, RankedTensorType type,
                                     plan::Instruction &instr) {
  const uint32_t id = addBuffer(name, type, plan::ACTIVATIONS);
  instr.set_workspace(id);
  workspaces_[id] = &instr;
  return id;
}

uint32_t BufferPlanner::addBufferLike(const std::string &name, uint32_t like,
                                      plan::ArenaKind arena) {
  plan::Buffer copy = plan_.buffers(like);
  copy.set_id(uint32_t(plan_.buffers_size()));
  copy.set_name(name);
  copy.set_arena(arena);
  copy.clear_offset_bytes();
  copy.clear_parts(); // a buffer of its own, not a view
  *plan_.add_buffers() = std::move(copy);
  return uint32_t(plan_.buffers_size() - 1);
}

LogicalResult BufferPlanner::addParameters(ModuleOp module,
                                           DenseMap<StringRef, uint32_t> &gradBuffers) {
  SymbolTableCollection symbols;
  auto optimizer = module.lookupSymbol<func::FuncOp>("optimizer_step");
  auto buckets = optimizer ? optimizer->getAttrOfType<ArrayAttr>(MtDialect::kBucketsAttrName)
                           : ArrayAttr();
  for (auto param : module.getOps<ParamOp>()) {
    auto type = param.getLocalType();
    auto full = param.getTensorType();
    std::string name = param.getSymName().str();
    ParameterBuffers buffers;
    buffers.param = addBuffer(name, type, plan::PARAMETERS);
    auto *p = plan_.add_parameters();
    p->set_name(name);
    for (int64_t d : full.getShape())
      p->add_shape(d);
    if (ShardingAttr sharding = param.getShardingAttr()) {
      shard::GridOp grid = lookupGrid(param, sharding.getGrid(), &symbols);
      for (int64_t dim = 0; dim < full.getRank(); ++dim)
        for (StringRef axis : sharding.getAxes(dim)) {
          auto *split = p->add_splits();
          split->set_dim(int32_t(dim));
          split->set_axis(axis.str());
          split->set_parts(axisSize(grid, axis).value_or(1));
        }
    }
    if (auto rows = param.getHfRows())
      p->set_hf_rows(*rows);
    switch (param.getInit()) {
    case InitKind::normal:
      p->set_init(plan::NORMAL);
      p->set_init_std(param.getStd()->convertToDouble());
      break;
    case InitKind::zeros:
      p->set_init(plan::ZEROS);
      break;
    case InitKind::ones:
      p->set_init(plan::ONES);
      break;
    }
    p->set_grouped_experts(param.getGroupedExperts());
    p->set_param_buffer(buffers.param);
    p->set_trainable(!param.getFrozen());
    if (!param.getFrozen()) {
      buffers.grad = addBuffer("grad:" + name, type, plan::GRADIENTS);
      p->set_grad_buffer(buffers.grad);
      if (!buckets) { // else the bucket's shard (addBuckets)
        buffers.expAvg = addBuffer("exp_avg:" + name, type, plan::OPTIMIZER);
        buffers.expAvgSq = addBuffer("exp_avg_sq:" + name, type, plan::OPTIMIZER);
        p->set_exp_avg_buffer(buffers.expAvg);
        p->set_exp_avg_sq_buffer(buffers.expAvgSq);
      }
    }
    auto [it, inserted] = parameters_.try_emplace(name, buffers);
    if (!inserted)
      return param.emitOpError() << "declares parameter '" << name << "' twice";
    gradBuffers[it->first()] = buffers.grad;
  }
  return buckets ? addBuckets(module, buckets) : success();
}

LogicalResult BufferPlanner::addBuckets(ModuleOp module, ArrayAttr buckets) {
  auto optimizer = module.lookupSymbol<func::FuncOp>("optimizer_step");
  shard::GridOp mesh = module.lookupSymbol<shard::GridOp>(kMeshName),
                expertMesh = module.lookupSymbol<shard::GridOp>(kExpertMeshName);
  llvm::StringMap<plan::Parameter *> byName;
  for (plan::Parameter &p : *plan_.mutable_parameters())
    byName[p.name()] = &p;
  for (auto [k, attr] : llvm::enumerate(buckets)) {
    auto bucket = dyn_cast<DictionaryAttr>(attr);
    auto axis = bucket ? bucket.getAs<StringAttr>("axis") : StringAttr();
    auto members = bucket ? bucket.getAs<ArrayAttr>("params") : ArrayAttr();
    auto offsets = bucket ? bucket.getAs<DenseI64ArrayAttr>("offsets") : DenseI64ArrayAttr();
    // dp of @mesh, or edp of @expert_mesh for experts.
    std::optional<int64_t> parts;
    if (mesh && axis)
      parts = axisSize(mesh, axis);
    if (!parts && expertMesh && axis)
      parts = axisSize(expertMesh, axis);
    // @optimizer_step's arguments: step, then 4 per bucket (mt-build-optimizer).
    unsigned gradArg = 2 + 4 * unsigned(k);
    if (!members || !offsets || int64_t(members.size()) != int64_t(offsets.size()) ||
        members.empty() || !parts ||
        gradArg >= optimizer.getNumArguments())
      return optimizer.emitOpError() << "has a malformed mt.buckets entry " << k
                                     << " (expects axis of @" << kMeshName << " or @"
                                     << kExpertMeshName
                                     << ", params and one offset per param)";
    auto full = cast<RankedTensorType>(optimizer.getArgument(gradArg).getType());
    auto shard = RankedTensorType::get({full.getDimSize(0) / *parts}, full.getElementType());
    std::string name = "bucket ";
    name += std::to_string(k);
    ParameterBuffers b;
    b.param = addBuffer("params:" + name, full, plan::PARAMETERS);
    b.grad = addBuffer("grads:" + name, full, plan::GRADIENTS);
    b.expAvg = addBuffer("exp_avg:" + name, shard, plan::OPTIMIZER);
    b.expAvgSq = addBuffer("exp_avg_sq:" + name, shard, plan::OPTIMIZER);
    buckets_.push_back(b);
    plan::Bucket &out = *plan_.add_buckets();
    out.set_axis(axis.str());
    out.set_parts(*parts);
    out.set_param_buffer(b.param);
    out.set_grad_buffer(b.grad);
    out.set_exp_avg_buffer(b.expAvg);
    out.set_exp_avg_sq_buffer(b.expAvgSq);
    for (auto [member, offset] : llvm::zip(members, offsets.asArrayRef())) {
      StringRef param = cast<FlatSymbolRefAttr>(member).getValue();
      plan::Parameter *p = byName.lookup(param);
      if (!p || !p->trainable())
        return optimizer.emitOpError() << "buckets '" << param
                                       << "', which is not a trainable parameter";
      auto *m = out.add_members();
      m->set_param(param.str());
      m->set_offset(offset);
      p->set_exp_avg_buffer(b.expAvg);
      p->set_exp_avg_sq_buffer(b.expAvgSq);
      views_[p->param_buffer()] = {b.param, uint64_t(offset) * 4};
      views_[p->grad_buffer()] = {b.grad, uint64_t(offset) * 4};
    }
  }
  return success();
}

void BufferPlanner::placeBucketMembers() {
  for (auto [view, where] : views_)
    plan_.mutable_buffers(view)->set_offset_bytes(plan_.buffers(where.first).offset_bytes() +
                                                  where.second);
}

Expected<uint32_t> BufferPlanner::addPackedView(const std::string &name, RankedTensorType type,
                                                ArrayRef<uint32_t> members) {
  uint64_t bytes = 0;
  for (uint32_t id : members) {
    const plan::Buffer &b = plan_.buffers(id);
    if (b.arena() != plan::PARAMETERS && b.arena() != plan::GRADIENTS)
      return Status::error("'" + name + "' cannot view buffer '" + b.name() + "' of the " +
                           plan::ArenaKind_Name(b.arena()) +
                           " arena: only parameters and gradients are placed back to back");
    if (b.arena() != plan_.buffers(members.front()).arena() ||
        views_.count(id) != views_.count(members.front()))
      return Status::error("'" + name + "' cannot view buffer '" + b.name() +
                           "': it is in another arena than '" +
                           plan_.buffers(members.front()).name() +
                           "', or one of them is in a bucket and the other not");
    bytes += b.size_bytes();
  }
  // Where the view starts: members of a distributed-optimizer bucket (views
  // of it) lie where the bucket's layout places them, and must be back to
  // back in order there (mt-fuse's packInBuckets); others become a run
  // that placeRun keeps together.
  std::pair<uint32_t, uint64_t> start{members.front(), 0};
  if (auto first = views_.find(members.front()); first != views_.end()) {
    start = first->second;
    uint64_t next = start.second;
    for (uint32_t id : members) {
      const std::pair<uint32_t, uint64_t> &at = views_.at(id);
      if (at.first != start.first || at.second != next)
        return Status::error("'" + name + "' views buffer '" + plan_.buffers(id).name() +
                             "', which its bucket does not place right after the previous one");
      next += plan_.buffers(id).size_bytes();
    }
  } else if (Status s = addRun(name, members); !s) {
    return s;
  }
  uint32_t view = addBuffer(name, type, plan_.buffers(members.front()).arena());
  if (plan_.buffers(view).size_bytes() != bytes)
    return Status::error("'" + name + "' has " + std::to_string(plan_.buffers(view).size_bytes()) +
                         " bytes but views " + std::to_string(bytes));
  views_[view] = start;
  for (uint32_t id : members)
    plan_.mutable_buffers(view)->add_parts(id);
  return view;
}

Status BufferPlanner::addRun(const std::string &name, ArrayRef<uint32_t> members) {
  auto run = runOf_.find(members.front());
  if (run != runOf_.end() && ArrayRef<uint32_t>(runs_[run->second]) == members)
    return Status::ok();
  for (uint32_t id : members)
    if (runOf_.count(id))
      return Status::error("'" + name + "' views buffer '" + plan_.buffers(id).name() +
                           "', which is placed back to back with other buffers already");
  for (uint32_t id : members)
    runOf_[id] = runs_.size();
  runs_.emplace_back(members.begin(), members.end());
  return Status::ok();
}

Status BufferPlanner::placeRun(plan::Buffer &b, uint64_t offset, uint64_t &end) {
  auto run = runOf_.find(b.id());
  if (run == runOf_.end())
    return place(b, offset, end);
  // Unaligned inside the run: each member starts where the last ends.
  for (uint32_t id : runs_[run->second]) {
    plan::Buffer &m = *plan_.mutable_buffers(id);
    if (Status s = place(m, offset, end); !s)
      return s;
    offset += m.size_bytes();
  }
  return Status::ok();
}

std::pair<uint32_t, uint64_t> BufferPlanner::placeInRoot(uint32_t id) const {
  uint64_t start = 0;
  if (auto view = views_.find(id); view != views_.end())
    id = view->second.first, start = view->second.second;
  if (auto run = runOf_.find(id); run != runOf_.end())
    for (uint32_t member : runs_[run->second]) {
      if (member == id)
        return {runs_[run->second].front(), start};
      start += plan_.buffers(member).size_bytes();
    }
  return {id, start};
}

bool BufferPlanner::overlaps(uint32_t a, uint32_t b) const {
  auto [rootA, startA] = placeInRoot(a);
  auto [rootB, startB] = placeInRoot(b);
  return rootA == rootB && startA < startB + plan_.buffers(b).size_bytes() &&
         startB < startA + plan_.buffers(a).size_bytes();
}

void BufferPlanner::touch(uint32_t id, int64_t index) {
  Interval &i = live_[id];
  int64_t t = programBase_ + index;
  if (i.first < 0)
    i.first = t;
  i.last = std::max(i.last, t);
  programLength_ = std::max(programLength_, index + 1);
}

void BufferPlanner::finishProgram() {
  programBase_ += programLength_ + 1;
  programLength_ = 0;
}

Status BufferPlanner::place(plan::Buffer &b, uint64_t offset, uint64_t &end) {
  auto size = checkedAdd<uint64_t>(b.size_bytes(), kAlignment - 1);
  auto last = size ? checkedAdd<uint64_t>(offset, *size / kAlignment * kAlignment) : std::nullopt;
  if (!last || *last > plan::kMaxRankBytes)
    return Status::error("buffer '" + b.name() + "' (" + std::to_string(b.size_bytes()) +
                         " bytes) at offset " + std::to_string(offset) + " of the " +
                         plan::ArenaKind_Name(b.arena()) + " arena ends past " +
                         std::to_string(plan::kMaxRankBytes) + " bytes, " +
                         plan::kMaxRankBytesReason);
  b.set_offset_bytes(offset);
  end = *last;
  return Status::ok();
}

Status BufferPlanner::assignPersistentOffsets(std::map<plan::ArenaKind, uint64_t> &sizes) {
  // The stage of each parameter's buffers; -1: held by two stages (tied
  // embeddings), or not a parameter's (inputs, outputs).
  std::map<uint32_t, int32_t> stageOf;
  for (const plan::Parameter &p : plan_.parameters()) {
    int32_t stage = p.tied_stage() >= 0 ? -1 : p.stage();
    stageOf[p.param_buffer()] = stage;
    if (p.trainable())
      for (uint32_t id : {p.grad_buffer(), p.exp_avg_buffer(), p.exp_avg_sq_buffer()})
        stageOf[id] = stage;
  }
  // A bucket is held where its members are (they share one stage or one
  // pair of tied stages: buckets never span layers).
  for (const plan::Bucket &b : plan_.buckets())
    for (uint32_t id : {b.param_buffer(), b.grad_buffer()})
      stageOf[id] = stageOf[parameterBuffers(b.members(0).param()).param];
  for (auto [id, owner] : placedWith_)
    if (auto it = stageOf.find(owner); it != stageOf.end())
      stageOf[id] = it->second;
  auto stage = [&](uint32_t id) {
    auto it = stageOf.find(id);
    return it == stageOf.end() ? -1 : it->second;
  };
  // Shared buffers first, at the same offsets on every stage; then each
  // stage's from where they end.
  // Views into buckets are placed with their bucket.
  // So are the members of a packed run after its first (placeRun).
  for (const std::vector<uint32_t> &run : runs_)
    for (uint32_t id : run)
      if (stage(id) != stage(run.front()))
        return Status::error("buffers '" + plan_.buffers(run.front()).name() + "' and '" +
                             plan_.buffers(id).name() +
                             "' are viewed as one but held by different pipeline stages");
  auto placedAlone = [&](const plan::Buffer &b) {
    auto run = runOf_.find(b.id());
    return !plan::isLivenessPlanned(b.arena()) && !views_.count(b.id()) &&
           (run == runOf_.end() || runs_[run->second].front() == b.id());
  };
  for (auto &b : *plan_.mutable_buffers())
    if (placedAlone(b) && stage(b.id()) < 0)
      if (Status s = placeRun(b, sizes[b.arena()], sizes[b.arena()]); !s)
        return s;
  std::map<std::pair<plan::ArenaKind, int32_t>, uint64_t> used;
  std::map<plan::ArenaKind, uint64_t> end;
  for (auto &b : *plan_.mutable_buffers()) {
    if (!placedAlone(b) || stage(b.id()) < 0)
      continue;
    uint64_t &next = used[{b.arena(), stage(b.id())}];
    if (next == 0)
      next = sizes[b.arena()];
    if (Status s = placeRun(b, next, next); !s)
      return s;
    end[b.arena()] = std::max(end[b.arena()], next);
  }
  for (auto [arena, bytes] : end)
    sizes[arena] = bytes;
  placeBucketMembers();
  return Status::ok();
}

Status BufferPlanner::assignLiveOffsets(plan::ArenaKind kind,
                                        std::map<plan::ArenaKind, uint64_t> &sizes) {
  std::vector<uint32_t> ids, workspaces;
  for (const auto &b : plan_.buffers())
    if (b.arena() == kind)
      (workspaces_.count(b.id()) ? workspaces : ids).push_back(b.id());
  if (ids.empty() && workspaces.empty() && kind != plan::ACTIVATIONS)
    return Status::ok(); // no arena (an empty ACTIVATIONS one is still listed)
  // Largest first; each takes the lowest offset free over its lifetime.
  auto largestFirst = [&](std::vector<uint32_t> &v) {
    std::stable_sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) {
      return plan_.buffers(a).size_bytes() > plan_.buffers(b).size_bytes();
    });
  };
  largestFirst(ids);
  largestFirst(workspaces);
  struct Placed {
    uint64_t offset, end;
    Interval live;
    bool operator<(const Placed &o) const {
      return std::tie(offset, end) < std::tie(o.offset, o.end);
    }
  };
  // Kept in (offset, end) order, so that the buffers live beside one are
  // walked in that order without a sort per buffer (thousands of layers).
  std::vector<Placed> placed;
  auto lowestFree = [&](uint32_t id) {
    const Interval live = live_.lookup(id);
    // At most 2^63 (checkTensorSizes): offset + size cannot wrap.
    const uint64_t size = alignUp(plan_.buffers(id).size_bytes());
    uint64_t offset = 0;
    for (const Placed &p : placed) {
      if (p.live.last < live.first || live.last < p.live.first)
        continue;
      if (offset + size <= p.offset)
        break;
      offset = std::max(offset, p.end);
    }
    return offset;
  };
  auto add = [&](const Placed &p) {
    placed.insert(std::upper_bound(placed.begin(), placed.end(), p), p);
  };
  uint64_t peak = 0;
  for (uint32_t id : ids) {
    const uint64_t offset = lowestFree(id);
    uint64_t end = 0;
    if (Status s = place(*plan_.mutable_buffers(id), offset, end); !s)
      return s;
    add({offset, end, live_.lookup(id)});
    peak = std::max(peak, end);
  }
  // Workspaces take bytes free below that peak, or none.
  for (uint32_t id : workspaces) {
    plan::Buffer &b = *plan_.mutable_buffers(id);
    const uint64_t offset = lowestFree(id);
    if (offset + alignUp(b.size_bytes()) > peak) {
      workspaces_.at(id)->clear_workspace();
      b.clear_shape();
      b.add_shape(0);
      b.set_size_bytes(0);
      b.set_offset_bytes(0);
      continue;
    }
    uint64_t end = 0;
    if (Status s = place(b, offset, end); !s)
      return s;
    add({offset, end, live_.lookup(id)});
  }
  sizes[kind] = peak;
  return Status::ok();
}

Status BufferPlanner::assignOffsets() {
  if (!overflow_)
    return overflow_;
  std::map<plan::ArenaKind, uint64_t> sizes;
  if (Status s = assignPersistentOffsets(sizes); !s)
    return s;
  for (int k = plan::ArenaKind_MIN; k <= plan::ArenaKind_MAX; ++k)
    if (plan::ArenaKind_IsValid(k) && plan::isLivenessPlanned(plan::ArenaKind(k)))
      if (Status s = assignLiveOffsets(plan::ArenaKind(k), sizes); !s)
        return s;
  uint64_t total = 0;
  for (auto [kind, size] : sizes) {
    total += size; // each at most kMaxRankBytes: no overflow
    if (total > plan::kMaxRankBytes)
      return Status::error("one rank's arenas need " + std::to_string(total) +
                           " bytes or more (the " + plan::ArenaKind_Name(kind) + " arena: " +
                           std::to_string(size) + "), more than " +
                           std::to_string(plan::kMaxRankBytes) + " bytes, " +
                           plan::kMaxRankBytesReason +
                           "; split the model over more ranks (--tp, --pp)");
    auto *arena = plan_.add_arenas();
    arena->set_kind(kind);
    arena->set_size_bytes(size);
  }
  return Status::ok();
}

} // namespace mt
