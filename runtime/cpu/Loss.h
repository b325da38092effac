// CPU reference kernels of the masked token cross-entropy.
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_LOSS_H
#define MT_RUNTIME_CPU_LOSS_H

#include <cstdint>

namespace mt::cpu {

/// sum_t mask[t] in fp64: the loss's denominator, shared by the vocab-parallel
/// kernels so that every layout divides by the same count.
double maskTotal(const float *mask, int64_t tokens);

/// logits [tokens, vocab], labels [tokens] in [0, vocab), mask [tokens] (0/1).
/// Returns sum_t mask[t] * (logsumexp(logits[t]) - logits[t, labels[t]]) /
/// sum_t mask[t], and 0 when no token is unmasked. Accumulates in fp64.
float crossEntropyForward(const float *logits, const int32_t *labels,
                          const float *mask, int64_t tokens, int64_t vocab);
/// dlogits += dloss * mask[t] / sum(mask) * (softmax(logits[t]) - onehot).
void crossEntropyBackward(const float *logits, const int32_t *labels,
                          const float *mask, float dloss, float *dlogits,
                          int64_t tokens, int64_t vocab);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_LOSS_H
