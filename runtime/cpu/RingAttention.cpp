// CPU reference kernels of ring attention's blocks and merges (fp64 sums).
#include "runtime/cpu/RingAttention.h"

#include "runtime/kernels/ContextParallel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mt::cpu {

namespace {

constexpr double kNoKeys = -std::numeric_limits<double>::infinity();

double dot(const float *a, const float *b, int64_t n) {
  double sum = 0;
  for (int64_t d = 0; d < n; ++d)
    sum += double(a[d]) * double(b[d]);
  return sum;
}

/// Whether query i of row b of this rank sees key j of the rank `step`
/// places back: the key's place is not after the query's nor, with packed
/// documents, before its document's start (the query's place minus its
/// position id, as attentionForward under all_gather).
struct BlockMask {
  const AttentionShape &s;
  int64_t source;
  const int32_t *positionIds;
  BlockMask(const AttentionShape &shape, int64_t step, const int32_t *positions)
      : s(shape), source(((shape.cpRank - step) % shape.cpSize + shape.cpSize) % shape.cpSize),
        positionIds(positions) {}
  bool visible(int64_t b, int64_t i, int64_t j) const {
    const int64_t key = kernels::contextParallelPosition(j, s.seq, source, s.cpSize);
    const int64_t query = kernels::contextParallelPosition(i, s.seq, s.cpRank, s.cpSize);
    return key <= query && (!positionIds || key >= query - positionIds[b * s.seq + i]);
  }
};

} // namespace

// One task per (batch, head, query), as attentionForward.
void attentionBlockForward(const float *q, const float *k, const float *v, float *out,
                           float *lse, const AttentionShape &shape, int64_t step,
                           const int32_t *positionIds) {
  const int64_t seq = shape.seq, heads = shape.heads, dim = shape.headDim;
  const int64_t kvHeads = shape.kvHeads, group = heads / kvHeads;
  const BlockMask mask(shape, step, positionIds);
  const int64_t tasks = shape.batch * heads * seq;
#pragma omp parallel
  {
    std::vector<double> scores(static_cast<size_t>(seq)), acc(static_cast<size_t>(dim));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t i = task % seq, h = (task / seq) % heads, b = task / (seq * heads);
      const int64_t g = h / group;
      const float *qRow = q + ((b * seq + i) * heads + h) * dim;
      double maxScore = kNoKeys;
      for (int64_t j = 0; j < seq; ++j)
        if (mask.visible(b, i, j)) {
          const float *kRow = k + ((b * seq + j) * kvHeads + g) * dim;
          scores[size_t(j)] = shape.scale * dot(qRow, kRow, dim);
          maxScore = std::max(maxScore, scores[size_t(j)]);
        }
      float *outRow = out + ((b * seq + i) * heads + h) * dim;
      float &rowLse = lse[(b * heads + h) * seq + i];
      if (maxScore == kNoKeys) {
        std::fill(outRow, outRow + dim, 0.0f);
        rowLse = float(kNoKeys);
        continue;
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < seq; ++j)
        if (mask.visible(b, i, j)) {
          const float *vRow = v + ((b * seq + j) * kvHeads + g) * dim;
          const double weight = std::exp(scores[size_t(j)] - maxScore);
          sum += weight;
          for (int64_t d = 0; d < dim; ++d)
            acc[size_t(d)] += weight * vRow[d];
        }
      for (int64_t d = 0; d < dim; ++d)
        outRow[d] = float(acc[size_t(d)] / sum);
      rowLse = float(maxScore + std::log(sum));
    }
  }
}

