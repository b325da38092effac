// The local steps of the vocab-parallel cross-entropy on the GPU (bf16
// logits of this rank's vocabulary slice, fp32 rows), between the plan's
// all_reduce instructions. CPU reference: runtime/cpu/VocabParallel.h.
#ifndef MT_RUNTIME_CUDA_VOCABPARALLEL_H
#define MT_RUNTIME_CUDA_VOCABPARALLEL_H

#include "runtime/kernels/VocabParallel.h"
#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// This rank's slice of the logits (runtime/kernels/VocabParallel.h).
using VocabSlice = kernels::VocabSlice;

/// rowMax[t] = max over the slice's columns of logits[t] (-inf when none).
Status vocabParallelLogitsMax(const bf16 *logits, float *rowMax, const VocabSlice &s,
                              cudaStream_t stream);

/// predicted[t] = logits[t, label - vocabStart] when the slice holds the
/// label, else 0; sumExp[t] = Σ over the slice's columns of
/// exp(logits[t] - rowMax[t]), rowMax the full row's maximum.
Status vocabParallelPredictedLogits(const bf16 *logits, const float *rowMax,
                                    const int32_t *labels, float *predicted, float *sumExp,
                                    const VocabSlice &s, cudaStream_t stream);

/// *loss = Σ mask · (log(sumExp) + rowMax - predicted) / Σ mask (0 when
/// Σ mask is 0), in fp64, by one block in a fixed order.
Status crossEntropyLoss(const float *rowMax, const float *predicted, const float *sumExp,
                        const float *mask, float *loss, int64_t tokens, cudaStream_t stream);

/// dlogits[t, v] = *dloss · mask[t] / Σmask · (exp(logits[t, v] - rowMax[t]) /
/// sumExp[t] - [vocabStart + v == label]) on the slice's columns, 0 on its
/// padding columns (written, not added; dlogits may alias logits: each
/// element is read, then written, by one thread). `workspace`: one float.
Status vocabParallelCrossEntropyBackward(const bf16 *logits, const int32_t *labels,
                                         const float *mask, const float *rowMax,
                                         const float *sumExp, const float *dloss,
                                         bf16 *dlogits, float *workspace, const VocabSlice &s,
                                         cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_VOCABPARALLEL_H
