// Weights to and from the GPU: fp32 copies, bf16 shadows, master shards, or
// shadows and the masters' low bits.
#include "runtime/cuda/DeviceWeights.h"

#include "runtime/cuda/AdamW.h"
#include "runtime/cuda/Check.h"
#include "runtime/cuda/Elementwise.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <memory>

namespace mt::cuda {
namespace {

/// Casts `total` host fp32 values into `shadow` on the GPU through
/// `staging` (`chunk` fp32 elements of device memory), chunk by chunk.
Status castFromHost(const float *host, bf16 *shadow, int64_t total, float *staging,
                    int64_t chunk, cudaStream_t stream) {
  for (int64_t begin = 0; begin < total; begin += chunk) {
    const int64_t n = std::min(chunk, total - begin);
    MT_CUDA_CHECK(cudaMemcpyAsync(staging, host + begin, size_t(n) * sizeof(float),
                                  cudaMemcpyHostToDevice, stream));
    MT_CUDA_RETURN_IF_ERROR(castFloatToBf16(staging, shadow + begin, n, stream));
    MT_CUDA_CHECK(cudaStreamSynchronize(stream)); // the chunk is reused
  }
  return Status::ok();
}

/// Device memory the shadows are refreshed through from the host's whole
/// weights when the GPU holds master shards (initialization, --load,
/// --resume; freed before the first step): 64 MiB.
constexpr int64_t kShadowStagingElements = int64_t(16) << 20;

Status refreshShadows(const plan::Plan &plan, const exec::HostMemory &host,
                      const DeviceArenas &arenas, cudaStream_t stream) {
  const std::byte *weights = arenas.arena(plan::PARAMETERS);
  if (weights && arenas.masterShards().empty())
    return castFloatToBf16(reinterpret_cast<const float *>(weights), arenas.parameterShadows(),
                           arenas.parameterElements(), stream);
  // Master shards (plan::MasterShard): the GPU holds no bucket's whole fp32
  // weights; the host's PARAMETERS arena does, in the shadows' layout.
  // optimizer_offload (plan::fp32WeightsOnHost): each parameter's host fp32
  // weights (its master, plan::hostWeightsAreMasters), in chunks of the
  // staging memory --explain counts (the largest weight).
  const int64_t total = arenas.parameterElements();
  const int64_t chunk = weights ? std::min(kShadowStagingElements, total)
                                : int64_t(plan::deviceFootprint(plan).weightStaging / 4);
  // param_offload: no PARAMETERS arena and no shadows; each program stages
  // the weights it uses, fp32 and bf16, from the host.
  if (chunk == 0 || !arenas.parameterShadows())
    return Status::ok();
  float *staging = nullptr;
  MT_CUDA_CHECK(cudaMalloc(&staging, size_t(chunk) * sizeof(float)));
  std::unique_ptr<float, decltype(&cudaFree)> owner(staging, &cudaFree);
  if (weights)
    return castFromHost(reinterpret_cast<const float *>(host.arena(plan::PARAMETERS)),
                        arenas.parameterShadows(), total, staging, chunk, stream);
  for (const plan::Parameter &p : plan.parameters())
    MT_CUDA_RETURN_IF_ERROR(castFromHost(host.f32(p.param_buffer()),
                                         arenas.bf16Data(p.param_buffer()),
                                         host.elements(p.param_buffer()), staging, chunk, stream));
  return Status::ok();
}

} // namespace

Status writeWeights(const plan::Plan &plan, const exec::HostMemory &host,
                    const DeviceArenas &arenas, cudaStream_t stream) {
  if (uint16_t *remainders = arenas.parameterRemainders()) {
    std::byte *weights = host.arena(plan::PARAMETERS);
    MT_CUDA_RETURN_IF_ERROR(splitMastersToDevice(reinterpret_cast<const float *>(weights),
                                                 arenas.parameterShadows(), remainders,
                                                 arenas.parameterElements(), stream));
    MT_CUDA_RETURN_IF_ERROR(arenas.copyRouterWeights(weights, true, stream));
    MT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return Status::ok();
  }
  MT_CUDA_RETURN_IF_ERROR(arenas.copyWeights(host.arena(plan::PARAMETERS), true, stream));
  return refreshShadows(plan, host, arenas, stream);
}

Status readWeights(const plan::Plan &plan, exec::HostMemory &host, const DeviceArenas &arenas,
                   const exec::RankContext *rank, cudaStream_t stream) {
  auto *weights = host.arena(plan::PARAMETERS);
  if (const uint16_t *remainders = arenas.parameterRemainders()) {
    // The routers' weights (updated in fp32, their remainders unused)
    // overwrite what the join made of them.
    MT_CUDA_RETURN_IF_ERROR(joinMastersFromDevice(arenas.parameterShadows(), remainders,
                                                  reinterpret_cast<float *>(weights),
                                                  arenas.parameterElements(), stream));
    MT_CUDA_RETURN_IF_ERROR(arenas.copyRouterWeights(weights, false, stream));
    MT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return Status::ok();
  }
  MT_CUDA_RETURN_IF_ERROR(arenas.copyWeights(weights, false, stream));
  MT_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (const auto &[view, m] : arenas.masterShards()) {
    const plan::Bucket *bucket = nullptr;
    for (const plan::Bucket &b : plan.buckets())
      if (b.param_buffer() == m.bucket)
        bucket = &b;
    comm::Communicator *group = rank && bucket ? rank->group(bucket->axis()) : nullptr;
    if (!group || !weights || group->size() != bucket->parts())
      return Status::error("the fp32 master weights of '" + plan.buffers(m.bucket).name() +
                           "' are sharded " + std::to_string(bucket ? bucket->parts() : 0) +
                           " ways over mesh axis '" + (bucket ? bucket->axis() : "?") +
                           "', which this job has " +
                           std::to_string(group ? group->size() : 1) + " ranks on");
    // copyWeights put the rank's shard at its slice of the bucket.
    const auto n = int64_t(m.bytes / sizeof(float));
    float *whole = reinterpret_cast<float *>(weights + m.planOffset);
    if (Status s = group->allGatherHost(whole + arenas.shardIndex(view) * n, whole, size_t(n));
        !s)
      return s;
  }
  return Status::ok();
}

} // namespace mt::cuda
