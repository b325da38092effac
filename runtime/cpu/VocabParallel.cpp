// Vocab-parallel embedding and cross-entropy on the CPU.
#include "runtime/cpu/VocabParallel.h"

#include "runtime/cpu/Loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mt::cpu {
namespace {

bool owns(int32_t id, int64_t start, int64_t local) {
  return id >= start && id < start + local;
}

} // namespace

void embeddingForwardShard(const int32_t *ids, const float *table, float *y,
                           int64_t tokens, int64_t hidden, int64_t vocabStart,
                           int64_t localVocab) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    float *out = y + t * hidden;
    if (owns(ids[t], vocabStart, localVocab))
      std::memcpy(out, table + (ids[t] - vocabStart) * hidden, hidden * sizeof(float));
    else
      std::memset(out, 0, hidden * sizeof(float));
  }
}

void embeddingBackwardShard(const int32_t *ids, const float *dy, float *dtable,
                            int64_t tokens, int64_t hidden, int64_t vocabStart,
                            int64_t localVocab) {
  // Columns split over threads, tokens in order: deterministic sums.
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < hidden; ++h)
    for (int64_t t = 0; t < tokens; ++t)
      if (owns(ids[t], vocabStart, localVocab))
        dtable[(ids[t] - vocabStart) * hidden + h] += dy[t * hidden + h];
}

void vocabParallelLogitsMax(const float *logits, float *rowMax, const VocabShard &s) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    const float *row = logits + t * s.localVocab;
    float m = -INFINITY;
    for (int64_t v = 0; v < s.columns; ++v)
      m = std::max(m, row[v]);
    rowMax[t] = m;
  }
}

void vocabParallelPredictedLogits(const float *logits, const float *rowMax,
                                  const int32_t *labels, float *predicted, float *sumExp,
                                  const VocabShard &s) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    const float *row = logits + t * s.localVocab;
    predicted[t] = owns(labels[t], s.vocabStart, s.columns) ? row[labels[t] - s.vocabStart] : 0.0f;
    double sum = 0;
    for (int64_t v = 0; v < s.columns; ++v)
      sum += std::exp(double(row[v]) - double(rowMax[t]));
    sumExp[t] = float(sum);
  }
}

float crossEntropyLoss(const float *rowMax, const float *predicted, const float *sumExp,
                       const float *mask, int64_t tokens) {
  double total = 0, count = maskTotal(mask, tokens);
  for (int64_t t = 0; t < tokens; ++t)
    if (mask[t] != 0)
      total += mask[t] * (std::log(double(sumExp[t])) + rowMax[t] - predicted[t]);
  return count > 0 ? float(total / count) : 0.0f;
}

void vocabParallelCrossEntropyBackward(const float *logits, const int32_t *labels,
                                       const float *mask, const float *rowMax,
                                       const float *sumExp, float dloss, float *dlogits,
                                       const VocabShard &s) {
  const double count = maskTotal(mask, s.tokens);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    const float *row = logits + t * s.localVocab;
    float *drow = dlogits + t * s.localVocab;
    const int64_t columns = mask[t] == 0 || count <= 0 ? 0 : s.columns;
    const double scale = columns == 0 ? 0.0 : double(dloss) * mask[t] / count;
    // Each element is read before it is written, by the same iteration:
    // dlogits may be the logits' own buffer.
    for (int64_t v = 0; v < columns; ++v) {
      double p = std::exp(double(row[v]) - rowMax[t]) / sumExp[t];
      if (s.vocabStart + v == labels[t])
        p -= 1.0;
      drow[v] = float(scale * p);
    }
    std::fill(drow + columns, drow + s.localVocab, 0.0f);
  }
}

} // namespace mt::cpu
