// The kernels of calculate_per_token_loss (Megatron-Core's per-token loss
// normalization): a micro-batch's token count and the scaling of fp32
// values by a scalar the device computed. CPU references: the num_tokens and
// scale_by kernels of runtime/cpu/CpuExecutor.cpp.
#ifndef MT_RUNTIME_CUDA_TOKENSCALING_H
#define MT_RUNTIME_CUDA_TOKENSCALING_H

#include "runtime/support/Status.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mt::cuda {

/// *count = Σ mask[i] over n elements (fp32 mask, summed in fp64 by one
/// block in a fixed order: deterministic), on the device.
Status numTokens(const float *mask, float *count, int64_t n, cudaStream_t stream);

/// y = x · *factor, or with `inverse` x / *factor (0 where *factor is 0),
/// over n fp32 elements; factor is read on the device; y may alias x.
Status scaleBy(const float *x, const float *factor, bool inverse, float *y, int64_t n,
               cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_TOKENSCALING_H
