// Masked mean token cross-entropy from bf16 logits, fp32 math: the forward
// reads each row once (online log-sum-exp over 16-byte chunks, never an fp32
// copy of the logits), the backward once more to write bf16 dlogits. CPU
// reference: runtime/cpu/Loss.h.
#ifndef MT_RUNTIME_CUDA_CROSSENTROPY_H
#define MT_RUNTIME_CUDA_CROSSENTROPY_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// logits [tokens, vocab]; labels [tokens] in [0, vocab) where mask != 0
/// (not read where mask == 0); mask [tokens] (0/1 weights).
/// Writes, all on the device:
///   lse [tokens]    log-sum-exp of each row (natural log), for the backward
///   loss (1 float)  sum_t mask[t] (lse[t] - logits[t, labels[t]]) / maskTotal,
///                   0 when every token is masked (summed in fp64, in a
///                   fixed order: deterministic)
///   maskTotal (1 float) sum_t mask[t]
Status crossEntropyForward(const bf16 *logits, const int32_t *labels,
                           const float *mask, float *lse, float *loss,
                           float *maskTotal, int64_t tokens, int64_t vocab,
                           cudaStream_t stream);

/// dlogits = *dloss * mask[t] / maskTotal * (softmax(logits[t]) - onehot),
/// WRITTEN in bf16; dloss (the gradient seed) is read on the device, so a
/// captured step needs no host value (rows of masked tokens become 0), from the forward's lse
/// and maskTotal. dlogits may alias logits (each element is read, then
/// written, by one thread), which saves the second [tokens, vocab] buffer.
Status crossEntropyBackward(const bf16 *logits, const int32_t *labels,
                            const float *mask, const float *lse,
                            const float *maskTotal, const float *dloss, bf16 *dlogits,
                            int64_t tokens, int64_t vocab, cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_CROSSENTROPY_H
