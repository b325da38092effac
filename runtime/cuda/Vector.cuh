// 16-byte vector access to bf16 data, shared by the element-wise, norm and
// cross-entropy kernels: eight bf16 values at a time as fp32.
#ifndef MT_RUNTIME_CUDA_VECTOR_CUH
#define MT_RUNTIME_CUDA_VECTOR_CUH

#include <cuda_bf16.h>

#include <cstdint>

namespace mt::cuda::vec {

using bf16 = __nv_bfloat16;

/// Whether `p` allows 16-byte loads (null counts: an absent operand).
inline bool aligned16(const void *p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
/// Whether `p` allows 8-byte loads (four bf16 values).
inline bool aligned8(const void *p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 8 == 0;
}

/// Eight bf16 values packed in 16 bytes, as fp32.
__device__ __forceinline__ void unpack8(const uint4 &raw, float (&v)[8]) {
  const auto *h = reinterpret_cast<const __nv_bfloat162 *>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

/// Eight fp32 values rounded to bf16 and packed in 16 bytes.
__device__ __forceinline__ uint4 pack8(const float (&v)[8]) {
  uint4 raw;
  auto *h = reinterpret_cast<__nv_bfloat162 *>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i)
    h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  return raw;
}

/// V consecutive bf16 values as fp32 (V = 8: one 16-byte load; V = 4: one
/// 8-byte load).
template <int V>
__device__ __forceinline__ void load(const bf16 *p, float (&v)[V]) {
  if constexpr (V == 8) {
    unpack8(*reinterpret_cast<const uint4 *>(p), v);
  } else if constexpr (V == 4) {
    const uint2 raw = *reinterpret_cast<const uint2 *>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&raw.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&raw.y));
    v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i)
      v[i] = __bfloat162float(p[i]);
  }
}

/// V fp32 values rounded to bf16 (V = 8: one 16-byte store; V = 4: one
/// 8-byte store).
template <int V>
__device__ __forceinline__ void store(bf16 *p, const float (&v)[V]) {
  if constexpr (V == 8) {
    *reinterpret_cast<uint4 *>(p) = pack8(v);
  } else if constexpr (V == 4) {
    uint2 raw;
    *reinterpret_cast<__nv_bfloat162 *>(&raw.x) = __floats2bfloat162_rn(v[0], v[1]);
    *reinterpret_cast<__nv_bfloat162 *>(&raw.y) = __floats2bfloat162_rn(v[2], v[3]);
    *reinterpret_cast<uint2 *>(p) = raw;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i)
      p[i] = __float2bfloat16_rn(v[i]);
  }
}

/// V consecutive fp32 values (V = 8: two 16-byte accesses; V = 4: one).
template <int V>
__device__ __forceinline__ void load(const float *p, float (&v)[V]) {
  if constexpr (V == 4 || V == 8) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q) {
      const float4 a = reinterpret_cast<const float4 *>(p)[q];
      v[4 * q] = a.x, v[4 * q + 1] = a.y, v[4 * q + 2] = a.z, v[4 * q + 3] = a.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i)
      v[i] = p[i];
  }
}

template <int V>
__device__ __forceinline__ void store(float *p, const float (&v)[V]) {
  if constexpr (V == 4 || V == 8) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q)
      reinterpret_cast<float4 *>(p)[q] =
          make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i)
      p[i] = v[i];
  }
}

} // namespace mt::cuda::vec

#endif // MT_RUNTIME_CUDA_VECTOR_CUH
