// AdamW, sum of squares and the finite check over lists of fp32 tensors.
// Tensors are cut into fixed 64K-element chunks; one launch covers up to
// kGroup tensors, its block b finding its tensor in a table passed by value
// (Apex's multi-tensor apply, without the device-side table upload).
#include "runtime/cuda/AdamW.h"

#include "runtime/cuda/Check.h"
#include "runtime/kernels/MasterRemainders.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mt::cuda {

namespace {

constexpr int64_t kChunk = 65536;
constexpr int kThreads = 256;
constexpr int kFinalThreads = 1024;
/// Tensors per launch: keeps the parameter table under 2 KB.
constexpr int kGroup = 32;

/// Chunks of this launch: tensor t owns chunks [firstChunk[t], firstChunk[t+1]).
struct ChunkTable {
  int64_t firstChunk[kGroup + 1];
  int64_t n[kGroup];
  bool vec[kGroup]; // all of the tensor's pointers 16-byte aligned
  int count;
};

struct AdamWGroup {
  ChunkTable table;
  float *param[kGroup];
  const float *grad[kGroup];
  float *m[kGroup], *v[kGroup];
  __nv_bfloat16 *shadow[kGroup]; // null: none
  uint16_t *remainder[kGroup];   // non-null: no param; shadow + remainder are the master
  float decay[kGroup];           // 1 - lr * weight decay, per tensor
};

struct SpanGroup {
  ChunkTable table;
  const float *data[kGroup];
};

/// The step's scalars, formed on the host as cpu::adamwStep forms them
/// (the decay factor is per tensor: AdamWGroup::decay).
struct AdamWScalars {
  float lerpWeight, beta2, oneMinusBeta2, negStepSize, bc2Sqrt, eps,
      gradScale;
};

bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
int64_t chunksOf(int64_t n) { return (n + kChunk - 1) / kChunk; }

__device__ __forceinline__ int findTensor(const ChunkTable &table, int64_t chunk) {
  int t = 0;
  while (t + 1 < table.count && table.firstChunk[t + 1] <= chunk)
    ++t;
  return t;
}

/// torch.lerp as cpu::adamwStep's helper: one fused multiply-add.
__device__ __forceinline__ float lerp(float start, float end, float weight) {
  const float diff = __fsub_rn(end, start);
  if (fabsf(weight) < 0.5f)
    return __fmaf_rn(weight, diff, start);
  return __fmaf_rn(__fsub_rn(weight, 1.0f), diff, end);
}

/// One element, every operation rounded on its own as on the CPU.
__device__ __forceinline__ void adamwElement(float &p, float grad, float &m,
                                             float &v, const AdamWScalars &s,
                                             float decay, float gradScale) {
  const float g = __fmul_rn(grad, gradScale);
  const float decayed = __fmul_rn(p, decay);
  const float mi = lerp(m, g, s.lerpWeight);
  const float vi = __fadd_rn(__fmul_rn(v, s.beta2),
                             __fmul_rn(__fmul_rn(s.oneMinusBeta2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2Sqrt), s.eps);
  p = __fadd_rn(decayed, __fdiv_rn(__fmul_rn(s.negStepSize, mi), denom));
  m = mi;
  v = vi;
}

/// One element kept as its bf16 copy and low bits (kernels::splitMaster).
__device__ __forceinline__ void adamwHalves(uint16_t &copy, uint16_t &low, float grad, float &m,
                                            float &v, const AdamWScalars &s, float decay,
                                            float gradScale) {
  float p = kernels::joinMaster(copy, low);
  adamwElement(p, grad, m, v, s, decay, gradScale);
  const kernels::MasterHalves h = kernels::splitMaster(p);
  copy = h.copy;
  low = h.remainder;
}

/// adamwKernel's chunk [start, end) of a tensor whose master is its copy
/// and remainder: 4 bytes a weight read and written instead of 4 + 2
/// written and 4 read. `vec`: grad, m, v 16-byte aligned, copy and
/// remainder 8-byte aligned.
__device__ void adamwRemainders(uint16_t *copy, uint16_t *low, const float *grad, float *m,
                                float *v, int64_t start, int64_t end, bool vec,
                                const AdamWScalars &s, float decay, float scale) {
  int64_t scalarFrom = start;
  if (vec) {
    const int64_t vecEnd = start + (end - start) / 4 * 4;
    for (int64_t i = start + threadIdx.x * 4; i < vecEnd; i += kThreads * 4) {
      ushort4 c4 = *reinterpret_cast<ushort4 *>(copy + i);
      ushort4 r4 = *reinterpret_cast<ushort4 *>(low + i);
      const float4 g4 = *reinterpret_cast<const float4 *>(grad + i);
      float4 m4 = *reinterpret_cast<float4 *>(m + i);
      float4 v4 = *reinterpret_cast<float4 *>(v + i);
      adamwHalves(c4.x, r4.x, g4.x, m4.x, v4.x, s, decay, scale);
      adamwHalves(c4.y, r4.y, g4.y, m4.y, v4.y, s, decay, scale);
      adamwHalves(c4.z, r4.z, g4.z, m4.z, v4.z, s, decay, scale);
      adamwHalves(c4.w, r4.w, g4.w, m4.w, v4.w, s, decay, scale);
      *reinterpret_cast<ushort4 *>(copy + i) = c4;
      *reinterpret_cast<ushort4 *>(low + i) = r4;
      *reinterpret_cast<float4 *>(m + i) = m4;
      *reinterpret_cast<float4 *>(v + i) = v4;
    }
    scalarFrom = vecEnd;
  }
  for (int64_t i = scalarFrom + threadIdx.x; i < end; i += kThreads)
    adamwHalves(copy[i], low[i], grad[i], m[i], v[i], s, decay, scale);
}

__global__ void __launch_bounds__(kThreads)
    adamwKernel(const AdamWGroup group, AdamWScalars s,
                const float *deviceGradScale) {
  const int64_t chunk = blockIdx.x;
  const int t = findTensor(group.table, chunk);
  const int64_t start = (chunk - group.table.firstChunk[t]) * kChunk;
  const int64_t end = min(group.table.n[t], start + kChunk);
  float *param = group.param[t], *m = group.m[t], *v = group.v[t];
  const float *grad = group.grad[t];
  __nv_bfloat16 *shadow = group.shadow[t];
  const float scale = deviceGradScale ? *deviceGradScale : s.gradScale;
  const float decay = group.decay[t];
  if (uint16_t *remainder = group.remainder[t])
    return adamwRemainders(reinterpret_cast<uint16_t *>(shadow), remainder, grad, m, v, start,
                           end, group.table.vec[t], s, decay, scale);
  int64_t scalarFrom = start;
  if (group.table.vec[t]) {
    const int64_t vecEnd = start + (end - start) / 4 * 4;
    for (int64_t i = start + threadIdx.x * 4; i < vecEnd; i += kThreads * 4) {
      float4 p4 = *reinterpret_cast<float4 *>(param + i);
      const float4 g4 = *reinterpret_cast<const float4 *>(grad + i);
      float4 m4 = *reinterpret_cast<float4 *>(m + i);
      float4 v4 = *reinterpret_cast<float4 *>(v + i);
      adamwElement(p4.x, g4.x, m4.x, v4.x, s, decay, scale);
      adamwElement(p4.y, g4.y, m4.y, v4.y, s, decay, scale);
      adamwElement(p4.z, g4.z, m4.z, v4.z, s, decay, scale);
      adamwElement(p4.w, g4.w, m4.w, v4.w, s, decay, scale);
      *reinterpret_cast<float4 *>(param + i) = p4;
      *reinterpret_cast<float4 *>(m + i) = m4;
      *reinterpret_cast<float4 *>(v + i) = v4;
      if (shadow) { // 8-byte aligned: half of a 16-byte aligned offset
        __nv_bfloat162 *out = reinterpret_cast<__nv_bfloat162 *>(shadow + i);
        out[0] = __floats2bfloat162_rn(p4.x, p4.y);
        out[1] = __floats2bfloat162_rn(p4.z, p4.w);
      }
    }
    scalarFrom = vecEnd;
  }
  for (int64_t i = scalarFrom + threadIdx.x; i < end; i += kThreads) {
    adamwElement(param[i], grad[i], m[i], v[i], s, decay, scale);
    if (shadow)
      shadow[i] = __float2bfloat16_rn(param[i]);
  }
}

/// partials[partialBase + chunk] = sum of x^2 over the chunk, fp32, with a
/// fixed thread assignment and tree: the same bits every run.
__global__ void __launch_bounds__(kThreads)
    sumSquaresKernel(const SpanGroup group, float *partials,
                     int64_t partialBase) {
  const int64_t chunk = blockIdx.x;
  const int t = findTensor(group.table, chunk);
  const int64_t start = (chunk - group.table.firstChunk[t]) * kChunk;
  const int64_t end = min(group.table.n[t], start + kChunk);
  const float *x = group.data[t];
  float sum = 0.0f;
  for (int64_t i = start + threadIdx.x; i < end; i += kThreads)
    sum += x[i] * x[i];
  for (int offset = 16; offset > 0; offset /= 2)
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  __shared__ float warpSum[kThreads / 32];
  if (threadIdx.x % 32 == 0)
    warpSum[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w)
      total += warpSum[w];
    partials[partialBase + chunk] = total;
  }
}

__global__ void __launch_bounds__(kFinalThreads)
    sumPartialsKernel(const float *partials, int64_t count, double *out) {
  __shared__ double sums[kFinalThreads];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kFinalThreads)
    sum += partials[i];
  sums[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kFinalThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half)
      sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    *out = sums[0];
}

