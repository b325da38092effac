// The softmax top-k router (fp32), its load-balancing and z losses and
// backward, and the shared expert's sigmoid gate. One block per token for the
// routing; every sum runs in a fixed order, so results are deterministic.
#include "runtime/cuda/MoE.h"

#include "runtime/cuda/Check.h"

#include <cmath>
#include <string>

namespace mt::cuda {
namespace {

constexpr int kRouterThreads = 128; // 4 warps: one expert's dot product each

size_t roundUp(size_t n) { return (n + 255) / 256 * 256; }

/// The tokens over which the balancing loss takes f_e and P_e: the
/// micro-batch, or each sequence with seqAuxLoss (cpu::balanceGroups).
int64_t balanceGroups(const RouterShape &s) {
  return s.loadBalancing == LoadBalancing::seqAuxLoss ? s.tokens / s.seq : 1;
}

/// d(balancing loss)/d probs[t, e] / daux = scale · count[g(t), e]:
/// scale = coeff · E / (topK · T_g² · groups), 0 with none (cpu::balanceScale).
double balanceScale(const RouterShape &s) {
  if (s.loadBalancing == LoadBalancing::none)
    return 0.0;
  const int64_t groups = balanceGroups(s);
  const double perGroup = double(s.tokens / groups);
  return double(s.auxLossCoeff) * double(s.experts) /
         (double(s.topK) * perGroup * perGroup * double(groups));
}

/// The router's scratch: probs and dlogits [tokens, experts], weights and
/// indices [tokens, topK] (backward's recomputed routing), lse [tokens] (the
/// logits' log-sum-exp, for the z-loss), and per (group, expert) the routed
/// slots and the summed probabilities.
struct RouterScratch {
  float *probs, *weights, *dlogits, *lse;
  double *probSum;
  int32_t *indices, *counts;

