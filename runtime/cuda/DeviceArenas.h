// The plan's arenas on the GPU, each allocated once with cudaMalloc, and the
// typed device address of every buffer; the sizes are those of
// runtime/plan/DeviceFootprint.h, which `mtc compile --explain` prints.
//
// The plan sizes buffers in fp32; the GPU keeps activations in bf16. Every
// bf16 activation lives at half its planned offset in an arena of half the
// planned size: halving all offsets and sizes keeps buffers that the plan
// keeps apart apart, so the plan's liveness-planned reuse holds as is.
// Activations that must stay 32-bit (the attention's log-sum-exp, integer
// indices, optimizer scalars) get their own small arena without reuse.
// Parameters keep their fp32 master copy and get a bf16 shadow laid out the
// same halved way, so one cast refreshes every shadow after an update; where
// AdamW alone reads the fp32 weights (plan::masterRemainders) the master is
// the shadow plus its 16 low bits, laid out as the shadows; under
// optimizer_offload (plan::fp32WeightsOnHost) the fp32 copy is on the host
// only, and the GPU keeps the shadow alone. param_offload's staged weights
// (STAGED_WEIGHTS, on the device; their HOST_WEIGHTS in pinned host memory)
// are laid out the same way: fp32 at the planned offset, written by the
// copy from the host and read by AdamW, and a bf16 copy at half of it,
// which the copy casts into and the layers read.
// Pipelines keep each micro-batch in flight in a slot of its own: the
// per-micro-batch arenas (activations, inputs, outputs) then have one copy
// per slot, as in exec::HostMemory. The distributed optimizer's gradient
// shards are views of the rank's slice of their bucket (plan::ShardView):
// NCCL reduce-scatters them in place. Its weight buckets keep only the
// rank's shard of their fp32 masters (plan::MasterShard, after the
// PARAMETERS arena's other buffers) and the whole bf16 shadow, which NCCL
// all-gathers in place from the rank's slice.
#ifndef MT_RUNTIME_CUDA_DEVICEARENAS_H
#define MT_RUNTIME_CUDA_DEVICEARENAS_H

#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

class DeviceArenas {
public:
  /// How a buffer is stored on the device.
  enum class Storage {
    Bf16Activation, // ACTIVATIONS at half the planned offset
    Wide,           // ACTIVATIONS kept in the plan's dtype, not reused
    Parameter,      // fp32 master, plus a bf16 shadow
    AsPlanned,      // GRADIENTS, STAGED_GRADIENTS, OPTIMIZER, INPUTS, OUTPUTS: the
                    // host layout; host arenas (the offloads'): in pinned host
                    // memory
    ShardView,      // fp32, the rank's slice of a distributed-optimizer bucket,
                    // or its master shard (isMasterShard)
    StagedWeight,   // STAGED_WEIGHTS (param_offload): fp32 as planned, plus a
                    // bf16 copy at half the planned offset
  };

  /// The rank's coordinate on a mesh axis (the shard views' index).
  using Coordinate = std::function<int64_t(const std::string &axis)>;

  /// Allocates the arenas plan::deviceFootprint sizes. A failed cudaMalloc
  /// is an error that starts with `rank` (RankContext::describe()) and
  /// names the arena, its size and the device memory free. `slots`: copies
  /// of the per-micro-batch arenas (exec::HostMemory::slots()).
  /// `coordinate` places the shard views (all at slice 0 when empty); a
  /// coordinate outside [0, parts) is an error.
  static Expected<std::unique_ptr<DeviceArenas>> create(const plan::Plan &plan,
                                                        const std::string &rank = "",
                                                        int64_t slots = 1,
                                                        const Coordinate &coordinate = {});
  ~DeviceArenas();

  /// The plan's host arenas (optimizer_offload: master weights, gradients
  /// staged for the host update, AdamW state; grad_offload: the main
  /// gradients) are not allocated here (plan::isHostArena).
  static bool isHostArena(plan::ArenaKind kind) { return plan::isHostArena(kind); }
  /// Pins host arena `kind`, `bytes` at `data` (exec::HostMemory's copy, the
  /// one checkpoints and exports read), with cudaHostRegister: copies from
  /// and to it then run asynchronously on a stream, as from cudaHostAlloc
  /// memory, without a second host copy. Its buffers are then addressed
  /// there (data()). Unpinned with these arenas. An error names the arena.
  Status pinHostArena(plan::ArenaKind kind, std::byte *data, uint64_t bytes);
  DeviceArenas(const DeviceArenas &) = delete;
  DeviceArenas &operator=(const DeviceArenas &) = delete;

  /// The slot whose copy later addresses of per-micro-batch buffers name.
  void setSlot(int64_t slot) { slot_ = slot; }

