// Vocab-parallel embedding and cross-entropy on the CPU.
#include "runtime/cpu/VocabParallel.h"

#include "runtime/cpu/Loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace mt::cpu {
namespace {

bool owns(int32_t id, int64_t start, int64_t local) {
  return id >= start && id < start + local;
}

/// Per token: the global max logit, the global sum of exp(logit - max) and
/// the label's logit, reduced over the axis.
struct RowStats {
  std::vector<float> max, sumExp, labelLogit;
};

RowStats rowStats(const float *logits, const int32_t *labels, int64_t tokens,
                  int64_t local, int64_t start, int64_t valid, const AxisReduce &reduce) {
  // Rows are `local` wide; columns past the real vocabulary are padding.
  int64_t columns = std::clamp<int64_t>(valid - start, 0, local);
  RowStats s{std::vector<float>(tokens), std::vector<float>(tokens),
             std::vector<float>(tokens, 0.0f)};
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    const float *row = logits + t * local;
    float m = -INFINITY;
    for (int64_t v = 0; v < columns; ++v)
      m = std::max(m, row[v]);
    s.max[t] = m;
    if (owns(labels[t], start, columns))
      s.labelLogit[t] = row[labels[t] - start];
  }
  reduce(s.max.data(), tokens, true);
  reduce(s.labelLogit.data(), tokens, false);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    const float *row = logits + t * local;
    double sum = 0;
    for (int64_t v = 0; v < columns; ++v)
      sum += std::exp(double(row[v]) - double(s.max[t]));
    s.sumExp[t] = float(sum);
  }
  reduce(s.sumExp.data(), tokens, false);
  return s;
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

float crossEntropyForwardShard(const float *logits, const int32_t *labels,
                               const float *mask, int64_t tokens, int64_t localVocab,
                               int64_t vocabStart, int64_t validVocab,
                               const AxisReduce &reduce) {
  RowStats s = rowStats(logits, labels, tokens, localVocab, vocabStart, validVocab, reduce);
  double total = 0, count = maskTotal(mask, tokens);
  for (int64_t t = 0; t < tokens; ++t)
    if (mask[t] != 0)
      total += mask[t] * (std::log(double(s.sumExp[t])) + s.max[t] - s.labelLogit[t]);
  return count > 0 ? float(total / count) : 0.0f;
}

void crossEntropyBackwardShard(const float *logits, const int32_t *labels,
                               const float *mask, float dloss, float *dlogits,
                               int64_t tokens, int64_t localVocab, int64_t vocabStart,
                               int64_t validVocab, const AxisReduce &reduce) {
  RowStats s = rowStats(logits, labels, tokens, localVocab, vocabStart, validVocab, reduce);
  int64_t columns = std::clamp<int64_t>(validVocab - vocabStart, 0, localVocab);
  double count = maskTotal(mask, tokens);
  if (count <= 0)
    return;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    if (mask[t] == 0)
      continue;
    double scale = double(dloss) * mask[t] / count;
    const float *row = logits + t * localVocab;
    float *drow = dlogits + t * localVocab;
    for (int64_t v = 0; v < columns; ++v) {
      double p = std::exp(double(row[v]) - s.max[t]) / s.sumExp[t];
      if (vocabStart + v == labels[t])
        p -= 1.0;
      drow[v] += float(scale * p);
    }
  }
}

} // namespace mt::cpu