// One task per (batch, kv head), which owns its dk/dv rows, as
// attentionBackward: every sum runs in one fixed order.
void attentionBlockBackward(const float *q, const float *k, const float *v, const float *out,
                            const float *lse, const float *dout, const float *dlse, float *dq,
                            float *dk, float *dv, const AttentionShape &shape, int64_t step,
                            const int32_t *positionIds) {
  const int64_t seq = shape.seq, heads = shape.heads, dim = shape.headDim;
  const int64_t kvHeads = shape.kvHeads, group = heads / kvHeads;
  const double scale = shape.scale;
  const BlockMask mask(shape, step, positionIds);
  const int64_t tasks = shape.batch * kvHeads;
#pragma omp parallel
  {
    std::vector<double> dkAcc(static_cast<size_t>(seq * dim)), dvAcc(dkAcc);
    std::vector<double> dqAcc(static_cast<size_t>(dim));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / kvHeads, g = task % kvHeads;
      std::fill(dkAcc.begin(), dkAcc.end(), 0.0);
      std::fill(dvAcc.begin(), dvAcc.end(), 0.0);
      for (int64_t h = g * group; h < (g + 1) * group; ++h)
        for (int64_t i = 0; i < seq; ++i) {
          const double rowLse = lse[(b * heads + h) * seq + i];
          if (rowLse == kNoKeys)
            continue; // no visible key: nothing flows back
          const int64_t qAt = ((b * seq + i) * heads + h) * dim;
          const float *qRow = q + qAt, *doRow = dout + qAt;
          const double delta = dot(doRow, out + qAt, dim) - dlse[(b * heads + h) * seq + i];
          std::fill(dqAcc.begin(), dqAcc.end(), 0.0);
          for (int64_t j = 0; j < seq; ++j) {
            if (!mask.visible(b, i, j))
              continue;
            const int64_t kvAt = ((b * seq + j) * kvHeads + g) * dim;
            const float *kRow = k + kvAt, *vRow = v + kvAt;
            const double prob = std::exp(scale * dot(qRow, kRow, dim) - rowLse);
            const double dScore = prob * (dot(doRow, vRow, dim) - delta);
            for (int64_t d = 0; d < dim; ++d) {
              dvAcc[size_t(j * dim + d)] += prob * doRow[d];
              dqAcc[size_t(d)] += dScore * kRow[d];
              dkAcc[size_t(j * dim + d)] += dScore * qRow[d];
            }
          }
          for (int64_t d = 0; d < dim; ++d)
            dq[qAt + d] += float(scale * dqAcc[size_t(d)]);
        }
      for (int64_t j = 0; j < seq; ++j)
        for (int64_t d = 0; d < dim; ++d) {
          const int64_t at = ((b * seq + j) * kvHeads + g) * dim + d;
          dk[at] += float(scale * dkAcc[size_t(j * dim + d)]);
          dv[at] += float(dvAcc[size_t(j * dim + d)]);
        }
    }
  }
}

void attentionMergeForward(const float *outA, const float *lseA, const float *outB,
                           const float *lseB, float *out, float *lse, int64_t batch,
                           int64_t seq, int64_t heads, int64_t headDim) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < batch * seq * heads; ++row) {
    const int64_t h = row % heads, s = (row / heads) % seq, b = row / (heads * seq);
    const int64_t l = (b * heads + h) * seq + s;
    const double a = lseA[l], c = lseB[l], m = std::max(a, c);
    float *o = out + row * headDim;
    if (m == kNoKeys) {
      std::fill(o, o + headDim, 0.0f);
      lse[l] = float(kNoKeys);
      continue;
    }
    const double total = m + std::log(std::exp(a - m) + std::exp(c - m));
    const double wa = std::exp(a - total), wb = std::exp(c - total);
    for (int64_t d = 0; d < headDim; ++d)
      o[d] = float(wa * outA[row * headDim + d] + wb * outB[row * headDim + d]);
    lse[l] = float(total);
  }
}

void attentionMergeBackward(const float *outA, const float *lseA, const float *outB,
                            const float *lseB, const float *out, const float *lse,
                            const float *dout, const float *dlse, float *doutA, float *dlseA,
                            float *doutB, float *dlseB, int64_t batch, int64_t seq,
                            int64_t heads, int64_t headDim) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < batch * seq * heads; ++row) {
    const int64_t h = row % heads, s = (row / heads) % seq, b = row / (heads * seq);
    const int64_t l = (b * heads + h) * seq + s;
    const double total = lse[l];
    if (total == kNoKeys)
      continue;
    const float *doRow = dout + row * headDim, *o = out + row * headDim;
    auto part = [&](const float *outX, const float *lseX, float *doutX, float *dlseX) {
      const double w = lseX[l] == kNoKeys ? 0.0 : std::exp(double(lseX[l]) - total);
      double dotted = 0;
      for (int64_t d = 0; d < headDim; ++d) {
        doutX[row * headDim + d] += float(w * doRow[d]);
        dotted += double(doRow[d]) * (double(outX[row * headDim + d]) - double(o[d]));
      }
      dlseX[l] += float(w * (dotted + dlse[l]));
    };
    part(outA, lseA, doutA, dlseA);
    part(outB, lseB, doutB, dlseB);
  }
}

} // namespace mt::cpu
