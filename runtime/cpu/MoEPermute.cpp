// CPU reference kernels of the MoE token permutation, the grouped expert
// SwiGLU and the un-permutation, forward and backward.
#include "runtime/cpu/MoEPermute.h"

#include "runtime/cpu/Gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace mt::cpu {
namespace {

/// The slots (t * topK + k) each expert keeps, in token order.
std::vector<std::vector<int64_t>> keptSlots(const float *probs,
                                            const int32_t *indices,
                                            const PermuteShape &s) {
  std::vector<std::vector<int64_t>> slots(s.experts);
  for (int64_t i = 0; i < s.tokens * s.topK; ++i)
    slots[indices[i]].push_back(i);
  if (s.capacity <= 0)
    return slots;
  for (auto &kept : slots) {
    if (static_cast<int64_t>(kept.size()) <= s.capacity)
      continue;
    if (s.dropPolicy == DropPolicy::probs) {
      // NaN ranks last; the stable sort keeps the lower token first on ties.
      auto key = [&](int64_t i) { return std::isnan(probs[i]) ? -INFINITY : probs[i]; };
      std::stable_sort(kept.begin(), kept.end(),
                       [&](int64_t a, int64_t b) { return key(a) > key(b); });
    }
    kept.resize(s.capacity);
    std::sort(kept.begin(), kept.end());
  }
  return slots;
}

} // namespace

void moePermuteForward(const float *x, const float *probs,
                       const int32_t *indices, float *permuted,
                       int32_t *tokensPerExpert, int32_t *slotRows,
                       const PermuteShape &shape) {
  const PermuteShape &s = shape;
  std::fill_n(permuted, s.rows * s.hidden, 0.0f);
  std::fill_n(slotRows, s.tokens * s.topK, -1);
  std::vector<std::vector<int64_t>> slots = keptSlots(probs, indices, s);
  int64_t row = 0;
  for (int64_t e = 0; e < s.experts; ++e) {
    int64_t start = row;
    for (int64_t i : slots[e]) {
      slotRows[i] = static_cast<int32_t>(row);
      std::memcpy(permuted + row * s.hidden, x + (i / s.topK) * s.hidden,
                  s.hidden * sizeof(float));
      ++row;
    }
    if (s.padToCapacity)
      row = start + s.capacity;
    tokensPerExpert[e] = static_cast<int32_t>(row - start);
  }
}

void moePermuteBackward(const float *dPermuted, const int32_t *slotRows,
                        float *dx, const PermuteShape &shape) {
  const PermuteShape &s = shape;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t)
    for (int64_t k = 0; k < s.topK; ++k) {
      int32_t r = slotRows[t * s.topK + k];
      if (r < 0)
        continue;
      const float *src = dPermuted + r * s.hidden;
      float *dst = dx + t * s.hidden;
      for (int64_t h = 0; h < s.hidden; ++h)
        dst[h] += src[h];
    }
}

void moeUnpermuteForward(const float *expertOut, const float *probs,
                         const int32_t *slotRows, float *y,
                         const PermuteShape &shape) {
  const PermuteShape &s = shape;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    float *yt = y + t * s.hidden;
    std::fill_n(yt, s.hidden, 0.0f);
    for (int64_t k = 0; k < s.topK; ++k) {
      int32_t r = slotRows[t * s.topK + k];
      if (r < 0)
        continue;
      float p = probs[t * s.topK + k];
      const float *src = expertOut + r * s.hidden;
      for (int64_t h = 0; h < s.hidden; ++h)
        yt[h] += p * src[h];
    }
  }
}

