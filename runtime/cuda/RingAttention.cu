// The log-sum-exp merge of ring attention's partial attentions and its
// gradient: one warp per (batch, position, head) row, fp32 arithmetic.
#include "runtime/cuda/RingAttention.h"

#include "runtime/cuda/Check.h"

#include <cmath>
#include <string>

namespace mt::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;

/// A warp's row (b, s, h) of [batch, seq, heads] and its [batch, heads,
/// seq] log-sum-exp index; false past the last row.
struct Row {
  int64_t at, lse;
};
__device__ __forceinline__ bool rowOf(const MergeShape &s, Row &row) {
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (r >= s.batch * s.seq * s.heads)
    return false;
  const int64_t h = r % s.heads, pos = (r / s.heads) % s.seq, b = r / (s.heads * s.seq);
  row = {r * s.headDim, (b * s.heads + h) * s.seq + pos};
  return true;
}

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__global__ void __launch_bounds__(kThreads)
    mergeForwardKernel(const bf16 *outA, const float *lseA, const bf16 *outB, const float *lseB,
                       bf16 *out, float *lse, MergeShape s) {
  Row row;
  if (!rowOf(s, row))
    return;
  const int lane = threadIdx.x % 32;
  const float a = lseA[row.lse], c = lseB[row.lse], m = fmaxf(a, c);
  // Both empty: no key seen by either block.
  const float total = m == -INFINITY ? -INFINITY : m + logf(expf(a - m) + expf(c - m));
  const float wa = m == -INFINITY ? 0.0f : expf(a - total);
  const float wb = m == -INFINITY ? 0.0f : expf(c - total);
  for (int64_t d = lane; d < s.headDim; d += 32)
    out[row.at + d] = __float2bfloat16(wa * __bfloat162float(outA[row.at + d]) +
                                       wb * __bfloat162float(outB[row.at + d]));
  __syncwarp(); // every lane read lseA before lane 0 may overwrite it (aliasing)
  if (lane == 0)
    lse[row.lse] = total;
}

/// One partial's gradients: doutX = w dout, dlseX = w (dout . (outX - out) + dlse).
__device__ __forceinline__ void mergeGradPart(const bf16 *outX, float lseX, const bf16 *out,
                                              float total, const bf16 *dout, float dlse,
                                              bf16 *doutX, float *dlseX, bool addDout,
                                              bool addDlse, const Row &row, int64_t dim) {
  const int lane = threadIdx.x % 32;
  const float w = lseX == -INFINITY || total == -INFINITY ? 0.0f : expf(lseX - total);
  float dotted = 0.0f;
  for (int64_t d = lane; d < dim; d += 32) {
    const float g = __bfloat162float(dout[row.at + d]);
    dotted += g * (__bfloat162float(outX[row.at + d]) - __bfloat162float(out[row.at + d]));
    const float was = addDout ? __bfloat162float(doutX[row.at + d]) : 0.0f;
    doutX[row.at + d] = __float2bfloat16(was + w * g);
  }
  dotted = warpSum(dotted);
  if (lane == 0) {
    const float grad = w == 0.0f ? 0.0f : w * (dotted + dlse);
    dlseX[row.lse] = addDlse ? dlseX[row.lse] + grad : grad;
  }
}

__global__ void __launch_bounds__(kThreads)
    mergeBackwardKernel(const bf16 *outA, const float *lseA, const bf16 *outB,
                        const float *lseB, const bf16 *out, const float *lse, const bf16 *dout,
                        const float *dlse, bf16 *doutA, float *dlseA, bf16 *doutB, float *dlseB,
                        MergeShape s, MergeGradAdds adds) {
  Row row;
  if (!rowOf(s, row))
    return;
  const float total = lse[row.lse], g = dlse[row.lse];
  mergeGradPart(outA, lseA[row.lse], out, total, dout, g, doutA, dlseA, adds.doutA, adds.dlseA,
                row, s.headDim);
  mergeGradPart(outB, lseB[row.lse], out, total, dout, g, doutB, dlseB, adds.doutB, adds.dlseB,
                row, s.headDim);
}

Status validate(const char *who, const MergeShape &s) {
  if (s.batch < 0 || s.seq < 0 || s.heads <= 0 || s.headDim <= 0)
    return Status::error(errorContext() + who + ": expects batch, seq >= 0 and heads, " +
                         "headDim > 0, got " + std::to_string(s.batch) + ", " +
                         std::to_string(s.seq) + ", " + std::to_string(s.heads) + ", " +
                         std::to_string(s.headDim));
  return Status::ok();
}

unsigned blocksFor(const MergeShape &s) {
  return unsigned((s.batch * s.seq * s.heads + kWarps - 1) / kWarps);
}

} // namespace

Status attentionMergeForward(const bf16 *outA, const float *lseA, const bf16 *outB,
                             const float *lseB, bf16 *out, float *lse, const MergeShape &shape,
                             cudaStream_t stream) {
  MT_CUDA_RETURN_IF_ERROR(validate("attentionMergeForward", shape));
  if (shape.batch * shape.seq == 0)
    return Status::ok();
  mergeForwardKernel<<<blocksFor(shape), kThreads, 0, stream>>>(outA, lseA, outB, lseB, out,
                                                                lse, shape);
  MT_CUDA_CHECK_LAUNCH("mergeForwardKernel");
  return Status::ok();
}

Status attentionMergeBackward(const bf16 *outA, const float *lseA, const bf16 *outB,
                              const float *lseB, const bf16 *out, const float *lse,
                              const bf16 *dout, const float *dlse, bf16 *doutA, float *dlseA,
                              bf16 *doutB, float *dlseB, const MergeShape &shape,
                              const MergeGradAdds &adds, cudaStream_t stream) {
  MT_CUDA_RETURN_IF_ERROR(validate("attentionMergeBackward", shape));
  if (shape.batch * shape.seq == 0)
    return Status::ok();
  mergeBackwardKernel<<<blocksFor(shape), kThreads, 0, stream>>>(
      outA, lseA, outB, lseB, out, lse, dout, dlse, doutA, dlseA, doutB, dlseB, shape, adds);
  MT_CUDA_CHECK_LAUNCH("mergeBackwardKernel");
  return Status::ok();
}

} // namespace mt::cuda
