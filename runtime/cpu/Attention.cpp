// CPU reference kernels of rotary position embedding (Hugging Face's fp32
// recipe, runtime/kernels/Rotary.h) and causal grouped-query softmax attention (fp64
// accumulation), over whole rows or over the documents packed in them.
#include "runtime/cpu/Attention.h"

#include "runtime/kernels/ContextParallel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mt::cpu {

namespace {

/// Rotates every (b, s) row of x by +angle (sign 1) or -angle (sign -1) and
/// stores (accumulate false) or adds (accumulate true) into y.
void rotaryApply(const float *x, float *y, int64_t batch, int64_t seq,
                 int64_t heads, int64_t headDim, const RotaryParams &p,
                 const int32_t *positionIds, float sign, bool accumulate) {
  const int64_t half = headDim / 2;
  std::vector<double> invFreq(static_cast<size_t>(half));
  kernels::rotaryInverseFrequencies(p, headDim, invFreq.data());
  const int64_t rows = batch * seq;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t s = positionIds ? positionIds[row] : row % seq;
    const int64_t base = row * heads * headDim;
    for (int64_t i = 0; i < half; ++i) {
      float c, sn;
      kernels::rotaryCosSin(s, invFreq[i], c, sn);
      sn *= sign;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t at = base + h * headDim + i;
        const float x1 = x[at], x2 = x[at + half];
        const float y1 = x1 * c - x2 * sn;
        const float y2 = x2 * c + x1 * sn;
        if (accumulate) {
          y[at] += y1;
          y[at + half] += y2;
        } else {
          y[at] = y1;
          y[at + half] = y2;
        }
      }
    }
  }
}

double dot(const float *a, const float *b, int64_t n) {
  double sum = 0;
  for (int64_t d = 0; d < n; ++d)
    sum += static_cast<double>(a[d]) * static_cast<double>(b[d]);
  return sum;
}

/// The keys [first, last] that query i of a row may see, and under
/// context parallelism which of them: those whose place in the whole
/// sequence is not after the query's nor, with packed documents, before
/// its document's start (its place minus its position id).
struct KeyRange {
  const AttentionShape &shape;
  const int32_t *rowPositions;

  int64_t first(int64_t i) const {
    return shape.cpSize > 1 ? 0 : documentStart(rowPositions, i);
  }
  int64_t last(int64_t i) const { return shape.cpSize > 1 ? shape.kvSeq() - 1 : i; }
  bool visible(int64_t i, int64_t j) const {
    if (shape.cpSize == 1)
      return true;
    const int64_t key = kernels::contextParallelGatheredPosition(j, shape.seq, shape.cpSize);
    const int64_t query = kernels::contextParallelPosition(i, shape.seq, shape.cpRank, shape.cpSize);
    return key <= query && (!rowPositions || key >= query - rowPositions[i]);
  }
};

} // namespace

void rotaryForward(const float *x, float *y, int64_t batch, int64_t seq,
                   int64_t heads, int64_t headDim, const RotaryParams &p,
                   const int32_t *positionIds) {
  rotaryApply(x, y, batch, seq, heads, headDim, p, positionIds, 1.0f, false);
}

void rotaryBackward(const float *dy, float *dx, int64_t batch, int64_t seq,
                    int64_t heads, int64_t headDim, const RotaryParams &p,
                    const int32_t *positionIds) {
  rotaryApply(dy, dx, batch, seq, heads, headDim, p, positionIds, -1.0f, true);
}

