// The softmax top-k router (fp32), its load-balancing and z losses and
// backward, and the shared expert's sigmoid gate. The router's three
// products (logits, dx, dw) run as fp32 GEMMs on cuBLAS; then one block per
// token for the softmax and top-k. Every sum runs in a fixed order (cuBLAS's
// for a given GPU and shape), so results are deterministic.
#include "runtime/cuda/MoE.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/GridStride.cuh"
#include "runtime/plan/KernelWorkspace.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace mt::cuda {
namespace {

constexpr int kRouterThreads = 128; // 4 warps: one expert's dot product each

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

/// The router's scratch: probs (first the logits) and dlogits [tokens,
/// experts], weights and indices [tokens, topK] (backward's recomputed
/// routing), lse [tokens] (the logits' log-sum-exp, for the z-loss), per
/// (group, expert) the routed slots and the summed probabilities, and x in
/// fp32 [tokens, hidden] (backward: then dx in fp32).
struct RouterScratch {
  float *probs, *weights, *dlogits, *lse, *x32;
  double *probSum;
  int32_t *indices, *counts;

  RouterScratch(void *workspace, const RouterShape &s) {
    auto *p = static_cast<char *>(workspace);
    auto take = [&](size_t bytes) {
      char *at = p;
      p += plan::workspacePart(bytes);
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
    x32 = reinterpret_cast<float *>(take(sizeof(float) * size_t(s.tokens * s.hidden)));
  }
  static size_t bytes(const RouterShape &s) {
    return plan::moeRouterWorkspaceBytes(s.tokens, s.hidden, s.experts, s.topK, balanceGroups(s));
  }
};

__device__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// NaN ranks below every number, as in the CPU reference's top-k.
__device__ float rankKey(float p) { return isnan(p) ? -INFINITY : p; }

/// Per token: probs = softmax(logits) (max-subtracted; the logits x w^T
/// are in `probs` on entry) and lse = the logits' log-sum-exp, then the
/// top-k in descending probability, ties to the lower index
/// (cpu::tokenTopK). Dynamic shared memory: logits [experts], fp32.
__global__ void routeKernel(float *probs, float *lse, float *weights, int32_t *indices,
                            RouterShape s) {
  extern __shared__ float logit[];
  const int64_t t = blockIdx.x;
  for (int64_t e = threadIdx.x; e < s.experts; e += blockDim.x)
    logit[e] = probs[t * s.experts + e];
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

/// Per token (one thread each): dlogits = softmax backward of the top-k
/// weights' gradient plus the balancing loss's (daux · scale ·
/// count[g(t), e]), plus the z-loss's (dz · zLossCoeff · 2 lse_t / T ·
/// probs[t, e]) (cpu::moeRouterBackward; dx and dw are GEMMs after it).
/// Shared: dprobs [experts] per thread of the block.
__global__ void routerBackwardTokenKernel(const float *probs, const float *lse,
                                          const float *weights, const int32_t *indices,
                                          const int32_t *counts, const float *dweights,
                                          const float *daux, const float *dz, float *dlogits,
                                          int64_t perGroup, double balance, RouterShape s) {
  extern __shared__ float shared[];
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= s.tokens)
    return;
  float *dl = shared + threadIdx.x * s.experts;
  const float *pt = probs + t * s.experts;
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

/// The tokens of a block of routerBackwardTokenKernel: its dprobs rows fit
/// 48 KiB of shared memory.
int backwardTokensPerBlock(const RouterShape &s) {
  return int(std::clamp<int64_t>(48 * 1024 / (int64_t(sizeof(float)) * s.experts), 1, 128));
}

/// y (=|+=) x, x fp32 and y bf16 (one rounding of the sum).
__global__ void floatIntoBf16Kernel(const float *x, bf16 *y, bool add, int64_t n) {
  for (int64_t i = grid::groupStart<1>(); i < n; i += grid::groupStride<1>())
    y[i] = __float2bfloat16(add ? __bfloat162float(y[i]) + x[i] : x[i]);
}

/// Column-major C (m x n) = op(A) op(B) + beta C, fp32 (cuBLAS's default
/// math: no TF32), on `stream`; the row-major products map onto it as
/// GemmRunner's do (runtime/cuda/Gemm.h).
Status sgemm(const RouterBlas &blas, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
             int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,
             float beta, float *c, int64_t ldc, cudaStream_t stream) {
  const float one = 1.0f;
  MT_CUBLAS_CHECK(cublasSetStream(blas.handle(), stream));
  MT_CUBLAS_CHECK(cublasSgemm(blas.handle(), ta, tb, int(m), int(n), int(k), &one, a, int(lda),
                              b, int(ldb), &beta, c, int(ldc)));
  return Status::ok();
}

/// Routes every token and takes the per-(group, expert) statistics; leaves
/// x in fp32 in scratch.x32.
Status route(const RouterBlas &blas, const bf16 *x, const float *w, float *weights,
             int32_t *indices, RouterScratch &scratch, const RouterShape &s,
             cudaStream_t stream) {
  const int64_t groups = balanceGroups(s);
  if (groups > 65535) // a grid dimension of expertStatsKernel
    return Status::error("moe_router: " + std::to_string(groups) +
                         " sequences in a micro-batch for seq_aux_loss; at most 65535");
  MT_CUDA_RETURN_IF_ERROR(castBf16ToFloat(x, scratch.x32, s.tokens * s.hidden, stream));
  // logits [tokens, experts] = x w^T: column-major logits^T = w^T x^T.
  MT_CUDA_RETURN_IF_ERROR(sgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, s.experts, s.tokens, s.hidden, w,
                           s.hidden, scratch.x32, s.hidden, 0.0f, scratch.probs, s.experts,
                           stream));
  const size_t smem = sizeof(float) * size_t(s.experts);
  routeKernel<<<s.tokens, kRouterThreads, smem, stream>>>(scratch.probs, scratch.lse, weights,
                                                          indices, s);
  MT_CUDA_CHECK_LAUNCH("moe_route");
  expertStatsKernel<<<dim3(unsigned(s.experts), unsigned(groups)), kRouterThreads, 0, stream>>>(
      scratch.probs, indices, scratch.counts, scratch.probSum, s.tokens / groups, s);
  MT_CUDA_CHECK_LAUNCH("moe_expert_stats");
  return Status::ok();
}

} // namespace

size_t moeRouterWorkspaceBytes(const RouterShape &shape) { return RouterScratch::bytes(shape); }

Status moeRouterForward(const RouterBlas &blas, const bf16 *x, const float *w, float *weights,
                        int32_t *indices, float *aux, float *z, void *workspace,
                        const RouterShape &s, cudaStream_t stream) {
  if (s.tokens == 0)
    return Status::ok();
  RouterScratch scratch(workspace, s);
  MT_CUDA_RETURN_IF_ERROR(route(blas, x, w, weights, indices, scratch, s, stream));
  auxLossKernel<<<1, kRouterThreads, 0, stream>>>(scratch.counts, scratch.probSum, scratch.lse,
                                                  aux, z, balanceGroups(s), balanceScale(s), s);
  MT_CUDA_CHECK_LAUNCH("moe_aux_loss");
  return Status::ok();
}

Status moeRouterBackward(const RouterBlas &blas, const bf16 *x, const float *w,
                         const float *dweights, const float *daux, const float *dz, bf16 *dx,
                         bool addDx, float *dw, void *workspace, const RouterShape &s,
                         cudaStream_t stream) {
  if (s.tokens == 0)
    return Status::ok();
  RouterScratch scratch(workspace, s);
  MT_CUDA_RETURN_IF_ERROR(route(blas, x, w, scratch.weights, scratch.indices, scratch, s, stream));
  const int perBlock = backwardTokensPerBlock(s);
  routerBackwardTokenKernel<<<unsigned((s.tokens + perBlock - 1) / perBlock), perBlock,
                              sizeof(float) * size_t(perBlock * s.experts), stream>>>(
      scratch.probs, scratch.lse, scratch.weights, scratch.indices, scratch.counts, dweights,
      daux, dz, scratch.dlogits, s.tokens / balanceGroups(s), balanceScale(s), s);
  MT_CUDA_CHECK_LAUNCH("moe_router_bwd");
  // dw [experts, hidden] += dlogits^T x: column-major dw^T += x^T dlogits.
  MT_CUDA_RETURN_IF_ERROR(sgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, s.hidden, s.experts, s.tokens,
                           scratch.x32, s.hidden, scratch.dlogits, s.experts, 1.0f, dw, s.hidden,
                           stream));
  // dx [tokens, hidden] = dlogits w, in fp32 where x32 was, then into bf16.
  MT_CUDA_RETURN_IF_ERROR(sgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, s.hidden, s.tokens, s.experts, w,
                           s.hidden, scratch.dlogits, s.experts, 0.0f, scratch.x32, s.hidden,
                           stream));
  const int64_t n = s.tokens * s.hidden;
  floatIntoBf16Kernel<<<grid::gridFor(n), grid::kThreads, 0, stream>>>(scratch.x32, dx, addDx,
                                                                       n);
  MT_CUDA_CHECK_LAUNCH("moe_router_dx");
  return Status::ok();
}

Expected<std::unique_ptr<RouterBlas>> RouterBlas::create() {
  std::unique_ptr<RouterBlas> blas(new RouterBlas);
  MT_CUBLAS_CHECK(cublasCreate(&blas->handle_));
  // A workspace of its own: cuBLAS then allocates nothing inside a CUDA
  // graph's capture.
  MT_CUDA_CHECK(cudaMalloc(&blas->workspace_, kWorkspaceBytes));
  MT_CUBLAS_CHECK(cublasSetWorkspace(blas->handle_, blas->workspace_, kWorkspaceBytes));
  Expected<std::unique_ptr<RouterBlas>> created(std::move(blas));
  return created;
}

RouterBlas::~RouterBlas() {
  if (handle_)
    (void)cublasDestroy(handle_);
  if (workspace_)
    (void)cudaFree(workspace_);
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