__global__ void setFlagKernel(int32_t *flag, int32_t value) { *flag = value; }

/// out = fp32 of (sums[0] + sums[1] · share), as the CPU's sum_squares.
__global__ void combineSquaresKernel(const double *sums, double share, float *out) {
  *out = static_cast<float>(sums[0] + sums[1] * share);
}

__global__ void __launch_bounds__(kThreads)
    finiteKernel(const SpanGroup group, int32_t *finite) {
  const int64_t chunk = blockIdx.x;
  const int t = findTensor(group.table, chunk);
  const int64_t start = (chunk - group.table.firstChunk[t]) * kChunk;
  const int64_t end = min(group.table.n[t], start + kChunk);
  const float *x = group.data[t];
  int bad = 0;
  for (int64_t i = start + threadIdx.x; i < end; i += kThreads)
    bad |= !isfinite(x[i]);
  if (__syncthreads_or(bad) && threadIdx.x == 0)
    *finite = 0; // every writer writes 0: the race is benign
}

AdamWScalars scalarsOf(const kernels::AdamWParams &p) {
  // cpu::adamwStep's scalars, formed the same way (doubles rounded once).
  const double biasCorrection1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double biasCorrection2 = 1.0 - std::pow(p.beta2, double(p.step));
  return {static_cast<float>(1.0 - p.beta1),
          static_cast<float>(p.beta2),
          static_cast<float>(1.0 - p.beta2),
          static_cast<float>(-(p.lr / biasCorrection1)),
          static_cast<float>(std::sqrt(biasCorrection2)),
          static_cast<float>(p.eps),
          p.gradScale};
}

