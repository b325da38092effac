// How the CUDA backend lays a plan out in GPU memory, in numbers the
// compiler can print (`mtc compile --explain`) and the runtime allocates
// (runtime/cuda/DeviceArenas.h): bf16 activations at half their planned
// offsets, the activations that stay 32-bit in an arena of their own, and a
// bf16 shadow of every fp32 parameter. The distributed optimizer's gradient
// shards live in place, in the rank's slice of their bucket, and its fp32
// master weights are the rank's shard alone (MasterShard), as Megatron-Core's.
// The host arenas of optimizer_offload, grad_offload and param_offload
// (HOST_*) are not on the device; grad_offload's STAGED_GRADIENTS arena is,
// in fp32, and param_offload's STAGED_WEIGHTS, in fp32 with a bf16 copy.
#ifndef MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H
#define MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace mt::plan {

/// Alignment of each buffer in the 32-bit activation arena.
inline constexpr uint64_t kWideAlignment = 256;

/// A buffer of the distributed optimizer that is rank r's shard of a bucket
/// (the reduce-scatter of its gradients, the all-slice of its weights): the
/// CUDA backend stores it at element r·n of `bucket` (n: the shard's
/// elements, r: the rank's coordinate on `axis`), where NCCL reduces and
/// gathers in place, instead of in an arena of its own. The CPU backend
/// keeps the plan's copy in its activation arena.
struct ShardView {
  uint32_t bucket = 0; // the bucket's param_buffer or grad_buffer
  std::string axis;
  int64_t parts = 1;
};

/// The shard views of `plan`'s buckets: the outputs of reduce_scatter and
/// all_slice instructions along the first dimension (outer 1) whose input
/// is a bucket's gradient or weight buffer, by buffer id.
std::map<uint32_t, ShardView> shardViews(const Plan &plan);

/// A distributed-optimizer weight bucket whose fp32 master weights the CUDA
/// backend keeps only as the rank's shard, as Megatron-Core's
/// DistributedOptimizer keeps its main params (distrib_optimizer.py): the
/// shard view AdamW updates (the all_slice's output) is the fp32 master,
/// AdamW writes its bf16 slice of the bucket's shadow, and the all_gather
/// of the plan gathers the bf16 shadow in place. The bucket's whole fp32
/// range of PARAMETERS is not on the device. The CPU backend, which
/// computes from the fp32 weights, keeps the plan's layout.
struct MasterShard {
  uint32_t bucket = 0; // the bucket's param_buffer
  uint64_t offset = 0; // bytes into the device's master shards (64-byte aligned)
  uint64_t bytes = 0;  // the shard's: the bucket's / parts
  /// The bucket's range of the PARAMETERS arena that the device leaves out:
  /// from its offset to the next 64-byte boundary after it.
  uint64_t planOffset = 0, planBytes = 0;
};

/// The master shards of `plan`, by shard view id: buckets split over more
/// than one rank (`parts` > 1) whose weight shard is a shard view written
/// back by an all_gather (outer 1) of the whole bucket, without
/// optimizer_offload (its masters are on the host) and without pipeline
/// parallelism (stages' buckets share offsets), and none of whose weights a
/// MoE router reads (it reads them in fp32). Their `offset`s follow the
/// buckets' order in the arena.
std::map<uint32_t, MasterShard> masterShards(const Plan &plan);

/// The ACTIVATIONS buffers kept in their planned dtype rather than bf16:
/// non-fp32 ones (indices), one-element ones (the optimizer's scalars), the
/// attention's log-sum-exp (read by its backward), the row statistics of
/// the vocab-parallel cross-entropy (row maxima, label logits, sums of exp)
/// and norm weight gradients held as activations (tensor parallelism sums
/// them over tp before they reach the fp32 main gradient); shard views
/// are not among them.
std::set<uint32_t> wideActivations(const Plan &plan);

/// Whether the CUDA backend keeps no fp32 weights on the GPU, only their
/// bf16 copy, as Megatron-Core's optimizer CPU offload keeps bf16 parameters
/// on the GPU and the fp32 masters on the host: optimizer_offload gives
/// every trainable parameter a host master (which AdamW updates and
/// copy_to_device casts into the bf16 copy), without the distributed
/// optimizer (whose weight all-gathers are fp32) and without MoE routers
/// (which read their weights in fp32).
bool fp32WeightsOnHost(const Plan &plan);

/// Whether the CUDA backend keeps each fp32 master weight as its bf16 copy
/// plus the master's low 16 bits (runtime/kernels/MasterRemainders.h;
/// Megatron-Core's store_param_remainders): 4 bytes a weight on the device
/// instead of 6, the master exact. Where the GPU holds every fp32 weight
/// and only AdamW (and MoE routers, whose weights keep an fp32 copy:
/// DeviceFootprint::routerWeights) reads or writes them in fp32: not with
/// the distributed optimizer (fp32 master shards) or the offloads (fp32
/// weights on the host), nor where a collective, pipeline transfer or host
/// copy moves a weight.
bool masterRemainders(const Plan &plan);

