// Token count (one block, fp64, fixed order) and scaling by a device scalar
// (grid-stride).
#include "runtime/cuda/TokenScaling.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/GridStride.cuh"

namespace mt::cuda {
namespace {

constexpr int kCountThreads = 256;

__global__ void __launch_bounds__(kCountThreads)
    numTokensKernel(const float *mask, float *count, int64_t n) {
  __shared__ double partial[kCountThreads];
  double sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += kCountThreads)
    sum += double(mask[i]);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kCountThreads / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride)
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    *count = float(partial[0]);
}

__global__ void scaleByKernel(const float *x, const float *factor, bool inverse, float *y,
                              int64_t n) {
  const float f = *factor;
  for (int64_t i = grid::groupStart<1>(); i < n; i += grid::groupStride<1>())
    y[i] = !inverse ? x[i] * f : f == 0.0f ? 0.0f : x[i] / f;
}

} // namespace

Status numTokens(const float *mask, float *count, int64_t n, cudaStream_t stream) {
  numTokensKernel<<<1, kCountThreads, 0, stream>>>(mask, count, n);
  MT_CUDA_CHECK_LAUNCH("num_tokens");
  return Status::ok();
}

Status scaleBy(const float *x, const float *factor, bool inverse, float *y, int64_t n,
               cudaStream_t stream) {
  if (n == 0)
    return Status::ok();
  scaleByKernel<<<grid::gridFor(n), grid::kThreads, 0, stream>>>(x, factor, inverse, y, n);
  MT_CUDA_CHECK_LAUNCH("scale_by");
  return Status::ok();
}

} // namespace mt::cuda
