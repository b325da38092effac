// Grid-stride launches shared by the element-wise kernels: the launch
// shape, each thread's group of V elements, and the choice between a
// vectorized kernel and its scalar fallback.
#ifndef MT_RUNTIME_CUDA_GRIDSTRIDE_CUH
#define MT_RUNTIME_CUDA_GRIDSTRIDE_CUH

#include "runtime/cuda/Check.h"

#include <algorithm>
#include <cstdint>

namespace mt::cuda::grid {

constexpr int kThreads = 256;
/// Enough resident blocks to fill an H100 several times over; grid-stride
/// loops cover the rest.
constexpr int64_t kMaxBlocks = 4096;

inline int64_t gridFor(int64_t work) {
  return std::max<int64_t>(1, std::min(kMaxBlocks, (work + kThreads - 1) / kThreads));
}

/// First element of this thread's V-wide group, and the grid's stride.
template <int V> __device__ __forceinline__ int64_t groupStart() {
  return (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V;
}
template <int V> __device__ __forceinline__ int64_t groupStride() {
  return int64_t(gridDim.x) * blockDim.x * V;
}

/// Launches kernelV over groups of V when n splits into 16-byte-aligned
/// groups, else kernel1 over single elements; args convert to the kernel's.
template <int V, typename... Params, typename... Args>
Status launchVectorized(bool vectorizable, int64_t n, void (*kernelV)(Params...),
                        void (*kernel1)(Params...), cudaStream_t stream,
                        Args... args) {
  if (n == 0)
    return Status::ok();
  if (vectorizable && n % V == 0)
    kernelV<<<gridFor(n / V), kThreads, 0, stream>>>(args...);
  else
    kernel1<<<gridFor(n), kThreads, 0, stream>>>(args...);
  MT_CUDA_CHECK_LAUNCH("element-wise kernel");
  return Status::ok();
}

} // namespace mt::cuda::grid

#endif // MT_RUNTIME_CUDA_GRIDSTRIDE_CUH
