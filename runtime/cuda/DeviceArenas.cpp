// Device arenas: one cudaMalloc per arena, buffers at planned offsets.
#include "runtime/cuda/DeviceArenas.h"

#include "runtime/cuda/Check.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/OpRegistry.h"

#include <cuda_runtime_api.h>

#include <algorithm>

namespace mt::cuda {

Status DeviceArenas::allocate(void **where, uint64_t bytes, const char *what) {
  *where = nullptr;
  if (bytes == 0)
    return Status::ok();
  if (cudaError_t e = cudaMalloc(where, bytes); e != cudaSuccess) {
    size_t free = 0, total = 0;
    (void)cudaGetLastError();
    (void)cudaMemGetInfo(&free, &total);
    return Status::error((rank_.empty() ? "" : rank_ + " ") + "cannot allocate the " +
                         std::string(what) + " arena (" +
                         std::to_string(bytes >> 20) + " MiB) on the GPU: " +
                         cudaGetErrorString(e) + "; " + std::to_string(free >> 20) +
                         " of " + std::to_string(total >> 20) +
                         " MiB free, after " + std::to_string(total_ >> 20) +
                         " MiB of the plan's arenas");
  }
  allocations_.push_back(*where);
  total_ += bytes;
  return Status::ok();
}

Expected<std::unique_ptr<DeviceArenas>> DeviceArenas::create(const plan::Plan &plan,
                                                             const std::string &rank,
                                                             int64_t slots,
                                                             const Coordinate &coordinate) {
  std::unique_ptr<DeviceArenas> d(new DeviceArenas(plan, rank, std::max<int64_t>(slots, 1)));
  const plan::DeviceFootprint footprint = plan::deviceFootprint(plan);
  for (const auto &[id, view] : footprint.shardViews) {
    const int64_t index = coordinate ? coordinate(view.axis) : 0;
    if (index < 0 || index >= view.parts)
      return Status::error((rank.empty() ? "" : rank + " ") + "the shard '" +
                           plan.buffers(id).name() + "' is one of " +
                           std::to_string(view.parts) + " over '" + view.axis +
                           "', but this rank's coordinate on it is " + std::to_string(index));
    d->views_[id] = {view.bucket, index};
  }
  d->masters_ = footprint.masterShards;
  d->footprint_ = footprint;
  const auto copies = uint64_t(d->slots_);
  d->wideOffsets_ = footprint.wideOffsets;
  d->activationBytes_ = footprint.activations;
  d->wideBytes_ = footprint.wideActivations;
  for (const plan::Arena &a : plan.arenas()) {
    if (isHostArena(a.kind()))
      continue; // pinHostArena
    void *p = nullptr;
    const std::string name = plan::ArenaKind_Name(a.kind());
    const uint64_t n = d->perSlot(a.kind()) ? copies : 1;
    if (a.kind() == plan::ACTIVATIONS) {
      if (Status s = d->allocate(&p, footprint.activations * n, "ACTIVATIONS (bf16)"); !s)
        return s;
      d->activations_ = static_cast<std::byte *>(p);
    } else if (a.kind() == plan::PARAMETERS) {
      // Only the bf16 copy of the weights (plan::fp32WeightsOnHost), or
      // the fp32 ones less the buckets' held as master shards.
      const char *what = d->masters_.empty() ? "PARAMETERS" : "PARAMETERS (fp32 master shards)";
      if (Status s = d->allocate(&p, footprint.weights, what); !s)
        return s;
    } else {
      if (Status s = d->allocate(&p, a.size_bytes() * n, name.c_str()); !s)
        return s;
    }
    d->arenas_[a.kind()] = {static_cast<std::byte *>(p),
                            a.kind() == plan::PARAMETERS ? footprint.weights : a.size_bytes()};
    if (a.kind() == plan::PARAMETERS) {
      d->shadowElements_ = int64_t(a.size_bytes() / 4);
      if (Status s = d->allocate(&p, footprint.shadows, "parameter bf16 shadow"); !s)
        return s;
      d->shadows_ = static_cast<bf16 *>(p);
      if (Status s = d->allocate(&p, footprint.remainders, "fp32 masters' low 16 bits"); !s)
        return s;
      d->remainders_ = static_cast<uint16_t *>(p);
      if (Status s = d->allocate(&p, footprint.routerWeightBytes, "MoE routers' fp32 weights");
          !s)
        return s;
      d->routerWeights_ = static_cast<std::byte *>(p);
      if (d->remainders_)
        MT_CUDA_CHECK(cudaMemset(d->remainders_, 0, footprint.remainders));
      if (d->routerWeights_)
        MT_CUDA_CHECK(cudaMemset(d->routerWeights_, 0, footprint.routerWeightBytes));
    } else if (a.kind() == plan::STAGED_WEIGHTS) {
      if (Status s = d->allocate(&p, footprint.stagedWeightShadows, "staged weights' bf16 copy");
          !s)
        return s;
      d->stagedShadows_ = static_cast<bf16 *>(p);
    }
  }
  void *p = nullptr;
  if (Status s = d->allocate(&p, footprint.wideActivations * copies, "32-bit activations"); !s)
    return s;
  d->wideArena_ = static_cast<std::byte *>(p);
  // Zero everything once: padding and never-written buffers read as 0, as
  // in host memory.
  for (const auto &[kind, arena] : d->arenas_)
    if (arena.first)
      MT_CUDA_CHECK(cudaMemset(arena.first, 0,
                               (kind == plan::ACTIVATIONS ? footprint.activations : arena.second) *
                                   (d->perSlot(kind) ? copies : 1)));
  if (d->wideArena_)
    MT_CUDA_CHECK(cudaMemset(d->wideArena_, 0, footprint.wideActivations * copies));
  return d;
}

DeviceArenas::~DeviceArenas() {
  for (void *p : allocations_)
    (void)cudaFree(p);
  for (void *p : pinned_)
    (void)cudaHostUnregister(p);
}

Status DeviceArenas::pinHostArena(plan::ArenaKind kind, std::byte *data, uint64_t bytes) {
  if (!isHostArena(kind) || !data)
    return Status::error((rank_.empty() ? "" : rank_ + " ") + "the " +
                         plan::ArenaKind_Name(kind) + " arena is not a host arena of the plan");
  if (bytes > 0) {
    if (cudaError_t e = cudaHostRegister(data, bytes, cudaHostRegisterDefault); e != cudaSuccess) {
      (void)cudaGetLastError();
      return Status::error((rank_.empty() ? "" : rank_ + " ") + "cannot pin the " +
                           plan::ArenaKind_Name(kind) + " arena (" + std::to_string(bytes >> 20) +
                           " MiB of host memory): " + cudaGetErrorString(e));
    }
    pinned_.push_back(data);
  }
  arenas_[kind] = {data, bytes};
  return Status::ok();
}

DeviceArenas::Storage DeviceArenas::storage(uint32_t id) const {
  if (views_.count(id))
    return Storage::ShardView;
  switch (plan_.buffers(id).arena()) {
  case plan::ACTIVATIONS:
    return wideOffsets_.count(id) ? Storage::Wide : Storage::Bf16Activation;
  case plan::PARAMETERS:
    return Storage::Parameter;
  case plan::STAGED_WEIGHTS:
    return Storage::StagedWeight;
  default:
    return Storage::AsPlanned;
  }
}

std::byte *DeviceArenas::data(uint32_t id) const {
  const plan::Buffer &b = plan_.buffers(id);
  switch (storage(id)) {
  case Storage::Bf16Activation:
    return activations_ + slotOffset(activationBytes_) + b.offset_bytes() / 2;
  case Storage::Wide:
    return wideArena_ + slotOffset(wideBytes_) + wideOffsets_.at(id);
  case Storage::ShardView: {
    if (auto master = masters_.find(id); master != masters_.end())
      return arena(plan::PARAMETERS) + footprint_.weightsBeforeShards + master->second.offset;
    const auto &[bucket, index] = views_.at(id);
    return data(bucket) + uint64_t(index) * b.size_bytes();
  }
  case Storage::Parameter: {
    if (remainders_)
      return routerWeight(id);
    std::byte *base = arena(plan::PARAMETERS);
    const std::optional<uint64_t> at =
        plan::deviceWeightOffset(footprint_, b.offset_bytes(), b.size_bytes());
    return base && at ? base + *at : nullptr; // none: in a master-sharded bucket
  }
  default: {
    std::byte *base = arena(b.arena());
    return base ? base + b.offset_bytes() : nullptr; // fp32 weights on the host: none
  }
  }
}

bf16 *DeviceArenas::bf16Data(uint32_t id) const {
  const plan::Buffer &b = plan_.buffers(id);
  switch (storage(id)) {
  case Storage::Bf16Activation:
    return reinterpret_cast<bf16 *>(data(id));
  case Storage::Parameter:
    return shadows_ + b.offset_bytes() / 4;
  case Storage::StagedWeight:
    return stagedShadows_ + b.offset_bytes() / 4;
  case Storage::ShardView: { // a weight shard's slice of its bucket's shadow
    const auto &[bucket, index] = views_.at(id);
    bf16 *shadow = bf16Data(bucket);
    return shadow ? shadow + index * plan::elementsOf(b) : nullptr;
  }
  default:
    return nullptr;
  }
}

uint16_t *DeviceArenas::remainderData(uint32_t id) const {
  if (!remainders_ || storage(id) != Storage::Parameter || routerWeight(id))
    return nullptr;
  return remainders_ + plan_.buffers(id).offset_bytes() / 4;
}

std::byte *DeviceArenas::routerWeight(uint32_t id) const {
  const plan::Buffer &b = plan_.buffers(id);
  for (const auto &[weight, offset] : footprint_.routerWeights) {
    const plan::Buffer &w = plan_.buffers(weight);
    if (b.offset_bytes() >= w.offset_bytes() &&
        b.offset_bytes() < w.offset_bytes() + w.size_bytes())
      return routerWeights_ + offset + (b.offset_bytes() - w.offset_bytes());
  }
  return nullptr;
}

Status DeviceArenas::copyRouterWeights(std::byte *host, bool toDevice,
                                       cudaStream_t stream) const {
  for (const auto &[weight, offset] : footprint_.routerWeights) {
    const plan::Buffer &w = plan_.buffers(weight);
    std::byte *device = routerWeights_ + offset, *there = host + w.offset_bytes();
    MT_CUDA_CHECK(cudaMemcpyAsync(toDevice ? device : there, toDevice ? there : device,
                                  w.size_bytes(),
                                  toDevice ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                  stream));
  }
  return Status::ok();
}

Status DeviceArenas::copyWeights(std::byte *host, bool toDevice, cudaStream_t stream) const {
  std::byte *device = arena(plan::PARAMETERS);
  if (!device || !host)
    return Status::ok();
  auto copy = [&](uint64_t deviceOffset, uint64_t hostOffset, uint64_t bytes) -> Status {
    if (bytes == 0)
      return Status::ok();
    if (toDevice)
      MT_CUDA_CHECK(cudaMemcpyAsync(device + deviceOffset, host + hostOffset, bytes,
                                    cudaMemcpyHostToDevice, stream));
    else
      MT_CUDA_CHECK(cudaMemcpyAsync(host + hostOffset, device + deviceOffset, bytes,
                                    cudaMemcpyDeviceToHost, stream));
    return Status::ok();
  };
  uint64_t planBytes = 0;
  for (const plan::Arena &a : plan_.arenas())
    if (a.kind() == plan::PARAMETERS)
      planBytes = a.size_bytes();
  if (masters_.empty())
    return copy(0, 0, std::min(planBytes, arenaBytes(plan::PARAMETERS)));
  // The ranges between the master-sharded buckets, in the arena's order,
  // then each rank's shard.
  std::vector<const plan::MasterShard *> byOffset;
  for (const auto &[view, m] : masters_)
    byOffset.push_back(&m);
  std::sort(byOffset.begin(), byOffset.end(),
            [](const auto *a, const auto *b) { return a->planOffset < b->planOffset; });
  uint64_t from = 0, left = 0; // plan offset, bytes left out before it
  for (const plan::MasterShard *master : byOffset) {
    const plan::MasterShard &m = *master;
    if (Status s = copy(from - left, from, m.planOffset - from); !s)
      return s;
    from = m.planOffset + m.planBytes;
    left += m.planBytes;
  }
  if (from < planBytes)
    if (Status s = copy(from - left, from, planBytes - from); !s)
      return s;
  for (const auto &[view, m] : masters_)
    if (Status s = copy(footprint_.weightsBeforeShards + m.offset,
                        m.planOffset + uint64_t(shardIndex(view)) * m.bytes, m.bytes);
        !s)
      return s;
  return Status::ok();
}

std::byte *DeviceArenas::arena(plan::ArenaKind kind) const {
  auto it = arenas_.find(kind);
  if (it == arenas_.end() || !it->second.first)
    return nullptr;
  const uint64_t perCopy = kind == plan::ACTIVATIONS ? activationBytes_ : it->second.second;
  return it->second.first + (perSlot(kind) ? slotOffset(perCopy) : 0);
}

uint64_t DeviceArenas::arenaBytes(plan::ArenaKind kind) const {
  auto it = arenas_.find(kind);
  return it == arenas_.end() ? 0 : it->second.second;
}

} // namespace mt::cuda