void moeUnpermuteBackward(const float *expertOut, const float *probs,
                          const int32_t *slotRows, const float *dy,
                          float *dExpertOut, float *dProbs,
                          const PermuteShape &shape) {
  const PermuteShape &s = shape;
  // Each kept slot owns its row, so the threads write disjoint rows.
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t)
    for (int64_t k = 0; k < s.topK; ++k) {
      int64_t i = t * s.topK + k;
      int32_t r = slotRows[i];
      if (r < 0)
        continue;
      const float *out = expertOut + r * s.hidden, *dyt = dy + t * s.hidden;
      float *dout = dExpertOut + r * s.hidden, dot = 0.0f;
      for (int64_t h = 0; h < s.hidden; ++h) {
        dot += out[h] * dyt[h];
        dout[h] += probs[i] * dyt[h];
      }
      dProbs[i] += dot;
    }
}

Status moeSortChunks(const float *in, const int32_t *counts, const int32_t *offsets, float *out,
                     int64_t parts, int64_t groups, int64_t rows, int64_t hidden, bool inverse) {
  // Where chunk (p, g) starts in the (p, g) and in the (g, p) order.
  std::vector<int64_t> byRank(parts * groups), byGroup(parts * groups);
  int64_t at = 0;
  for (int64_t p = 0; p < parts; ++p) {
    if (offsets && offsets[p] < 0)
      return Status::error("moe_sort_chunks: block " + std::to_string(p) + "'s offset is " +
                           std::to_string(offsets[p]) + ", expected >= 0");
    if (offsets)
      at = p * (rows / parts) + offsets[p];
    // The chunks of block p end within it (with offsets) or within the rows.
    const int64_t end = offsets ? (p + 1) * (rows / parts) : rows;
    for (int64_t g = 0; g < groups; ++g) {
      const int32_t n = counts[p * groups + g];
      if (n < 0 || at + n > end)
        return Status::error("moe_sort_chunks: chunk (source " + std::to_string(p) +
                             ", expert " + std::to_string(g) + ") of " + std::to_string(n) +
                             " rows from row " + std::to_string(at) +
                             (n < 0 ? " has a negative count"
                                    : " passes row " + std::to_string(end) +
                                          (offsets ? " (the end of its block)" : " (the rows)")));
      byRank[p * groups + g] = at, at += n;
    }
  }
  at = 0;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t p = 0; p < parts; ++p)
      byGroup[p * groups + g] = at, at += counts[p * groups + g];
  // Blocks leave rows between their chunks: those of the other experts.
  std::fill(out + (inverse && offsets ? 0 : at) * hidden, out + rows * hidden, 0.0f);
  for (int64_t c = 0; c < parts * groups; ++c) {
    int64_t from = inverse ? byGroup[c] : byRank[c], to = inverse ? byRank[c] : byGroup[c];
    std::memcpy(out + to * hidden, in + from * hidden, size_t(counts[c] * hidden) * sizeof(float));
  }
  return Status::ok();
}

namespace {

float sigmoid(float a) { return 1.0f / (1.0f + std::exp(-a)); }

/// The rows [begin, begin + count) of expert e.
struct Group {
  int64_t e, begin, count;
};

std::vector<Group> groupsOf(const int32_t *tokensPerExpert, int64_t experts) {
  std::vector<Group> groups;
  int64_t begin = 0;
  for (int64_t e = 0; e < experts; ++e) {
    if (tokensPerExpert[e] > 0)
      groups.push_back({e, begin, tokensPerExpert[e]});
    begin += tokensPerExpert[e];
  }
  return groups;
}

/// gatePre, upPre [count, ffn] of one group.
void groupPreActivations(const float *x, const float *gate, const float *up,
                         const Group &g, float *gatePre, float *upPre,
                         const GroupedMlpShape &s) {
  const float *xg = x + g.begin * s.hidden;
  int64_t fh = s.ffn * s.hidden;
  gemm(false, true, g.count, s.ffn, s.hidden, xg, s.hidden, gate + g.e * fh,
       s.hidden, 0.0f, gatePre, s.ffn);
  gemm(false, true, g.count, s.ffn, s.hidden, xg, s.hidden, up + g.e * fh,
       s.hidden, 0.0f, upPre, s.ffn);
}

} // namespace

