// Token permutation for the routed experts: the (token, slot) pairs sorted
// stably by expert (a counting sort, deterministic), gathered into expert
// order, and the experts' outputs combined back in slot order, forward and
// backward (runtime/cpu/MoEPermute.h is the reference).
#include "runtime/cuda/MoE.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/MoEShared.cuh"
#include "runtime/plan/KernelWorkspace.h"

namespace mt::cuda {
namespace {

constexpr int kScanThreads = 256;

/// One block per expert: counts[e], the slots routed to e.
__global__ void countKernel(const int32_t *indices, int64_t slots, int32_t *counts) {
  __shared__ int part[kScanThreads];
  const int e = blockIdx.x;
  int c = 0;
  for (int64_t i = threadIdx.x; i < slots; i += blockDim.x)
    c += indices[i] == e;
  part[threadIdx.x] = c;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half)
      part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    counts[e] = part[0];
}

/// One block per expert: its slots in slot order get the rows
/// offsets[e], offsets[e] + 1, ... (a stable counting sort), chunk by chunk
/// with a block-wide exclusive scan of the match flags.
__global__ void permuteKernel(const int32_t *indices, int64_t slots, const int32_t *offsets,
                              int32_t *perm, int32_t *rowOf) {
  __shared__ int warpTotals[kScanThreads / 32];
  __shared__ int chunkBase;
  const int e = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x == 0)
    chunkBase = offsets[e];
  __syncthreads();
  for (int64_t start = 0; start < slots; start += blockDim.x) {
    const int64_t i = start + threadIdx.x;
    const bool match = i < slots && indices[i] == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, match);
    if (lane == 0)
      warpTotals[warp] = __popc(ballot);
    __syncthreads();
    int before = chunkBase;
    for (int w = 0; w < warp; ++w)
      before += warpTotals[w];
    before += __popc(ballot & ((1u << lane) - 1u));
    if (match) {
      perm[before] = int32_t(i);
      rowOf[i] = before;
    }
    __syncthreads();
    if (threadIdx.x == 0)
      for (int w = 0; w < int(blockDim.x / 32); ++w)
        chunkBase += warpTotals[w];
    __syncthreads();
  }
}

/// xp[p] = x[token of slot perm[p]].
__global__ void gatherKernel(const bf16 *x, const int32_t *perm, bf16 *xp, int64_t rows,
                             int64_t hidden, int64_t topK) {
  const int64_t n = rows * hidden;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / hidden, h = i % hidden;
    xp[i] = x[(perm[p] / topK) * hidden + h];
  }
}

/// y[t] = sum_k weights[t, k] yp[rowOf[t, k]], slots in order (a row of
/// -1, a dropped slot, adds nothing).
__global__ void combineKernel(const bf16 *yp, const int32_t *rowOf, const float *weights, bf16 *y,
                              int64_t tokens, int64_t hidden, int64_t topK) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / hidden, h = i % hidden;
    float acc = 0;
    for (int64_t k = 0; k < topK; ++k) {
      const int32_t row = rowOf[t * topK + k];
      if (row >= 0)
        acc += weights[t * topK + k] * __bfloat162float(yp[int64_t(row) * hidden + h]);
    }
    y[i] = __float2bfloat16(acc);
  }
}

/// dx[t] (=|+=) sum_k dxp[rowOf[t, k]], slots in order, dropped ones (-1)
/// skipped.
__global__ void scatterGradKernel(const bf16 *dxp, const int32_t *rowOf, bf16 *dx, bool add,
                                  int64_t tokens, int64_t hidden, int64_t topK) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / hidden, h = i % hidden;
    float acc = add ? __bfloat162float(dx[i]) : 0.0f;
    for (int64_t k = 0; k < topK; ++k) {
      const int32_t row = rowOf[t * topK + k];
      if (row >= 0)
        acc += __bfloat162float(dxp[int64_t(row) * hidden + h]);
    }
    dx[i] = __float2bfloat16(acc);
  }
}

