// An fp32 master weight kept as its bf16 copy plus the 16 bits the copy
// lacks (Megatron-Core's store_param_remainders, Transformer Engine's
// FusedAdam with master-weight remainders): 4 bytes a weight instead of an
// fp32 master and a bf16 copy's 6, the master still exact.
#ifndef MT_RUNTIME_KERNELS_MASTERREMAINDERS_H
#define MT_RUNTIME_KERNELS_MASTERREMAINDERS_H

#include <cstdint>
#include <cstring>

// The CUDA optimizer and weight-copy kernels split and join with these too.
#ifndef MT_HOST_DEVICE
#ifdef __CUDACC__
#define MT_HOST_DEVICE __host__ __device__
#else
#define MT_HOST_DEVICE
#endif
#endif

namespace mt::kernels {

/// An fp32 value's two halves: `copy`, the bits of its bf16 copy (what the
/// layers read), and `remainder`, its low 16 bits.
struct MasterHalves {
  uint16_t copy, remainder;
};

MT_HOST_DEVICE inline uint32_t floatBits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

MT_HOST_DEVICE inline float bitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

/// Splits `master`. The copy is `master` rounded to bf16 to nearest with
/// ties toward zero (round-to-nearest-even's copy but for exact ties, one
/// value in 2^17): 16 bits can tell which way a value was rounded only if
/// ties go one fixed way. NaN becomes the canonical NaN 0x7FC00000 (its
/// payload is dropped: it must stay NaN in both halves). Exact:
/// joinMaster(splitMaster(x)) has x's bits for every non-NaN x.
MT_HOST_DEVICE inline MasterHalves splitMaster(float master) {
  const uint32_t u = floatBits(master);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u)
    return {0x7FC0, 0};
  // Past half the copy's last place (low bits > 0x8000) the copy rounds up;
  // no finite or infinite value carries past 0xFF80.
  return {uint16_t((u + 0x7FFFu) >> 16), uint16_t(u & 0xFFFFu)};
}

/// The fp32 master of a copy and its remainder (splitMaster's inverse): a
/// remainder past half a place says the copy was rounded up.
MT_HOST_DEVICE inline float joinMaster(uint16_t copy, uint16_t remainder) {
  const uint32_t high = uint32_t(copy) - (remainder > 0x8000u ? 1u : 0u);
  return bitsFloat(((high & 0xFFFFu) << 16) | remainder);
}

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_MASTERREMAINDERS_H