  Storage storage(uint32_t buffer) const;
  /// The address of `buffer` in its device storage (the fp32 master of a
  /// parameter; null where the GPU keeps only its bf16 copy,
  /// plan::fp32WeightsOnHost, or that copy and its remainders,
  /// plan::masterRemainders).
  std::byte *data(uint32_t buffer) const;
  /// The bf16 view of a bf16 activation, of a parameter's shadow or of a
  /// staged weight's bf16 copy.
  bf16 *bf16Data(uint32_t buffer) const;
  /// Whether `buffer` is a weight shard whose fp32 values are the rank's
  /// master shard (plan::MasterShard): its bucket has no fp32 copy here.
  bool isMasterShard(uint32_t buffer) const { return masters_.count(buffer) > 0; }
  const std::map<uint32_t, plan::MasterShard> &masterShards() const { return masters_; }
  /// The rank's slice index of shard view `buffer` (its coordinate on the
  /// bucket's axis).
  int64_t shardIndex(uint32_t buffer) const { return views_.at(buffer).second; }
  /// Copies the fp32 weights the device holds between it and `host`, the
  /// host's PARAMETERS arena (the plan's layout, every weight whole),
  /// enqueued on `stream`: the arena as is, or, with master shards, its
  /// buffers outside their buckets and each master shard from or to the
  /// rank's slice of its bucket (the other slices are left to the caller).
  Status copyWeights(std::byte *host, bool toDevice, cudaStream_t stream) const;

  /// A planned arena on the device (the current slot's copy of a
  /// per-micro-batch arena; null when the plan has none).
  std::byte *arena(plan::ArenaKind kind) const;
  uint64_t arenaBytes(plan::ArenaKind kind) const;
  bf16 *parameterShadows() const { return shadows_; }
  /// plan::masterRemainders: the 16 low bits of each fp32 weight, at the
  /// shadows' element offsets (kernels::joinMaster); null otherwise.
  uint16_t *parameterRemainders() const { return remainders_; }
  /// `buffer`'s remainders when it is a parameter kept so, else null (a
  /// weight a MoE router reads keeps its fp32 master: data()).
  uint16_t *remainderData(uint32_t buffer) const;
  /// Under plan::masterRemainders, copies the fp32 weights MoE routers read
  /// (DeviceFootprint::routerWeights) between the device and `host`, the
  /// host's PARAMETERS arena, enqueued on `stream`.
  Status copyRouterWeights(std::byte *host, bool toDevice, cudaStream_t stream) const;
  /// fp32 elements in the plan's PARAMETERS arena (padding included): the
  /// shadows'.
  int64_t parameterElements() const { return shadowElements_; }
  /// Bytes allocated on the device, all arenas together.
  uint64_t totalBytes() const { return total_; }

private:
  DeviceArenas(const plan::Plan &plan, std::string rank, int64_t slots)
      : plan_(plan), rank_(std::move(rank)), slots_(slots) {}
  Status allocate(void **where, uint64_t bytes, const char *what);
  static bool perSlot(plan::ArenaKind kind) {
    return kind == plan::ACTIVATIONS || kind == plan::INPUTS || kind == plan::OUTPUTS;
  }
  /// The offset of the current slot's copy in a per-micro-batch arena of
  /// `bytes` per slot.
  uint64_t slotOffset(uint64_t bytes) const { return bytes * uint64_t(slot_); }

  const plan::Plan &plan_;
  std::string rank_;
  int64_t slots_ = 1, slot_ = 0;
  uint64_t activationBytes_ = 0, wideBytes_ = 0; // per slot
  std::map<plan::ArenaKind, std::pair<std::byte *, uint64_t>> arenas_;
  std::byte *activations_ = nullptr, *wideArena_ = nullptr;
  bf16 *shadows_ = nullptr;
  uint16_t *remainders_ = nullptr;
  std::byte *routerWeights_ = nullptr; // plan::masterRemainders' fp32 router weights
  /// The fp32 copy of a router's weight that `buffer` lies in, or null.
  std::byte *routerWeight(uint32_t buffer) const;
  bf16 *stagedShadows_ = nullptr; // the staged weights' bf16 copies
  std::map<uint32_t, uint64_t> wideOffsets_;
  /// Shard view -> (its bucket, its slice's index).
  std::map<uint32_t, std::pair<uint32_t, int64_t>> views_;
  std::map<uint32_t, plan::MasterShard> masters_; // by shard view
  plan::DeviceFootprint footprint_;
  int64_t shadowElements_ = 0;
  std::vector<void *> allocations_;
  std::vector<void *> pinned_; // host arenas registered by pinHostArena
  uint64_t total_ = 0;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_DEVICEARENAS_H