/// Whether the plan was compiled with param_offload: its weights are a
/// non-empty HOST_WEIGHTS arena, on every backend.
bool weightsOffloaded(const Plan &plan);

/// Whether arenas of `kind` are in host memory on every backend (pinned on
/// CUDA): optimizer_offload's, grad_offload's and param_offload's HOST_*
/// arenas.
bool isHostArena(ArenaKind kind);

/// Whether buffers of arena `kind` take offsets from their liveness
/// (temporaries: ACTIVATIONS, STAGED_GRADIENTS, HOST_STAGED_GRADIENTS,
/// STAGED_WEIGHTS)
/// rather than one each for the whole run.
bool isLivenessPlanned(ArenaKind kind);

/// Whether the CUDA backend's host memory keeps no fp32 weights of its own:
/// fp32WeightsOnHost, and every parameter has a master of its size, which
/// saves, exports and initialization read and write in the weights' place
/// (exec::HostMemory::data), so that the host holds the weights once. Not
/// with param_offload: its weights are a HOST_WEIGHTS arena of their own.
bool hostWeightsAreMasters(const Plan &plan);

/// Bytes the CUDA backend allocates for one rank's arenas.
struct DeviceFootprint {
  /// masterRemainders: `weights` is 0 and `remainders` holds the 16 low
  /// bits of every fp32 weight, laid out as the shadows; the weights a MoE
  /// router reads (in fp32) keep their fp32 master whole, each at its offset
  /// in `routerWeightBytes` bytes (by param_buffer id; 64-byte aligned).
  uint64_t remainders = 0, routerWeightBytes = 0;
  std::map<uint32_t, uint64_t> routerWeights;
  uint64_t weights = 0, shadows = 0, gradients = 0, optimizer = 0, activations = 0,
           wideActivations = 0, inputs = 0, outputs = 0;
  /// grad_offload: the device copies of the host gradients that programs
  /// use (fp32, offsets planned from liveness).
  uint64_t stagedGradients = 0;
  /// param_offload: the device copies of the host weights that programs use
  /// (fp32, offsets planned from liveness: the copies from the host land
  /// there, AdamW updates them) and their bf16 copy at half the offsets
  /// (what the layers read).
  uint64_t stagedWeights = 0, stagedWeightShadows = 0;
  /// fp32WeightsOnHost: device memory for one updated fp32 weight on its
  /// way into the bf16 copy (the largest copy_to_device of weights).
  uint64_t weightStaging = 0;
  /// Offset of each wide activation in its arena.
  std::map<uint32_t, uint64_t> wideOffsets;
  std::map<uint32_t, ShardView> shardViews;
  /// Bytes the shard views would take apart from their buckets (not
  /// allocated: not in total()); not the master shards'.
  uint64_t shardsInPlace = 0;
  /// masterShards: the fp32 shards, in `weights` after the PARAMETERS
  /// arena's other buffers (`weightsBeforeShards` bytes: the arena less its
  /// master-sharded buckets' ranges, `bucketsNotHeld` bytes).
  std::map<uint32_t, MasterShard> masterShards;
  uint64_t masterShardBytes = 0, bucketsNotHeld = 0, weightsBeforeShards = 0;
  /// Communication buffers: the rank-major blocks the largest all_gather or
  /// reduce_scatter along a middle dimension (outer > 1: sequence
  /// parallelism's), or the send and receive blocks of the largest
  /// all_to_all (cp_comm_type a2a), stage in the kernel workspace, in the dtype the GPU
  /// keeps its operand in (runtime/cuda/LowerCollectives.cpp). The
  /// workspace is shared with kernels: the runtime allocates at least this.
  uint64_t collectiveStaging = 0;
  uint64_t total() const {
    return weights + remainders + routerWeightBytes + weightStaging + shadows + stagedWeights +
           stagedWeightShadows + gradients + stagedGradients + optimizer + activations +
           wideActivations + inputs + outputs + collectiveStaging;
  }
};
DeviceFootprint deviceFootprint(const Plan &plan);

/// Where the CUDA backend keeps the fp32 bytes [planOffset, planOffset +
/// bytes) of the PARAMETERS arena: their offset in its device arena (the
/// plan's, less the master-sharded buckets' ranges before them); none when
/// they lie in such a range (only the rank's shard of it is on the device).
std::optional<uint64_t> deviceWeightOffset(const DeviceFootprint &f, uint64_t planOffset,
                                           uint64_t bytes);