  RouterScratch(void *workspace, const RouterShape &s) {
    auto *p = static_cast<char *>(workspace);
    auto take = [&](size_t bytes) {
      char *at = p;
      p += roundUp(bytes);
      return at;
    };
    const size_t TE = size_t(s.tokens * s.experts), TK = size_t(s.tokens * s.topK),
                 GE = size_t(balanceGroups(s) * s.experts);
    probs = reinterpret_cast<float *>(take(sizeof(float) * TE));
    dlogits = reinterpret_cast<float *>(take(sizeof(float) * TE));
    weights = reinterpret_cast<float *>(take(sizeof(float) * TK));
    indices = reinterpret_cast<int32_t *>(take(sizeof(int32_t) * TK));
    lse = reinterpret_cast<float *>(take(sizeof(float) * size_t(s.tokens)));
    probSum = reinterpret_cast<double *>(take(sizeof(double) * GE));
    counts = reinterpret_cast<int32_t *>(take(sizeof(int32_t) * GE));
  }
  static size_t bytes(const RouterShape &s) {
    const size_t TE = size_t(s.tokens * s.experts), TK = size_t(s.tokens * s.topK),
                 GE = size_t(balanceGroups(s) * s.experts);
    return 2 * roundUp(sizeof(float) * TE) + roundUp(sizeof(float) * TK) +
           roundUp(sizeof(int32_t) * TK) + roundUp(sizeof(float) * size_t(s.tokens)) +
           roundUp(sizeof(double) * GE) + roundUp(sizeof(int32_t) * GE);
  }
};

__device__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// NaN ranks below every number, as in the CPU reference's top-k.
__device__ float rankKey(float p) { return isnan(p) ? -INFINITY : p; }

/// Per token: probs = softmax(x w^T) (max-subtracted) and lse = the
/// logits' log-sum-exp, then the top-k in descending probability, ties to
/// the lower index (cpu::tokenTopK).
/// Dynamic shared memory: x row [hidden] and logits [experts], fp32.
__global__ void routeKernel(const bf16 *x, const float *w, float *probs, float *lse,
                            float *weights, int32_t *indices, RouterShape s) {
  extern __shared__ float shared[];
  float *xs = shared, *logit = shared + s.hidden;
  const int64_t t = blockIdx.x;
  for (int64_t h = threadIdx.x; h < s.hidden; h += blockDim.x)
    xs[h] = __bfloat162float(x[t * s.hidden + h]);
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int64_t e = warp; e < s.experts; e += warps) {
    float acc = 0;
    for (int64_t h = lane; h < s.hidden; h += 32)
      acc += xs[h] * w[e * s.hidden + h];
    acc = warpSum(acc);
    if (lane == 0)
      logit[e] = acc;
  }
  __syncthreads();
  if (threadIdx.x != 0)
    return;
  float mx = -INFINITY, sum = 0;
  for (int64_t e = 0; e < s.experts; ++e)
    mx = fmaxf(mx, logit[e]);
  for (int64_t e = 0; e < s.experts; ++e) {
    logit[e] = expf(logit[e] - mx);
    sum += logit[e];
  }
  lse[t] = mx + logf(sum);
  float *pt = probs + t * s.experts;
  for (int64_t e = 0; e < s.experts; ++e)
    pt[e] = logit[e] / sum;
  int32_t *it = indices + t * s.topK;
  float *wt = weights + t * s.topK, chosen = 0;
  for (int64_t k = 0; k < s.topK; ++k) {
    int64_t best = -1;
    for (int64_t e = 0; e < s.experts; ++e) {
      if (k > 0) {
        float pp = rankKey(pt[it[k - 1]]), pe = rankKey(pt[e]);
        if (!(pe < pp || (pe == pp && e > it[k - 1])))
          continue;
      }
      if (best < 0 || rankKey(pt[e]) > rankKey(pt[best]))
        best = e;
    }
    it[k] = int32_t(best);
    wt[k] = pt[best];
    chosen += pt[best];
  }
  if (s.normTopkProb)
    for (int64_t k = 0; k < s.topK; ++k)
      wt[k] /= chosen;
}

/// One block per (expert e, group g): counts[g, e] (slots of the group's
/// tokens routed to e) and probSum[g, e] = sum of probs[t, e] over the
/// group, each summed in a fixed order.
__global__ void expertStatsKernel(const float *probs, const int32_t *indices, int32_t *counts,
                                  double *probSum, int64_t perGroup, RouterShape s) {
  __shared__ double partProb[kRouterThreads];
  __shared__ int partCount[kRouterThreads];
  const int64_t e = blockIdx.x, g = blockIdx.y, first = g * perGroup;
  double p = 0;
  int c = 0;
  for (int64_t t = first + threadIdx.x; t < first + perGroup; t += blockDim.x)
    p += probs[t * s.experts + e];
  for (int64_t i = first * s.topK + threadIdx.x; i < (first + perGroup) * s.topK;
       i += blockDim.x)
    c += indices[i] == e;
  partProb[threadIdx.x] = p;
  partCount[threadIdx.x] = c;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      partProb[threadIdx.x] += partProb[threadIdx.x + half];
      partCount[threadIdx.x] += partCount[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    counts[g * s.experts + e] = partCount[0];
    probSum[g * s.experts + e] = partProb[0];
  }
}

/// One block: aux = scale · sum_{g,e} counts[g, e] probSum[g, e] and
/// z = zLossCoeff · mean_t lse_t², in double, fixed order
/// (cpu::moeRouterForward).
__global__ void auxLossKernel(const int32_t *counts, const double *probSum, const float *lse,
                              float *aux, float *z, int64_t groups, double scale,
                              RouterShape s) {
  __shared__ double partBalance[kRouterThreads], partZ[kRouterThreads];
  double balance = 0, zSum = 0;
  for (int64_t i = threadIdx.x; i < groups * s.experts; i += blockDim.x)
    balance += double(counts[i]) * probSum[i];
  for (int64_t t = threadIdx.x; t < s.tokens; t += blockDim.x)
    zSum += double(lse[t]) * double(lse[t]);
  partBalance[threadIdx.x] = balance;
  partZ[threadIdx.x] = zSum;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      partBalance[threadIdx.x] += partBalance[threadIdx.x + half];
      partZ[threadIdx.x] += partZ[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    *aux = float(scale * partBalance[0]);
    *z = float(double(s.zLossCoeff) * partZ[0] / double(s.tokens));
  }
}

/// Per token: dlogits = softmax backward of the top-k weights' gradient plus
/// the balancing loss's (daux · scale · count[g(t), e]), plus the z-loss's
/// (dz · zLossCoeff · 2 lse_t / T · probs[t, e]), then dx[t] (=|+=)
/// dlogits[t] w (cpu::moeRouterBackward). Shared: dprobs [experts].
__global__ void routerBackwardTokenKernel(const float *w, const float *probs, const float *lse,
                                          const float *weights, const int32_t *indices,
                                          const int32_t *counts, const float *dweights,
                                          const float *daux, const float *dz, float *dlogits,
                                          bf16 *dx, bool addDx,
                                          int64_t perGroup, double balance, RouterShape s) {
  extern __shared__ float dl[];
  const int64_t t = blockIdx.x;
  const float *pt = probs + t * s.experts;
  if (threadIdx.x == 0) {
    const double scale = double(*daux) * balance;
    const int32_t *groupCounts = counts + (t / perGroup) * s.experts;
    for (int64_t e = 0; e < s.experts; ++e)
      dl[e] = float(scale * groupCounts[e]);
    const int32_t *it = indices + t * s.topK;
    const float *dwt = dweights + t * s.topK, *wt = weights + t * s.topK;
    if (!s.normTopkProb) {
      for (int64_t k = 0; k < s.topK; ++k)
        dl[it[k]] += dwt[k];
    } else {
      float sum = 0, dotWeights = 0;
      for (int64_t k = 0; k < s.topK; ++k) {
        sum += pt[it[k]];
        dotWeights += dwt[k] * wt[k];
      }
      for (int64_t k = 0; k < s.topK; ++k)
        dl[it[k]] += (dwt[k] - dotWeights) / sum;
    }
    float dotProbs = 0;
    for (int64_t e = 0; e < s.experts; ++e)
      dotProbs += pt[e] * dl[e];
    const float zScale = float(2.0 * double(*dz) * s.zLossCoeff / double(s.tokens));
    for (int64_t e = 0; e < s.experts; ++e) {
      dl[e] = pt[e] * (dl[e] - dotProbs + zScale * lse[t]);
      dlogits[t * s.experts + e] = dl[e];
    }
  }
  __syncthreads();
  for (int64_t h = threadIdx.x; h < s.hidden; h += blockDim.x) {
    float acc = 0;
    for (int64_t e = 0; e < s.experts; ++e)
      acc += dl[e] * w[e * s.hidden + h];
    bf16 *out = dx + t * s.hidden + h;
    *out = __float2bfloat16(addDx ? __bfloat162float(*out) + acc : acc);
  }
}

/// dw[e, h] += sum_t dlogits[t, e] x[t, h], tokens in order.
__global__ void routerWeightGradKernel(const bf16 *x, const float *dlogits, float *dw,
                                       RouterShape s) {
  const int64_t e = blockIdx.y, h = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (h >= s.hidden)
    return;
  float acc = 0;
  for (int64_t t = 0; t < s.tokens; ++t)
    acc += dlogits[t * s.experts + e] * __bfloat162float(x[t * s.hidden + h]);
  dw[e * s.hidden + h] += acc;
}

size_t routeSharedBytes(const RouterShape &s) {
  return sizeof(float) * size_t(s.hidden + s.experts);
}

/// Routes every token and takes the per-(group, expert) statistics.
Status route(const bf16 *x, const float *w, float *weights, int32_t *indices,
             RouterScratch &scratch, const RouterShape &s, cudaStream_t stream) {
  const int64_t groups = balanceGroups(s);
  if (groups > 65535) // a grid dimension of expertStatsKernel
    return Status::error("moe_router: " + std::to_string(groups) +
                         " sequences in a micro-batch for seq_aux_loss; at most 65535");
  const size_t smem = routeSharedBytes(s);
  if (smem > 48 * 1024)
    MT_CUDA_CHECK(cudaFuncSetAttribute(routeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(smem)));
  routeKernel<<<s.tokens, kRouterThreads, smem, stream>>>(x, w, scratch.probs, scratch.lse,
                                                          weights, indices, s);
  MT_CUDA_CHECK_LAUNCH("moe_route");
  expertStatsKernel<<<dim3(unsigned(s.experts), unsigned(groups)), kRouterThreads, 0, stream>>>(
      scratch.probs, indices, scratch.counts, scratch.probSum, s.tokens / groups, s);
  MT_CUDA_CHECK_LAUNCH("moe_expert_stats");
  return Status::ok();
}

} // namespace

