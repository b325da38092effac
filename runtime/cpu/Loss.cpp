// CPU reference kernels of the masked token cross-entropy (mean over the
// unmasked tokens). Conventions: runtime/cpu/Kernels.md.
#include "runtime/cpu/Loss.h"

#include <cmath>
#include <vector>

namespace mt::cpu {

namespace {

/// Below this many logits the kernels run on one thread.
constexpr int64_t kParallelMin = 1 << 14;

struct RowSoftmax {
  double max, sumExp; // softmax(l)[v] = exp(l[v] - max) / sumExp
};

/// Max-subtracted so that no exp overflows, summed in fp64.
RowSoftmax rowSoftmax(const float *row, int64_t vocab) {
  double max = row[0];
  for (int64_t v = 1; v < vocab; ++v)
    max = row[v] > max ? row[v] : max;
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v)
    sum += std::exp(row[v] - max);
  return {max, sum};
}

} // namespace

double maskTotal(const float *mask, int64_t tokens) {
  double total = 0.0;
  for (int64_t t = 0; t < tokens; ++t)
    total += mask[t];
  return total;
}

float crossEntropyForward(const float *logits, const int32_t *labels,
                          const float *mask, int64_t tokens, int64_t vocab) {
  const double total = maskTotal(mask, tokens);
  if (total == 0.0)
    return 0.0f;
  // Per-token losses first, then summed in token order: the result does not
  // depend on how the tokens were split over threads.
  std::vector<double> perToken(tokens, 0.0);
#pragma omp parallel for schedule(static) if (tokens * vocab >= kParallelMin)
  for (int64_t t = 0; t < tokens; ++t) {
    if (mask[t] == 0.0f)
      continue;
    const float *row = logits + t * vocab;
    const RowSoftmax s = rowSoftmax(row, vocab);
    const double lse = s.max + std::log(s.sumExp);
    perToken[t] = mask[t] * (lse - row[labels[t]]);
  }
  double sum = 0.0;
  for (int64_t t = 0; t < tokens; ++t)
    sum += perToken[t];
  return static_cast<float>(sum / total);
}

void crossEntropyBackward(const float *logits, const int32_t *labels,
                          const float *mask, float dloss, float *dlogits,
                          int64_t tokens, int64_t vocab) {
  const double total = maskTotal(mask, tokens);
  if (total == 0.0)
    return; // the loss is the constant 0
  const double scale = dloss / total;
#pragma omp parallel for schedule(static) if (tokens * vocab >= kParallelMin)
  for (int64_t t = 0; t < tokens; ++t) {
    if (mask[t] == 0.0f)
      continue;
    const float *row = logits + t * vocab;
    float *grad = dlogits + t * vocab;
    const RowSoftmax s = rowSoftmax(row, vocab);
    const double rowScale = scale * mask[t];
    const double invSum = 1.0 / s.sumExp;
    const int64_t label = labels[t];
    // softmax - onehot is formed in fp64 and added once: at the label of a
    // confident row, p - 1 cancels and must not round through the buffer.
    for (int64_t v = 0; v < vocab; ++v) {
      const double p = std::exp(row[v] - s.max) * invSum;
      grad[v] += static_cast<float>(rowScale * (v == label ? p - 1.0 : p));
    }
  }
}

} // namespace mt::cpu