/// Calls add(tensor, slot) for each non-empty tensor and launch(chunks)
/// whenever kGroup tensors (or the last ones) fill the table; table is
/// reset between launches.
template <typename Item, typename Add, typename Launch>
Status forEachGroup(std::span<const Item> items, ChunkTable &table, Add add,
                    Launch launch) {
  table.count = 0;
  table.firstChunk[0] = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].n == 0)
      continue;
    const int slot = table.count++;
    add(items[i], slot);
    table.n[slot] = items[i].n;
    table.firstChunk[slot + 1] = table.firstChunk[slot] + chunksOf(items[i].n);
    if (table.count == kGroup) {
      MT_CUDA_RETURN_IF_ERROR(launch(table.firstChunk[table.count]));
      table.count = 0;
    }
  }
  if (table.count > 0)
    MT_CUDA_RETURN_IF_ERROR(launch(table.firstChunk[table.count]));
  return Status::ok();
}

} // namespace

Status adamwStep(std::span<const AdamWTensor> tensors,
                 const kernels::AdamWParams &p, const float *deviceGradScale,
                 cudaStream_t stream) {
  const AdamWScalars s = scalarsOf(p);
  AdamWGroup group{};
  auto add = [&](const AdamWTensor &t, int slot) {
    group.param[slot] = t.param;
    group.grad[slot] = t.grad;
    group.m[slot] = t.m;
    group.v[slot] = t.v;
    group.shadow[slot] = t.shadow;
    group.remainder[slot] = t.remainder;
    // As cpu::adamwStep forms it: the double product rounded once.
    group.decay[slot] =
        static_cast<float>(1.0 - p.lr * (t.weightDecay < 0 ? p.weightDecay : t.weightDecay));
    group.table.vec[slot] = (t.remainder ? reinterpret_cast<uintptr_t>(t.remainder) % 8 == 0
                                         : aligned16(t.param)) &&
                            aligned16(t.grad) && aligned16(t.m) && aligned16(t.v) &&
                            reinterpret_cast<uintptr_t>(t.shadow) % 8 == 0;
  };
  auto launch = [&](int64_t chunks) -> Status {
    adamwKernel<<<chunks, kThreads, 0, stream>>>(group, s, deviceGradScale);
    MT_CUDA_CHECK_LAUNCH("adamwKernel");
    return Status::ok();
  };
  return forEachGroup(tensors, group.table, add, launch);
}

namespace {
/// Elements per host chunk of the split and join: 2 × 32 MiB of host memory.
constexpr int64_t kHalvesChunk = int64_t(16) << 20;
} // namespace