// One task per (batch, head, query): scores, a max-subtracted softmax and
// the weighted sum of values, all accumulated in fp64 and rounded once.
void attentionForward(const float *q, const float *k, const float *v,
                      float *out, float *lse, const AttentionShape &shape,
                      const int32_t *positionIds) {
  const int64_t seq = shape.seq, heads = shape.heads, dim = shape.headDim;
  const int64_t kvHeads = shape.kvHeads, group = heads / kvHeads;
  const double scale = shape.scale;
  const int64_t kvSeq = shape.kvSeq();
  const int64_t tasks = shape.batch * heads * seq;
#pragma omp parallel
  {
    std::vector<double> scores(static_cast<size_t>(kvSeq));
    std::vector<double> acc(static_cast<size_t>(dim));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t i = task % seq, h = (task / seq) % heads;
      const int64_t b = task / (seq * heads), g = h / group;
      const float *qRow = q + ((b * seq + i) * heads + h) * dim;
      const KeyRange keys{shape, positionIds ? positionIds + b * seq : nullptr};
      const int64_t first = keys.first(i), last = keys.last(i);
      double maxScore = -std::numeric_limits<double>::infinity();
      for (int64_t j = first; j <= last; ++j) {
        if (!keys.visible(i, j))
          continue;
        const float *kRow = k + ((b * kvSeq + j) * kvHeads + g) * dim;
        scores[j] = scale * dot(qRow, kRow, dim);
        maxScore = std::max(maxScore, scores[j]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = first; j <= last; ++j) {
        if (!keys.visible(i, j))
          continue;
        const float *vRow = v + ((b * kvSeq + j) * kvHeads + g) * dim;
        const double weight = std::exp(scores[j] - maxScore);
        sum += weight;
        for (int64_t d = 0; d < dim; ++d)
          acc[d] += weight * vRow[d];
      }
      float *outRow = out + ((b * seq + i) * heads + h) * dim;
      for (int64_t d = 0; d < dim; ++d)
        outRow[d] = static_cast<float>(acc[d] / sum);
      lse[(b * heads + h) * seq + i] =
          static_cast<float>(maxScore + std::log(sum));
    }
  }
}

// One task per (batch, kv head): the task owns the dk/dv slice of its kv head
// and the dq rows of the query heads of its group, so every sum runs in one
// fixed order (heads of the group, then queries, then keys) whatever the
// thread count. Sums are kept in fp64 and added to the outputs once.
void attentionBackward(const float *q, const float *k, const float *v,
                       const float *out, const float *lse, const float *dout,
                       float *dq, float *dk, float *dv,
                       const AttentionShape &shape, const int32_t *positionIds) {
  const int64_t seq = shape.seq, heads = shape.heads, dim = shape.headDim;
  const int64_t kvHeads = shape.kvHeads, group = heads / kvHeads;
  const double scale = shape.scale;
  const int64_t kvSeq = shape.kvSeq();
  const int64_t tasks = shape.batch * kvHeads;
#pragma omp parallel
  {
    std::vector<double> dkAcc(static_cast<size_t>(kvSeq * dim));
    std::vector<double> dvAcc(static_cast<size_t>(kvSeq * dim));
    std::vector<double> dqAcc(static_cast<size_t>(dim));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / kvHeads, g = task % kvHeads;
      const KeyRange keys{shape, positionIds ? positionIds + b * seq : nullptr};
      std::fill(dkAcc.begin(), dkAcc.end(), 0.0);
      std::fill(dvAcc.begin(), dvAcc.end(), 0.0);
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        for (int64_t i = 0; i < seq; ++i) {
          const int64_t qAt = ((b * seq + i) * heads + h) * dim;
          const float *qRow = q + qAt, *doRow = dout + qAt;
          const double rowLse = lse[(b * heads + h) * seq + i];
          const double delta = dot(doRow, out + qAt, dim);
          std::fill(dqAcc.begin(), dqAcc.end(), 0.0);
          for (int64_t j = keys.first(i); j <= keys.last(i); ++j) {
            if (!keys.visible(i, j))
              continue;
            const int64_t kvAt = ((b * kvSeq + j) * kvHeads + g) * dim;
            const float *kRow = k + kvAt, *vRow = v + kvAt;
            const double prob = std::exp(scale * dot(qRow, kRow, dim) - rowLse);
            const double dScore = prob * (dot(doRow, vRow, dim) - delta);
            double *dkRow = dkAcc.data() + j * dim;
            double *dvRow = dvAcc.data() + j * dim;
            for (int64_t d = 0; d < dim; ++d) {
              dvRow[d] += prob * doRow[d];
              dqAcc[d] += dScore * kRow[d];
              dkRow[d] += dScore * qRow[d];
            }
          }
          for (int64_t d = 0; d < dim; ++d)
            dq[qAt + d] += static_cast<float>(scale * dqAcc[d]);
        }
      }
      for (int64_t j = 0; j < kvSeq; ++j) {
        const int64_t kvAt = ((b * kvSeq + j) * kvHeads + g) * dim;
        for (int64_t d = 0; d < dim; ++d) {
          dk[kvAt + d] += static_cast<float>(scale * dkAcc[j * dim + d]);
          dv[kvAt + d] += static_cast<float>(dvAcc[j * dim + d]);
        }
      }
    }
  }
}

} // namespace mt::cpu
