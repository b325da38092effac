// Vocab-parallel cross-entropy kernels: one block per row, a fixed tree
// reduction in shared memory (the same result every run).
#include "runtime/cuda/VocabParallel.h"

#include "runtime/cuda/Check.h"

namespace mt::cuda {
namespace {

constexpr int kThreads = 256;

/// The block's reduction of `v` by `op`, in a fixed tree; every thread gets it.
template <typename T, typename Op> __device__ T blockReduce(T v, T *shared, Op op) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half)
      shared[threadIdx.x] = op(shared[threadIdx.x], shared[threadIdx.x + half]);
    __syncthreads();
  }
  T result = shared[0];
  __syncthreads();
  return result;
}

__global__ void __launch_bounds__(kThreads)
    logitsMaxKernel(const bf16 *logits, float *rowMax, VocabSlice s) {
  __shared__ float shared[kThreads];
  const bf16 *row = logits + blockIdx.x * s.localVocab;
  float m = -INFINITY;
  for (int64_t v = threadIdx.x; v < s.columns; v += kThreads)
    m = fmaxf(m, __bfloat162float(row[v]));
  m = blockReduce(m, shared, [](float a, float b) { return fmaxf(a, b); });
  if (threadIdx.x == 0)
    rowMax[blockIdx.x] = m;
}

__global__ void __launch_bounds__(kThreads)
    predictedLogitsKernel(const bf16 *logits, const float *rowMax, const int32_t *labels,
                          float *predicted, float *sumExp, VocabSlice s) {
  __shared__ double shared[kThreads];
  const int64_t t = blockIdx.x;
  const bf16 *row = logits + t * s.localVocab;
  const float m = rowMax[t];
  double sum = 0.0;
  for (int64_t v = threadIdx.x; v < s.columns; v += kThreads)
    sum += exp(double(__bfloat162float(row[v])) - double(m));
  sum = blockReduce(sum, shared, [](double a, double b) { return a + b; });
  if (threadIdx.x == 0) {
    sumExp[t] = float(sum);
    const int64_t local = int64_t(labels[t]) - s.vocabStart;
    predicted[t] = local >= 0 && local < s.columns ? __bfloat162float(row[local]) : 0.0f;
  }
}

__global__ void __launch_bounds__(kThreads)
    lossKernel(const float *rowMax, const float *predicted, const float *sumExp,
               const float *mask, float *loss, int64_t tokens) {
  __shared__ double shared[kThreads];
  double total = 0.0, sum = 0.0;
  for (int64_t t = threadIdx.x; t < tokens; t += kThreads)
    if (mask[t] != 0.0f) {
      total += mask[t];
      sum += mask[t] * (log(double(sumExp[t])) + rowMax[t] - predicted[t]);
    }
  auto add = [](double a, double b) { return a + b; };
  total = blockReduce(total, shared, add);
  sum = blockReduce(sum, shared, add);
  if (threadIdx.x == 0)
    *loss = total > 0.0 ? float(sum / total) : 0.0f;
}

__global__ void __launch_bounds__(kThreads)
    maskTotalKernel(const float *mask, float *total, int64_t tokens) {
  __shared__ double shared[kThreads];
  double sum = 0.0;
  for (int64_t t = threadIdx.x; t < tokens; t += kThreads)
    sum += mask[t];
  sum = blockReduce(sum, shared, [](double a, double b) { return a + b; });
  if (threadIdx.x == 0)
    *total = float(sum);
}

__global__ void __launch_bounds__(kThreads)
    backwardKernel(const bf16 *logits, const int32_t *labels, const float *mask,
                   const float *rowMax, const float *sumExp, const float *dloss,
                   const float *maskTotal, bf16 *dlogits, VocabSlice s) {
  const int64_t t = blockIdx.x;
  const bf16 *row = logits + t * s.localVocab;
  bf16 *out = dlogits + t * s.localVocab;
  const float count = *maskTotal;
  const float scale = count > 0.0f ? *dloss * mask[t] / count : 0.0f;
  const float m = rowMax[t], inverse = 1.0f / sumExp[t];
  const int64_t label = int64_t(labels[t]) - s.vocabStart;
  for (int64_t v = threadIdx.x; v < s.localVocab; v += kThreads) {
    float g = 0.0f;
    if (v < s.columns && scale != 0.0f) {
      const float p = expf(__bfloat162float(row[v]) - m) * inverse;
      g = scale * (v == label ? p - 1.0f : p);
    }
    out[v] = __float2bfloat16(g);
  }
}

} // namespace

Status vocabParallelLogitsMax(const bf16 *logits, float *rowMax, const VocabSlice &s,
                              cudaStream_t stream) {
  if (s.tokens == 0)
    return Status::ok();
  logitsMaxKernel<<<s.tokens, kThreads, 0, stream>>>(logits, rowMax, s);
  MT_CUDA_CHECK_LAUNCH("logitsMaxKernel");
  return Status::ok();
}

Status vocabParallelPredictedLogits(const bf16 *logits, const float *rowMax,
                                    const int32_t *labels, float *predicted, float *sumExp,
                                    const VocabSlice &s, cudaStream_t stream) {
  if (s.tokens == 0)
    return Status::ok();
  predictedLogitsKernel<<<s.tokens, kThreads, 0, stream>>>(logits, rowMax, labels, predicted,
                                                           sumExp, s);
  MT_CUDA_CHECK_LAUNCH("predictedLogitsKernel");
  return Status::ok();
}

Status crossEntropyLoss(const float *rowMax, const float *predicted, const float *sumExp,
                        const float *mask, float *loss, int64_t tokens, cudaStream_t stream) {
  lossKernel<<<1, kThreads, 0, stream>>>(rowMax, predicted, sumExp, mask, loss, tokens);
  MT_CUDA_CHECK_LAUNCH("lossKernel");
  return Status::ok();
}

Status vocabParallelCrossEntropyBackward(const bf16 *logits, const int32_t *labels,
                                         const float *mask, const float *rowMax,
                                         const float *sumExp, const float *dloss,
                                         bf16 *dlogits, float *workspace, const VocabSlice &s,
                                         cudaStream_t stream) {
  if (s.tokens == 0)
    return Status::ok();
  maskTotalKernel<<<1, kThreads, 0, stream>>>(mask, workspace, s.tokens);
  MT_CUDA_CHECK_LAUNCH("maskTotalKernel");
  backwardKernel<<<s.tokens, kThreads, 0, stream>>>(logits, labels, mask, rowMax, sumExp, dloss,
                                                    workspace, dlogits, s);
  MT_CUDA_CHECK_LAUNCH("backwardKernel");
  return Status::ok();
}

} // namespace mt::cuda
