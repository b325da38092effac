// How the CUDA backend lays a plan out in GPU memory, in numbers the
// compiler can print (`mtc compile --explain`) and the runtime allocates
// (runtime/cuda/DeviceArenas.h): bf16 activations at half their planned
// offsets, the activations that stay 32-bit in an arena of their own, and a
// bf16 shadow of every fp32 parameter. The distributed optimizer's shards
// live in place, in the rank's slice of their bucket, as Megatron-Core's do.
// The host arenas of optimizer_offload and grad_offload (HOST_*) are not on
// the device; grad_offload's STAGED_GRADIENTS arena is, in fp32.
#ifndef MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H
#define MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <map>
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
  uint64_t weights = 0, shadows = 0, gradients = 0, optimizer = 0, activations = 0,
           wideActivations = 0, inputs = 0, outputs = 0;
  /// grad_offload: the device copies of the host gradients that programs
  /// use (fp32, offsets planned from liveness).
  uint64_t stagedGradients = 0;
  /// fp32WeightsOnHost: device memory for one updated fp32 weight on its
  /// way into the bf16 copy (the largest copy_to_device of weights).
  uint64_t weightStaging = 0;
  /// Offset of each wide activation in its arena.
  std::map<uint32_t, uint64_t> wideOffsets;
  std::map<uint32_t, ShardView> shardViews;
  /// Bytes the shard views would take apart from their buckets (not
  /// allocated: not in total()).
  uint64_t shardsInPlace = 0;
  /// Communication buffers: the rank-major blocks the largest all_gather or
  /// reduce_scatter along a middle dimension (outer > 1: sequence
  /// parallelism's), or the send and receive blocks of the largest
  /// all_to_all (cp_comm_type a2a), stage in the kernel workspace, in the dtype the GPU
  /// keeps its operand in (runtime/cuda/LowerCollectives.cpp). The
  /// workspace is shared with kernels: the runtime allocates at least this.
  uint64_t collectiveStaging = 0;
  uint64_t total() const {
    return weights + weightStaging + shadows + gradients + stagedGradients + optimizer +
           activations + wideActivations + inputs + outputs + collectiveStaging;
  }
};
DeviceFootprint deviceFootprint(const Plan &plan);

/// Which kernels run an attention instruction on the CUDA backend under
/// mtrun's defaults (MT_ATTENTION_BACKEND=auto, MT_ATTENTION_DETERMINISTIC=1),
/// as runtime/cuda/AttentionBackend.cpp planAttention chooses: cuDNN's fused
/// attention, or the mtc kernels because cuDNN's workspace is over
/// 1/16 of the device's memory, because documents are packed in a row
/// (position ids) or because of context parallelism (a cp slice's mask,
/// ring attention's blocks), which cuDNN's kernels do not take.
enum class AttentionKernels { None, Cudnn, MtcOverLimit, MtcDocuments, MtcContextParallel };

/// Attention's need of the CUDA backend's kernel workspace (one buffer that
/// every kernel shares, as large as the largest need): the largest over the
/// plan's attention, attention_grad and attention_block_grad instructions,
/// the kernels that run it and its shape (query rows: seq; key rows: kvSeq).
struct AttentionWorkspace {
  uint64_t bytes = 0;
  AttentionKernels kernels = AttentionKernels::None;
  /// What cuDNN's deterministic backward would need for that shape.
  uint64_t cudnnBytes = 0;
  int64_t batch = 0, heads = 0, seq = 0, kvSeq = 0, headDim = 0;
};
/// On a device with `deviceBytes` of memory (cudaMemGetInfo's total).
AttentionWorkspace attentionWorkspace(const Plan &plan, uint64_t deviceBytes);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H
