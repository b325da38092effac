// CPU reference kernels of the mixture-of-experts router (softmax, top-k,
// load-balancing loss) and of the routed SwiGLU experts, forward and backward.
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

/// probs = softmax(xt w^T) of one token, max-subtracted.
void tokenProbs(const float *xt, const float *w, float *probs,
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
/// [tokens, topK].
void routeTokens(const float *x, const float *w, float *probs, int32_t *indices,
                 float *weights, const RouterShape &s) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    float *pt = probs + t * s.experts;
    tokenProbs(x + t * s.hidden, w, pt, s);
    tokenTopK(pt, indices + t * s.topK, weights + t * s.topK, s);
  }
}

/// counts[e] = number of (token, slot) pairs routed to e.
std::vector<int64_t> expertCounts(const int32_t *indices,
                                  const RouterShape &s) {
  std::vector<int64_t> counts(s.experts, 0);
  for (int64_t i = 0; i < s.tokens * s.topK; ++i)
    ++counts[indices[i]];
  return counts;
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

float moeRouterForward(const float *x, const float *w, float *weights,
                       int32_t *indices, const RouterShape &shape) {
  const RouterShape &s = shape;
  std::vector<float> probs(s.tokens * s.experts);
  routeTokens(x, w, probs.data(), indices, weights, s);
  // aux = coeff * E * sum_e (count_e / T) * P_e, as HF's
  // load_balancing_loss_func; serial fixed-order sums keep it deterministic.
  std::vector<int64_t> counts = expertCounts(indices, s);
  double tokens = static_cast<double>(s.tokens), aux = 0.0;
  for (int64_t e = 0; e < s.experts; ++e) {
    double meanProb = 0.0;
    for (int64_t t = 0; t < s.tokens; ++t)
      meanProb += probs[t * s.experts + e];
    aux += static_cast<double>(counts[e]) / tokens * (meanProb / tokens);
  }
  return static_cast<float>(static_cast<double>(s.auxLossCoeff) *
                            static_cast<double>(s.experts) * aux);
}

void moeRouterBackward(const float *x, const float *w, const float *dweights,
                       float daux, float *dx, float *dw,
                       const RouterShape &shape) {
  const RouterShape &s = shape;
  std::vector<float> probs(s.tokens * s.experts), weights(s.tokens * s.topK);
  std::vector<int32_t> indices(s.tokens * s.topK);
  routeTokens(x, w, probs.data(), indices.data(), weights.data(), s);
  // d aux / d probs[t, e] = coeff * E * count_e / T^2, the same for all t.
  std::vector<int64_t> counts = expertCounts(indices.data(), s);
  std::vector<float> dprobAux(s.experts);
  double scale = static_cast<double>(daux) * s.auxLossCoeff * s.experts /
                 (static_cast<double>(s.tokens) * s.tokens);
  for (int64_t e = 0; e < s.experts; ++e)
    dprobAux[e] = static_cast<float>(scale * counts[e]);

  // dlogits[t] = softmax backward of dprobs[t]; dx[t] += dlogits[t] w.
  std::vector<float> dlogits(s.tokens * s.experts);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.tokens; ++t) {
    const float *pt = probs.data() + t * s.experts;
    float *dl = dlogits.data() + t * s.experts;
    std::copy(dprobAux.begin(), dprobAux.end(), dl);
    topKBackward(pt, indices.data() + t * s.topK, weights.data() + t * s.topK,
                 dweights + t * s.topK, dl, s);
    float dotProbs = dot(pt, dl, s.experts);
    for (int64_t e = 0; e < s.experts; ++e)
      dl[e] = pt[e] * (dl[e] - dotProbs);
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

namespace {

/// gatePre, upPre [ffn] = gate[e] xt, up[e] xt; act = silu(gatePre) * upPre.
void expertHidden(const float *xt, const float *gateE, const float *upE,
                  float *gatePre, float *upPre, float *act,
                  const ExpertShape &s) {
  for (int64_t f = 0; f < s.ffn; ++f) {
    gatePre[f] = dot(gateE + f * s.hidden, xt, s.hidden);
    upPre[f] = dot(upE + f * s.hidden, xt, s.hidden);
    act[f] = gatePre[f] * sigmoid(gatePre[f]) * upPre[f];
  }
}

/// Scratch of one routed slot in the backward: the hidden activation and the
/// gradients of the gate and up pre-activations, [tokens * topK, ffn] each.
struct SlotGrads {
  std::vector<float> act, dGatePre, dUpPre;
};

/// Backward of one (token, slot) pair: adds to dxt and *dweight, and stores
/// what the per-expert weight gradients need in slot `i` of `g`.
void slotBackward(const float *xt, float weight, const float *gateE,
                  const float *upE, const float *downE, const float *dyt,
                  float *dxt, float *dweight, SlotGrads &g, int64_t i,
                  float *dact, const ExpertShape &s) {
  float *act = g.act.data() + i * s.ffn;
  float *dg = g.dGatePre.data() + i * s.ffn;
  float *du = g.dUpPre.data() + i * s.ffn;
  expertHidden(xt, gateE, upE, dg, du, act, s); // dg, du hold gate/up pre-acts
  float dwSum = 0.0f;
  std::fill(dact, dact + s.ffn, 0.0f);
  for (int64_t h = 0; h < s.hidden; ++h) {
    const float *downRow = downE + h * s.ffn;
    dwSum += dyt[h] * dot(downRow, act, s.ffn);
    for (int64_t f = 0; f < s.ffn; ++f)
      dact[f] += dyt[h] * downRow[f];
  }
  *dweight += dwSum;
  for (int64_t f = 0; f < s.ffn; ++f) {
    float a = dg[f], u = du[f], sig = sigmoid(a), d = weight * dact[f];
    dg[f] = d * u * sig * (1.0f + a * (1.0f - sig)); // silu' = sig(1+a(1-sig))
    du[f] = d * a * sig;
    for (int64_t h = 0; h < s.hidden; ++h)
      dxt[h] += dg[f] * gateE[f * s.hidden + h] + du[f] * upE[f * s.hidden + h];
  }
}

} // namespace

void expertFfnForward(const float *x, const float *weights,
                      const int32_t *indices, const float *gate,
                      const float *up, const float *down, float *y,
                      const ExpertShape &shape) {
  const ExpertShape &s = shape;
  int64_t fh = s.ffn * s.hidden;
#pragma omp parallel
  {
    std::vector<float> gatePre(s.ffn), upPre(s.ffn), act(s.ffn);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < s.tokens; ++t) {
      const float *xt = x + t * s.hidden;
      float *yt = y + t * s.hidden;
      std::fill(yt, yt + s.hidden, 0.0f);
      for (int64_t k = 0; k < s.topK; ++k) {
        int64_t e = indices[t * s.topK + k];
        float wk = weights[t * s.topK + k];
        expertHidden(xt, gate + e * fh, up + e * fh, gatePre.data(),
                     upPre.data(), act.data(), s);
        for (int64_t h = 0; h < s.hidden; ++h)
          yt[h] += wk * dot(down + e * fh + h * s.ffn, act.data(), s.ffn);
      }
    }
  }
}

void expertFfnBackward(const float *x, const float *weights,
                       const int32_t *indices, const float *gate,
                       const float *up, const float *down, const float *dy,
                       float *dx, float *dweights, float *dgate, float *dup,
                       float *ddown, const ExpertShape &shape) {
  const ExpertShape &s = shape;
  int64_t fh = s.ffn * s.hidden, slots = s.tokens * s.topK;
  SlotGrads g{std::vector<float>(slots * s.ffn),
              std::vector<float>(slots * s.ffn),
              std::vector<float>(slots * s.ffn)};
  // Per token: dx and dweights, and the per-slot activations and gradients.
#pragma omp parallel
  {
    std::vector<float> dact(s.ffn);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < s.tokens; ++t) {
      for (int64_t k = 0; k < s.topK; ++k) {
        int64_t i = t * s.topK + k, e = indices[i];
        slotBackward(x + t * s.hidden, weights[i], gate + e * fh, up + e * fh,
                     down + e * fh, dy + t * s.hidden, dx + t * s.hidden,
                     dweights + i, g, i, dact.data(), s);
      }
    }
  }
  // Per expert: one thread owns its dgate, dup, ddown slices and adds the
  // routed slots in token order.
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < s.experts; ++e) {
    float *dgE = dgate + e * fh, *duE = dup + e * fh, *ddE = ddown + e * fh;
    for (int64_t i = 0; i < slots; ++i) {
      if (indices[i] != e)
        continue;
      const float *xt = x + (i / s.topK) * s.hidden;
      const float *dyt = dy + (i / s.topK) * s.hidden;
      const float *act = g.act.data() + i * s.ffn;
      const float *dg = g.dGatePre.data() + i * s.ffn;
      const float *du = g.dUpPre.data() + i * s.ffn;
      for (int64_t f = 0; f < s.ffn; ++f)
        for (int64_t h = 0; h < s.hidden; ++h) {
          dgE[f * s.hidden + h] += dg[f] * xt[h];
          duE[f * s.hidden + h] += du[f] * xt[h];
        }
      for (int64_t h = 0; h < s.hidden; ++h)
        for (int64_t f = 0; f < s.ffn; ++f)
          ddE[h * s.ffn + f] += weights[i] * dyt[h] * act[f];
    }
  }
}

} // namespace mt::cpu
