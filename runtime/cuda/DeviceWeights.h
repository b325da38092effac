// The weights between the host and the GPU: the host's PARAMETERS arena
// holds every fp32 weight whole (what initialization, --load and --resume
// write and saves and exports read); the GPU holds the fp32 weights its
// layout keeps (all of them, the distributed optimizer's master shards
// instead of their buckets, or none under optimizer_offload) and the bf16
// shadows the layers read (runtime/cuda/DeviceArenas.h).
#ifndef MT_RUNTIME_CUDA_DEVICEWEIGHTS_H
#define MT_RUNTIME_CUDA_DEVICEWEIGHTS_H

#include "runtime/cuda/DeviceArenas.h"
#include "runtime/exec/Memory.h"
#include "runtime/exec/RankContext.h"

namespace mt::cuda {

/// The host's weights onto the GPU on `stream`: the fp32 weights it holds
/// (of a master-sharded bucket the rank's slice: a checkpoint of any dp
/// resumes resharded) and every bf16 shadow, cast on the device from its
/// fp32 copy or, where the GPU has none, from the host's through a chunk
/// of device memory allocated for the call. Returns once enqueued work
/// that reuses a chunk is done; errors name the failing CUDA call.
Status writeWeights(const plan::Plan &plan, const exec::HostMemory &host,
                    const DeviceArenas &arenas, cudaStream_t stream);

/// The GPU's fp32 weights into the host's PARAMETERS arena, every weight
/// whole: the held ones copied, then each master-sharded bucket all-gathered
/// over its axis from the ranks' shards (collective: every rank of those
/// axes calls it, as saves and exports do). Synchronizes `stream`. An
/// error names the bucket and the axis when `rank` has no group of the
/// bucket's parts on it.
Status readWeights(const plan::Plan &plan, exec::HostMemory &host, const DeviceArenas &arenas,
                   const exec::RankContext *rank, cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_DEVICEWEIGHTS_H