/// Per slot (one warp): dExpertOut[row] (=|+=) probs[slot] dy[token] and
/// dProbs[slot] += dot(expertOut[row], dy[token]); dropped slots skipped.
__global__ void unpermuteGradKernel(const bf16 *expertOut, const float *probs,
                                    const int32_t *slotRows, const bf16 *dy, bf16 *dExpertOut,
                                    bool add, float *dProbs, int64_t slots, int64_t hidden,
                                    int64_t topK) {
  const int64_t slot = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (slot >= slots || slotRows[slot] < 0)
    return;
  const int64_t row = slotRows[slot], t = slot / topK;
  const float p = probs[slot];
  float acc = 0;
  for (int64_t h = lane; h < hidden; h += 32) {
    const float g = __bfloat162float(dy[t * hidden + h]);
    acc += g * __bfloat162float(expertOut[row * hidden + h]);
    bf16 *out = dExpertOut + row * hidden + h;
    *out = __float2bfloat16(add ? __bfloat162float(*out) + p * g : p * g);
  }
  for (int o = 16; o > 0; o >>= 1)
    acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0)
    dProbs[slot] += acc;
}

/// moe_permute's scratch: expert offsets [experts + 1] and perm [rows].
struct PermuteScratch {
  int32_t *offsets, *perm;
  PermuteScratch(void *workspace, const PermuteShape &s) {
    offsets = static_cast<int32_t *>(workspace);
    perm = reinterpret_cast<int32_t *>(static_cast<char *>(workspace) +
                                       plan::workspacePart(4 * (size_t(s.experts) + 1)));
  }
  static size_t bytes(const PermuteShape &s) {
    return plan::moePermuteWorkspaceBytes(s.tokens, s.topK, s.experts);
  }
};

} // namespace

size_t moePermuteWorkspaceBytes(const PermuteShape &shape) {
  return PermuteScratch::bytes(shape);
}

Status moePermuteForward(const bf16 *x, const int32_t *indices, bf16 *permuted,
                         int32_t *tokensPerExpert, int32_t *slotRows, void *workspace,
                         const PermuteShape &s, cudaStream_t stream) {
  const int64_t slots = s.tokens * s.topK;
  PermuteScratch w(workspace, s);
  countKernel<<<s.experts, kScanThreads, 0, stream>>>(indices, slots, tokensPerExpert);
  MT_CUDA_CHECK_LAUNCH("moe_count");
  offsetsKernel<<<1, 1, 0, stream>>>(tokensPerExpert, w.offsets, s.experts);
  MT_CUDA_CHECK_LAUNCH("moe_offsets");
  if (slots == 0)
    return Status::ok();
  permuteKernel<<<s.experts, kScanThreads, 0, stream>>>(indices, slots, w.offsets, w.perm,
                                                        slotRows);
  MT_CUDA_CHECK_LAUNCH("moe_permute");
  gatherKernel<<<blocksFor(slots * s.hidden), 256, 0, stream>>>(x, w.perm, permuted, slots,
                                                                      s.hidden, s.topK);
  MT_CUDA_CHECK_LAUNCH("moe_gather");
  return Status::ok();
}

Status moePermuteBackward(const bf16 *dPermuted, const int32_t *slotRows, bf16 *dx, bool addDx,
                          const PermuteShape &s, cudaStream_t stream) {
  if (s.tokens * s.hidden == 0)
    return Status::ok();
  scatterGradKernel<<<blocksFor(s.tokens * s.hidden), 256, 0, stream>>>(
      dPermuted, slotRows, dx, addDx, s.tokens, s.hidden, s.topK);
  MT_CUDA_CHECK_LAUNCH("moe_permute_bwd");
  return Status::ok();
}

Status moeUnpermuteForward(const bf16 *expertOut, const float *probs, const int32_t *slotRows,
                           bf16 *y, const PermuteShape &s, cudaStream_t stream) {
  if (s.tokens * s.hidden == 0)
    return Status::ok();
  combineKernel<<<blocksFor(s.tokens * s.hidden), 256, 0, stream>>>(
      expertOut, slotRows, probs, y, s.tokens, s.hidden, s.topK);
  MT_CUDA_CHECK_LAUNCH("moe_unpermute");
  return Status::ok();
}

Status moeUnpermuteBackward(const bf16 *expertOut, const float *probs, const int32_t *slotRows,
                            const bf16 *dy, bf16 *dExpertOut, bool addDExpertOut, float *dProbs,
                            const PermuteShape &s, cudaStream_t stream) {
  const int64_t slots = s.tokens * s.topK;
  if (slots == 0)
    return Status::ok();
  unpermuteGradKernel<<<(slots + 7) / 8, 256, 0, stream>>>(expertOut, probs, slotRows, dy,
                                                           dExpertOut, addDExpertOut, dProbs,
                                                           slots, s.hidden, s.topK);
  MT_CUDA_CHECK_LAUNCH("moe_unpermute_bwd");
  return Status::ok();
}

} // namespace mt::cuda
