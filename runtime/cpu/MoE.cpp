// CPU reference kernels of the mixture-of-experts router (softmax, top-k,
// load-balancing and z losses), forward and backward.
#include "runtime/cpu/MoE.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mt::cpu {
namespace {

float dot(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    s += a[i] * b[i];
  return s;
}

float sigmoid(float a) { return 1.0f / (1.0f + std::exp(-a)); }


/// probs = softmax(xt w^T) of one token, max-subtracted; returns the
/// log-sum-exp of the logits (for the z-loss).
float tokenProbs(const float *xt, const float *w, float *probs,
                 const RouterShape &s) {
  float mx = -INFINITY;
  for (int64_t e = 0; e < s.experts; ++e) {
    probs[e] = dot(xt, w + e * s.hidden, s.hidden);
    mx = std::max(mx, probs[e]);
  }
  float sum = 0.0f;
  for (int64_t e = 0; e < s.experts; ++e) {
    probs[e] = std::exp(probs[e] - mx);
    sum += probs[e];
  }
  for (int64_t e = 0; e < s.experts; ++e)
    probs[e] /= sum;
  return mx + std::log(sum);
}

/// Top-k of one token in descending probability. Pick k is the largest
/// expert that comes after pick k-1 in the order (probability descending,
/// index ascending), so ties go to the lower index without a marker array.
void tokenTopK(const float *probs, int32_t *indices, float *weights,
               const RouterShape &s) {
  // NaN ranks below everything, so the order stays total and every pick is
  // a valid expert even when the router's input is not finite.
  auto key = [&](int64_t e) {
    float p = probs[e];
    return std::isnan(p) ? -INFINITY : p;
  };
  float sum = 0.0f;
  for (int64_t k = 0; k < s.topK; ++k) {
    int64_t best = -1;
    for (int64_t e = 0; e < s.experts; ++e) {
      if (k > 0) {
        float pp = key(indices[k - 1]);
        bool after = key(e) < pp || (key(e) == pp && e > indices[k - 1]);
        if (!after)
          continue;
      }
      if (best < 0 || key(e) > key(best))
        best = e;
    }
    indices[k] = static_cast<int32_t>(best);
    weights[k] = probs[best];
    sum += probs[best];
  }
  if (s.normTopkProb)
    for (int64_t k = 0; k < s.topK; ++k)
      weights[k] /= sum;
}

/// Routes every token: probs [tokens, experts], indices and weights
/// [tokens, topK], lse [tokens] the log-sum-exp of each token's logits.
void routeTokens(const float *x, const float *w, float *probs, int32_t *indices,
                 float *weights, float *lse, const RouterShape &s) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    float *pt = probs + t * s.experts;
    lse[t] = tokenProbs(x + t * s.hidden, w, pt, s);
    tokenTopK(pt, indices + t * s.topK, weights + t * s.topK, s);
  }
}

/// counts[g * experts + e] = (token, slot) pairs of group g routed to e:
/// this instruction's tokens', or given (`whole`: the whole micro-batch's
/// counts, tokenShards > 1).
std::vector<double> expertCounts(const int32_t *indices, const float *whole,
                                 const RouterShape &s) {
  int64_t groups = s.groups(), perGroup = s.tokens / groups;
  std::vector<double> counts(groups * s.experts, 0.0);
  if (whole) {
    std::copy(whole, whole + counts.size(), counts.begin());
    return counts;
  }
  for (int64_t i = 0; i < s.tokens * s.topK; ++i)
    counts[(i / s.topK / perGroup) * s.experts + indices[i]] += 1.0;
  return counts;
}

/// d(balancing loss)/d probs[t, e] / daux = scale · count[g(t), e], the same
/// for every token of a group: scale = coeff · E / (topK · T_g² · groups),
/// T_g the group's tokens in the whole micro-batch.
double balanceScale(const RouterShape &s) {
  if (s.loadBalancing == LoadBalancing::none)
    return 0.0;
  int64_t groups = s.groups();
  double perGroup = double(s.tokens / groups * s.tokenShards);
  return double(s.auxLossCoeff) * double(s.experts) /
         (double(s.topK) * perGroup * perGroup * double(groups));
}

/// dprobs = d(sum dweights * weights)/dprobs for the chosen experts of one
/// token, added to dprobs. With renormalisation w_k = p_k / S:
/// dp_j = (dw_j - sum_k dw_k w_k) / S.
void topKBackward(const float *probs, const int32_t *indices,
                  const float *weights, const float *dweights, float *dprobs,
                  const RouterShape &s) {
  if (!s.normTopkProb) {
    for (int64_t k = 0; k < s.topK; ++k)
      dprobs[indices[k]] += dweights[k];
    return;
  }
  float sum = 0.0f, dotWeights = 0.0f;
  for (int64_t k = 0; k < s.topK; ++k) {
    sum += probs[indices[k]];
    dotWeights += dweights[k] * weights[k];
  }
  for (int64_t k = 0; k < s.topK; ++k)
    dprobs[indices[k]] += (dweights[k] - dotWeights) / sum;
}

} // namespace