size_t moeRouterWorkspaceBytes(const RouterShape &shape) { return RouterScratch::bytes(shape); }

Status moeRouterForward(const bf16 *x, const float *w, float *weights, int32_t *indices,
                        float *aux, float *z, void *workspace, const RouterShape &s,
                        cudaStream_t stream) {
  if (s.tokens == 0)
    return Status::ok();
  RouterScratch scratch(workspace, s);
  MT_CUDA_RETURN_IF_ERROR(route(x, w, weights, indices, scratch, s, stream));
  auxLossKernel<<<1, kRouterThreads, 0, stream>>>(scratch.counts, scratch.probSum, scratch.lse,
                                                  aux, z, balanceGroups(s), balanceScale(s), s);
  MT_CUDA_CHECK_LAUNCH("moe_aux_loss");
  return Status::ok();
}

Status moeRouterBackward(const bf16 *x, const float *w, const float *dweights,
                         const float *daux, const float *dz, bf16 *dx, bool addDx, float *dw,
                         void *workspace, const RouterShape &s, cudaStream_t stream) {
  if (s.tokens == 0)
    return Status::ok();
  RouterScratch scratch(workspace, s);
  MT_CUDA_RETURN_IF_ERROR(route(x, w, scratch.weights, scratch.indices, scratch, s, stream));
  routerBackwardTokenKernel<<<s.tokens, kRouterThreads, sizeof(float) * s.experts, stream>>>(
      w, scratch.probs, scratch.lse, scratch.weights, scratch.indices, scratch.counts, dweights,
      daux, dz, scratch.dlogits, dx, addDx, s.tokens / balanceGroups(s), balanceScale(s), s);
  MT_CUDA_CHECK_LAUNCH("moe_router_bwd");
  dim3 grid(unsigned((s.hidden + 255) / 256), unsigned(s.experts));
  routerWeightGradKernel<<<grid, 256, 0, stream>>>(x, scratch.dlogits, dw, s);
  MT_CUDA_CHECK_LAUNCH("moe_router_wgrad");
  return Status::ok();
}