/// Which kernels run an attention instruction on the CUDA backend under
/// mtrun's defaults (MT_ATTENTION_BACKEND=auto, the backward deterministic as
/// the plan's deterministic_mode says),
/// as runtime/cuda/AttentionBackend.cpp planAttention chooses: cuDNN's fused
/// attention, or the mtc kernels because cuDNN's workspace is over
/// 1/16 of the device's memory, because documents are packed in a row
/// (position ids) or because of context parallelism (a cp slice's mask,
/// ring attention's blocks), which cuDNN's kernels do not take.
enum class AttentionKernels { None, Cudnn, MtcOverLimit, MtcDocuments, MtcContextParallel };

/// Attention's need of kernel workspace on the CUDA backend. A backward
/// instruction with a planned workspace (Instruction.workspace, in the
/// activation arena, live for it alone) that holds its need uses it; every
/// other need goes to the backend's shared kernel workspace, one buffer as
/// large as the largest. Of one instruction (attentionWorkspaceOf): its
/// need `bytes`; of a plan (attentionWorkspace): `bytes` is the largest need
/// left to the shared workspace, `plannedBytes` the largest that planned
/// workspaces take and `backwardShared` whether any backward's need is left
/// to the shared workspace (cuDNN's forward always is: 256 bytes); the other
/// fields those of the instruction with the largest need (query rows: seq;
/// key rows: kvSeq).
struct AttentionWorkspace {
  uint64_t bytes = 0;
  uint64_t plannedBytes = 0;
  bool backwardShared = false;
  AttentionKernels kernels = AttentionKernels::None;
  /// What cuDNN's backward would need for that shape (deterministic as the
  /// plan's deterministic_mode).
  uint64_t cudnnBytes = 0;
  bool deterministic = false; // the plan's deterministic_mode
  int64_t batch = 0, heads = 0, seq = 0, kvSeq = 0, headDim = 0;
};
/// An instruction's need of the CUDA backend's shared kernel workspace, as
/// its lowering asks for it (runtime/plan/KernelWorkspace.h): the backward
/// of the norms and the embedding, and the mixture-of-experts kernels
/// (router, permutation, the experts' MLP on mtrun's default library GEMMs
/// (MT_MOE_GEMM=auto), the expert-parallel counts and chunk sort); 0 for
/// other instructions. Attention's is attentionWorkspaceOf's, the
/// collectives' staging DeviceFootprint::collectiveStaging; sum_squares'
/// partials (4 bytes per started 64 Ki elements of each gradient) are not
/// counted.
uint64_t kernelWorkspaceOf(const Instruction &instr);
/// The largest kernelWorkspaceOf over the plan's instructions.
uint64_t kernelWorkspace(const Plan &plan);

/// An attention, attention_grad or attention_block_grad instruction's need
/// on a device with `deviceBytes` of memory (cudaMemGetInfo's total); other
/// instructions: kernels None.
AttentionWorkspace attentionWorkspaceOf(const Plan &plan, const Instruction &instr,
                                        uint64_t deviceBytes);
/// Over the plan's instructions, on a device with `deviceBytes` of memory.
AttentionWorkspace attentionWorkspace(const Plan &plan, uint64_t deviceBytes);

/// A planned workspace starts where the CUDA backend's bf16 layout puts it
/// (32-byte aligned: half a 64-byte planned offset); the backend starts it
/// at the next multiple of this, as cudaMalloc aligns its own, so the
/// compiler adds as much to its size.
inline constexpr uint64_t kPlannedWorkspaceAlignment = 256;
/// The device bytes the compiler plans for a predicted need: 5% more (what
/// cuDNN asks for at run time may exceed the formula by up to that much:
/// the gpu1 AttentionBackendTest holds it to that; on the H200 it was 256
/// bytes over) and room to align the start.
inline uint64_t plannedWorkspaceBytes(uint64_t need) {
  return need + need / 20 + kPlannedWorkspaceAlignment;
}
/// Bytes a planned workspace buffer holds on the CUDA backend, which keeps
/// the F32 activation buffer in bf16 (2 per element), from its aligned
/// start on.
inline uint64_t plannedWorkspaceDeviceBytes(const Buffer &b) {
  const uint64_t bytes = b.size_bytes() / 2;
  return bytes > kPlannedWorkspaceAlignment ? bytes - kPlannedWorkspaceAlignment : 0;
}

/// The device memory the compiler plans for where it is given none (an
/// H200's, as cudaMemGetInfo reports it): attention's choice of kernels,
/// hence the size of its planned workspaces, follows from it.
inline constexpr uint64_t kAssumedDeviceBytes = uint64_t(143165) << 20; // 139.8 GiB

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H