RouterLosses moeRouterForward(const float *x, const float *w, const float *tokenCounts,
                              float *weights, int32_t *indices, const RouterShape &shape) {
  const RouterShape &s = shape;
  std::vector<float> probs(s.tokens * s.experts), lse(s.tokens);
  routeTokens(x, w, probs.data(), indices, weights, lse.data(), s);
  // Megatron-Core's switch_load_balancing_loss_func per group,
  //   coeff · E / (topK · T_g²) · Σ_e count_ge · Σ_{t in g} probs[t, e],
  // averaged over the groups, and z_loss_func: zcoeff · mean_t lse_t²
  // (with token shards, the whole's counts, T_g and mean, and this rank's
  // tokens' probabilities and lse: its terms of the sums).
  // Serial fixed-order sums keep it deterministic.
  std::vector<double> counts = expertCounts(indices, tokenCounts, s);
  int64_t groups = s.groups(), perGroup = s.tokens / groups;
  double balance = 0.0, z = 0.0;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t e = 0; e < s.experts; ++e) {
      double probSum = 0.0;
      for (int64_t t = g * perGroup; t < (g + 1) * perGroup; ++t)
        probSum += probs[t * s.experts + e];
      balance += counts[g * s.experts + e] * probSum;
    }
  for (int64_t t = 0; t < s.tokens; ++t)
    z += double(lse[t]) * lse[t];
  return {static_cast<float>(balanceScale(s) * balance),
          static_cast<float>(double(s.zLossCoeff) * z / double(s.tokens * s.tokenShards))};
}

void moeRouterCounts(const float *x, const float *w, float *counts, const RouterShape &shape) {
  const RouterShape &s = shape;
  std::vector<float> probs(s.tokens * s.experts), weights(s.tokens * s.topK), lse(s.tokens);
  std::vector<int32_t> indices(s.tokens * s.topK);
  routeTokens(x, w, probs.data(), indices.data(), weights.data(), lse.data(), s);
  std::vector<double> mine = expertCounts(indices.data(), nullptr, s);
  std::copy(mine.begin(), mine.end(), counts);
}

void moeRouterBackward(const float *x, const float *w, const float *tokenCounts,
                       const float *dweights, float daux, float dz, float *dx, float *dw,
                       const RouterShape &shape) {
  const RouterShape &s = shape;
  std::vector<float> probs(s.tokens * s.experts), weights(s.tokens * s.topK), lse(s.tokens);
  std::vector<int32_t> indices(s.tokens * s.topK);
  routeTokens(x, w, probs.data(), indices.data(), weights.data(), lse.data(), s);
  // d balance / d probs[t, e] = scale · count[g(t), e] (counts constant).
  std::vector<double> counts = expertCounts(indices.data(), tokenCounts, s);
  std::vector<float> dprobAux(counts.size());
  double scale = double(daux) * balanceScale(s);
  for (size_t i = 0; i < counts.size(); ++i)
    dprobAux[i] = static_cast<float>(scale * counts[i]);
  // d z / d logits[t, e] = zcoeff · 2 lse_t / T · probs[t, e] (T the whole's).
  float zScale =
      float(2.0 * double(dz) * s.zLossCoeff / double(s.tokens * s.tokenShards));
  int64_t perGroup = s.tokens / s.groups();

  // dlogits[t] = softmax backward of dprobs[t]; dx[t] += dlogits[t] w.
  std::vector<float> dlogits(s.tokens * s.experts);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    const float *pt = probs.data() + t * s.experts;
    float *dl = dlogits.data() + t * s.experts;
    const float *aux = dprobAux.data() + (t / perGroup) * s.experts;
    std::copy(aux, aux + s.experts, dl);
    topKBackward(pt, indices.data() + t * s.topK, weights.data() + t * s.topK,
                 dweights + t * s.topK, dl, s);
    float dotProbs = dot(pt, dl, s.experts);
    for (int64_t e = 0; e < s.experts; ++e)
      dl[e] = pt[e] * (dl[e] - dotProbs + zScale * lse[t]);
    float *dxt = dx + t * s.hidden;
    for (int64_t e = 0; e < s.experts; ++e)
      for (int64_t i = 0; i < s.hidden; ++i)
        dxt[i] += dl[e] * w[e * s.hidden + i];
  }
  // dw[e] += sum_t dlogits[t, e] x[t]: one thread per expert row, tokens in
  // order.
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < s.experts; ++e) {
    float *dwe = dw + e * s.hidden;
    for (int64_t t = 0; t < s.tokens; ++t) {
      float g = dlogits[t * s.experts + e];
      for (int64_t i = 0; i < s.hidden; ++i)
        dwe[i] += g * x[t * s.hidden + i];
    }
  }
}

void sigmoidGateForward(const float *gate, const float *x, float *y, int64_t rows,
                        int64_t dim) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float s = sigmoid(gate[r]);
    for (int64_t h = 0; h < dim; ++h)
      y[r * dim + h] = s * x[r * dim + h];
  }
}

void sigmoidGateBackward(const float *gate, const float *x, const float *dy, float *dgate,
                         float *dx, int64_t rows, int64_t dim) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float s = sigmoid(gate[r]);
    dgate[r] += s * (1.0f - s) * dot(dy + r * dim, x + r * dim, dim);
    for (int64_t h = 0; h < dim; ++h)
      dx[r * dim + h] += s * dy[r * dim + h];
  }
}

} // namespace mt::cpu