void groupedMlpForward(const float *x, const int32_t *tokensPerExpert,
                       const float *gate, const float *up, const float *down,
                       float *y, float *fc1, const GroupedMlpShape &shape) {
  const GroupedMlpShape &s = shape;
  std::fill_n(y, s.rows * s.hidden, 0.0f);
  std::fill_n(fc1, 2 * s.rows * s.ffn, 0.0f);
  int64_t fh = s.ffn * s.hidden;
  float *gateOut = fc1, *upOut = fc1 + s.rows * s.ffn;
  for (const Group &g : groupsOf(tokensPerExpert, s.experts)) {
    float *gatePre = gateOut + g.begin * s.ffn, *upPre = upOut + g.begin * s.ffn;
    groupPreActivations(x, gate, up, g, gatePre, upPre, s);
    std::vector<float> act(upPre, upPre + g.count * s.ffn);
    for (size_t i = 0; i < act.size(); ++i)
      act[i] *= gatePre[i] * sigmoid(gatePre[i]);
    gemm(false, true, g.count, s.hidden, s.ffn, act.data(), s.ffn,
         down + g.e * fh, s.ffn, 0.0f, y + g.begin * s.hidden, s.hidden);
  }
}

void groupedMlpBackward(const float *x, const int32_t *tokensPerExpert,
                        const float *gate, const float *up, const float *down,
                        const float *fc1, const float *dy, float *dx, float *dgate,
                        float *dup, float *ddown, const GroupedMlpShape &shape) {
  const GroupedMlpShape &s = shape;
  int64_t fh = s.ffn * s.hidden;
  for (const Group &g : groupsOf(tokensPerExpert, s.experts)) {
    int64_t n = g.count * s.ffn;
    const float *gatePre = fc1 + g.begin * s.ffn, *upPre = fc1 + (s.rows + g.begin) * s.ffn;
    std::vector<float> act(n), dAct(n), dGatePre(n), dUpPre(n);
    for (int64_t i = 0; i < n; ++i)
      act[i] = gatePre[i] * sigmoid(gatePre[i]) * upPre[i];
    const float *xg = x + g.begin * s.hidden, *dyg = dy + g.begin * s.hidden;
    // dAct = dy down[e]; ddown[e] += dyᵀ act.
    gemm(false, false, g.count, s.ffn, s.hidden, dyg, s.hidden, down + g.e * fh,
         s.ffn, 0.0f, dAct.data(), s.ffn);
    gemm(true, false, s.hidden, s.ffn, g.count, dyg, s.hidden, act.data(), s.ffn,
         1.0f, ddown + g.e * fh, s.ffn);
    // silu' = sig (1 + a (1 - sig)).
    for (int64_t i = 0; i < n; ++i) {
      float a = gatePre[i], u = upPre[i], sig = sigmoid(a);
      dGatePre[i] = dAct[i] * u * sig * (1.0f + a * (1.0f - sig));
      dUpPre[i] = dAct[i] * a * sig;
    }
    float *dxg = dx + g.begin * s.hidden;
    gemm(false, false, g.count, s.hidden, s.ffn, dGatePre.data(), s.ffn,
         gate + g.e * fh, s.hidden, 1.0f, dxg, s.hidden);
    gemm(false, false, g.count, s.hidden, s.ffn, dUpPre.data(), s.ffn,
         up + g.e * fh, s.hidden, 1.0f, dxg, s.hidden);
    gemm(true, false, s.ffn, s.hidden, g.count, dGatePre.data(), s.ffn, xg,
         s.hidden, 1.0f, dgate + g.e * fh, s.hidden);
    gemm(true, false, s.ffn, s.hidden, g.count, dUpPre.data(), s.ffn, xg,
         s.hidden, 1.0f, dup + g.e * fh, s.hidden);
  }
}

} // namespace mt::cpu
