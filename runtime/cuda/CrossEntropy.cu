// Cross-entropy kernels: one block per row. Rows of an odd vocabulary are
// not 16-byte aligned, so each row is walked as a scalar head up to the
// first aligned address, a body of 8-element (16-byte) groups, a scalar tail.
#include "runtime/cuda/CrossEntropy.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/Vector.cuh"

#include <cstdint>

namespace mt::cuda {

namespace {

using vec::pack8;
using vec::unpack8;

constexpr int kRowThreads = 512;
constexpr int kFinalThreads = 1024;
constexpr float kLog2e = 1.4426950408889634f;

/// Scalar elements before the first 16-byte-aligned one (at most 7).
__device__ __forceinline__ int64_t headElements(const bf16 *row, int64_t n) {
  const auto address = reinterpret_cast<uintptr_t>(row);
  return min(n, int64_t((16 - address % 16) % 16 / sizeof(bf16)));
}



/// Running (max, sum of exp(x - max)); -inf max means an empty sum, which
/// must not meet exp(-inf - -inf) = NaN.
struct OnlineLse {
  float max = -INFINITY, sum = 0.0f;

  __device__ void add(const float *v, int count) {
    float m = max;
    for (int i = 0; i < count; ++i)
      m = fmaxf(m, v[i]);
    if (m == -INFINITY)
      return;
    float s = sum * exp2f((max - m) * kLog2e);
    for (int i = 0; i < count; ++i)
      s += exp2f((v[i] - m) * kLog2e);
    max = m;
    sum = s;
  }
  __device__ void merge(float otherMax, float otherSum) {
    const float m = fmaxf(max, otherMax);
    if (m == -INFINITY)
      return;
    sum = sum * exp2f((max - m) * kLog2e) + otherSum * exp2f((otherMax - m) * kLog2e);
    max = m;
  }
};

__global__ void __launch_bounds__(kRowThreads)
    rowLseKernel(const bf16 *logits, float *lse, int64_t vocab) {
  const bf16 *row = logits + blockIdx.x * vocab;
  const int64_t head = headElements(row, vocab);
  const int64_t groups = (vocab - head) / 8;
  const int64_t tail = head + groups * 8;
  OnlineLse acc;
  for (int64_t i = threadIdx.x; i < head; i += kRowThreads) {
    const float v = __bfloat162float(row[i]);
    acc.add(&v, 1);
  }
  const uint4 *body = reinterpret_cast<const uint4 *>(row + head);
#pragma unroll 2
  for (int64_t g = threadIdx.x; g < groups; g += kRowThreads) {
    float v[8];
    unpack8(body[g], v);
    acc.add(v, 8);
  }
  for (int64_t i = tail + threadIdx.x; i < vocab; i += kRowThreads) {
    const float v = __bfloat162float(row[i]);
    acc.add(&v, 1);
  }
  // Warps, then the block's warps in order.
  for (int offset = 16; offset > 0; offset /= 2)
    acc.merge(__shfl_xor_sync(0xffffffffu, acc.max, offset),
              __shfl_xor_sync(0xffffffffu, acc.sum, offset));
  __shared__ float2 partial[kRowThreads / 32];
  if (threadIdx.x % 32 == 0)
    partial[threadIdx.x / 32] = make_float2(acc.max, acc.sum);
  __syncthreads();
  if (threadIdx.x == 0) {
    OnlineLse total;
    for (int w = 0; w < kRowThreads / 32; ++w)
      total.merge(partial[w].x, partial[w].y);
    lse[blockIdx.x] = total.max + logf(total.sum);
  }
}

/// One block: mask total and the masked loss sum in fp64, each thread over
/// a fixed stride of tokens, then a fixed tree: the same result every run.
__global__ void __launch_bounds__(kFinalThreads)
    lossKernel(const bf16 *logits, const int32_t *labels, const float *mask,
               const float *lse, float *loss, float *maskTotal, int64_t tokens,
               int64_t vocab) {
  __shared__ double sums[2][kFinalThreads];
  double total = 0.0, lossSum = 0.0;
  for (int64_t t = threadIdx.x; t < tokens; t += kFinalThreads) {
    const float w = mask[t];
    if (w == 0.0f)
      continue;
    const float target = __bfloat162float(logits[t * vocab + labels[t]]);
    total += w;
    lossSum += double(w) * (double(lse[t]) - target);
  }
  sums[0][threadIdx.x] = total;
  sums[1][threadIdx.x] = lossSum;
  __syncthreads();
  for (int half = kFinalThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      sums[0][threadIdx.x] += sums[0][threadIdx.x + half];
      sums[1][threadIdx.x] += sums[1][threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    *maskTotal = float(sums[0][0]);
    *loss = sums[0][0] == 0.0 ? 0.0f : float(sums[1][0] / sums[0][0]);
  }
}

/// scale * (p - onehot) of one element, p from the row's log-sum-exp.
__device__ __forceinline__ float ceGrad(float x, float lse, float scale,
                                        bool isLabel) {
  const float p = exp2f((x - lse) * kLog2e);
  return scale * (isLabel ? p - 1.0f : p);
}

/// Vectorized when logits and dlogits share their alignment modulo 16, so
/// one head/body/tail split serves both rows.
template <bool kVec>
__global__ void __launch_bounds__(kRowThreads)
    backwardKernel(const bf16 *logits, const int32_t *labels, const float *mask,
                   const float *lse, const float *maskTotal, const float *dloss,
                   bf16 *dlogits, int64_t vocab) {
  const int64_t t = blockIdx.x;
  const bf16 *row = logits + t * vocab;
  bf16 *out = dlogits + t * vocab;
  const float w = mask[t];
  // A masked row's gradient is 0: written without reading its logits.
  const float scale = w == 0.0f ? 0.0f : *dloss * w / *maskTotal;
  const int64_t label = w == 0.0f ? -1 : labels[t];
  const float l = w == 0.0f ? 0.0f : lse[t];
  auto scalar = [&](int64_t i) {
    out[i] = __float2bfloat16_rn(
        w == 0.0f ? 0.0f : ceGrad(__bfloat162float(row[i]), l, scale, i == label));
  };
  const int64_t head = kVec ? headElements(row, vocab) : vocab;
  for (int64_t i = threadIdx.x; i < head; i += kRowThreads)
    scalar(i);
  if constexpr (kVec) {
    const int64_t groups = (vocab - head) / 8;
    const uint4 *in = reinterpret_cast<const uint4 *>(row + head);
    uint4 *dst = reinterpret_cast<uint4 *>(out + head);
#pragma unroll 2
    for (int64_t g = threadIdx.x; g < groups; g += kRowThreads) {
      float v[8] = {};
      if (w != 0.0f) {
        unpack8(in[g], v);
        const int64_t first = head + g * 8;
#pragma unroll
        for (int i = 0; i < 8; ++i)
          v[i] = ceGrad(v[i], l, scale, first + i == label);
      }
      dst[g] = pack8(v);
    }
    for (int64_t i = head + groups * 8 + threadIdx.x; i < vocab; i += kRowThreads)
      scalar(i);
  }
}

} // namespace

Status crossEntropyForward(const bf16 *logits, const int32_t *labels,
                           const float *mask, float *lse, float *loss,
                           float *maskTotal, int64_t tokens, int64_t vocab,
                           cudaStream_t stream) {
  if (vocab <= 0)
    return Status::error(errorContext() + "crossEntropyForward: vocab (" +
                         std::to_string(vocab) + ") must be > 0");
  if (tokens > 0) {
    rowLseKernel<<<tokens, kRowThreads, 0, stream>>>(logits, lse, vocab);
    MT_CUDA_CHECK_LAUNCH("rowLseKernel");
  }
  lossKernel<<<1, kFinalThreads, 0, stream>>>(logits, labels, mask, lse, loss,
                                              maskTotal, tokens, vocab);
  MT_CUDA_CHECK_LAUNCH("lossKernel");
  return Status::ok();
}

Status crossEntropyBackward(const bf16 *logits, const int32_t *labels,
                            const float *mask, const float *lse,
                            const float *maskTotal, const float *dloss, bf16 *dlogits,
                            int64_t tokens, int64_t vocab, cudaStream_t stream) {
  if (tokens == 0 || vocab == 0)
    return Status::ok();
  const auto a = reinterpret_cast<uintptr_t>(logits);
  const auto b = reinterpret_cast<uintptr_t>(dlogits);
  if ((a > b ? a - b : b - a) % 16 == 0)
    backwardKernel<true><<<tokens, kRowThreads, 0, stream>>>(
        logits, labels, mask, lse, maskTotal, dloss, dlogits, vocab);
  else
    backwardKernel<false><<<tokens, kRowThreads, 0, stream>>>(
        logits, labels, mask, lse, maskTotal, dloss, dlogits, vocab);
  MT_CUDA_CHECK_LAUNCH("crossEntropyBackward");
  return Status::ok();
}

} // namespace mt::cuda