namespace {

__device__ float sigmoidf(float a) { return 1.0f / (1.0f + expf(-a)); }

__global__ void sigmoidGateForwardKernel(const bf16 *gate, const bf16 *x, bf16 *y, int64_t rows,
                                         int64_t dim) {
  const int64_t n = rows * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(sigmoidf(__bfloat162float(gate[i / dim])) * __bfloat162float(x[i]));
}

/// One warp per row: the dot product in lane order, then a fixed tree.
__global__ void sigmoidGateBackwardKernel(const bf16 *gate, const bf16 *x, const bf16 *dy,
                                          bf16 *dgate, bool addDgate, bf16 *dx, bool addDx,
                                          int64_t rows, int64_t dim) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows)
    return;
  const float s = sigmoidf(__bfloat162float(gate[r]));
  float acc = 0;
  for (int64_t h = lane; h < dim; h += 32) {
    const int64_t i = r * dim + h;
    const float g = __bfloat162float(dy[i]);
    acc += g * __bfloat162float(x[i]);
    const float d = s * g;
    dx[i] = __float2bfloat16(addDx ? __bfloat162float(dx[i]) + d : d);
  }
  acc = warpSum(acc);
  if (lane == 0) {
    const float d = s * (1.0f - s) * acc;
    dgate[r] = __float2bfloat16(addDgate ? __bfloat162float(dgate[r]) + d : d);
  }
}

} // namespace

Status sigmoidGateForward(const bf16 *gate, const bf16 *x, bf16 *y, int64_t rows, int64_t dim,
                          cudaStream_t stream) {
  const int64_t n = rows * dim;
  if (n == 0)
    return Status::ok();
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65536);
  sigmoidGateForwardKernel<<<blocks, 256, 0, stream>>>(gate, x, y, rows, dim);
  MT_CUDA_CHECK_LAUNCH("sigmoid_gate_fwd");
  return Status::ok();
}

Status sigmoidGateBackward(const bf16 *gate, const bf16 *x, const bf16 *dy, bf16 *dgate,
                           bool addDgate, bf16 *dx, bool addDx, int64_t rows, int64_t dim,
                           cudaStream_t stream) {
  if (rows == 0)
    return Status::ok();
  sigmoidGateBackwardKernel<<<(rows + 7) / 8, 256, 0, stream>>>(gate, x, dy, dgate, addDgate, dx,
                                                                addDx, rows, dim);
  MT_CUDA_CHECK_LAUNCH("sigmoid_gate_bwd");
  return Status::ok();
}

} // namespace mt::cuda