Status splitMastersToDevice(const float *host, __nv_bfloat16 *copy, uint16_t *remainder,
                            int64_t n, cudaStream_t stream) {
  std::vector<uint16_t> copies(size_t(std::min(n, kHalvesChunk))), lows(copies.size());
  for (int64_t begin = 0; begin < n; begin += kHalvesChunk) {
    const int64_t count = std::min(kHalvesChunk, n - begin);
    for (int64_t i = 0; i < count; ++i) {
      const kernels::MasterHalves h = kernels::splitMaster(host[begin + i]);
      copies[size_t(i)] = h.copy;
      lows[size_t(i)] = h.remainder;
    }
    MT_CUDA_CHECK(cudaMemcpyAsync(copy + begin, copies.data(), size_t(count) * 2,
                                  cudaMemcpyHostToDevice, stream));
    MT_CUDA_CHECK(cudaMemcpyAsync(remainder + begin, lows.data(), size_t(count) * 2,
                                  cudaMemcpyHostToDevice, stream));
    MT_CUDA_CHECK(cudaStreamSynchronize(stream)); // the chunk is reused
  }
  return Status::ok();
}

Status joinMastersFromDevice(const __nv_bfloat16 *copy, const uint16_t *remainder, float *host,
                             int64_t n, cudaStream_t stream) {
  std::vector<uint16_t> copies(size_t(std::min(n, kHalvesChunk))), lows(copies.size());
  for (int64_t begin = 0; begin < n; begin += kHalvesChunk) {
    const int64_t count = std::min(kHalvesChunk, n - begin);
    MT_CUDA_CHECK(cudaMemcpyAsync(copies.data(), copy + begin, size_t(count) * 2,
                                  cudaMemcpyDeviceToHost, stream));
    MT_CUDA_CHECK(cudaMemcpyAsync(lows.data(), remainder + begin, size_t(count) * 2,
                                  cudaMemcpyDeviceToHost, stream));
    MT_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int64_t i = 0; i < count; ++i)
      host[begin + i] = kernels::joinMaster(copies[size_t(i)], lows[size_t(i)]);
  }
  return Status::ok();
}

size_t sumOfSquaresWorkspaceBytes(std::span<const FloatSpan> tensors) {
  int64_t chunks = 0;
  for (const FloatSpan &t : tensors)
    chunks += chunksOf(t.n);
  return static_cast<size_t>(chunks) * sizeof(float);
}

Status sumOfSquares(std::span<const FloatSpan> tensors, double *out,
                    void *workspace, cudaStream_t stream) {
  auto *partials = static_cast<float *>(workspace);
  int64_t done = 0; // partials written by earlier launches
  SpanGroup group{};
  auto add = [&](const FloatSpan &t, int slot) { group.data[slot] = t.data; };
  auto launch = [&](int64_t chunks) -> Status {
    sumSquaresKernel<<<chunks, kThreads, 0, stream>>>(group, partials, done);
    MT_CUDA_CHECK_LAUNCH("sumSquaresKernel");
    done += chunks;
    return Status::ok();
  };
  MT_CUDA_RETURN_IF_ERROR(forEachGroup(tensors, group.table, add, launch));
  sumPartialsKernel<<<1, kFinalThreads, 0, stream>>>(partials, done, out);
  MT_CUDA_CHECK_LAUNCH("sumPartialsKernel");
  return Status::ok();
}

Status weightedSumOfSquares(std::span<const FloatSpan> whole,
                            std::span<const FloatSpan> shared, double share, double *sums,
                            float *out, void *workspace, cudaStream_t stream) {
  MT_CUDA_RETURN_IF_ERROR(sumOfSquares(whole, sums, workspace, stream));
  MT_CUDA_RETURN_IF_ERROR(sumOfSquares(shared, sums + 1, workspace, stream));
  combineSquaresKernel<<<1, 1, 0, stream>>>(sums, share, out);
  MT_CUDA_CHECK_LAUNCH("combineSquaresKernel");
  return Status::ok();
}

Status allFinite(std::span<const FloatSpan> tensors, int32_t *finite,
                 cudaStream_t stream) {
  setFlagKernel<<<1, 1, 0, stream>>>(finite, 1);
  MT_CUDA_CHECK_LAUNCH("setFlagKernel");
  SpanGroup group{};
  auto add = [&](const FloatSpan &t, int slot) { group.data[slot] = t.data; };
  auto launch = [&](int64_t chunks) -> Status {
    finiteKernel<<<chunks, kThreads, 0, stream>>>(group, finite);
    MT_CUDA_CHECK_LAUNCH("finiteKernel");
    return Status::ok();
  };
  return forEachGroup(tensors, group.table, add, launch);
}

} // namespace mt::cuda
