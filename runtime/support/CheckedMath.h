// Overflow-checked arithmetic on sizes (element counts, bytes, offsets):
// the one place the compiler and the runtime multiply sizes they did not
// bound themselves. Products of sizes read from a config, a model or a plan
// go through these, so an overflow is refused where it first appears.
#ifndef MT_RUNTIME_SUPPORT_CHECKEDMATH_H
#define MT_RUNTIME_SUPPORT_CHECKEDMATH_H

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <type_traits>

namespace mt {

/// The most elements one tensor may have, 2^60: at up to 8 bytes per
/// element (the widest dtype of a plan), its bytes and the offsets of an
/// arena that holds it still fit in int64.
inline constexpr int64_t kMaxTensorElements = int64_t(1) << 60;

/// a * b, or nullopt when the exact product does not fit in T.
template <typename T> std::optional<T> checkedMul(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T product;
  if (__builtin_mul_overflow(a, b, &product))
    return std::nullopt;
  return product;
}

/// a + b, or nullopt when the exact sum does not fit in T.
template <typename T> std::optional<T> checkedAdd(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T sum;
  if (__builtin_add_overflow(a, b, &sum))
    return std::nullopt;
  return sum;
}

/// The product of non-negative `factors` (1 for none), or nullopt when a
/// factor is negative or the product exceeds int64_t. `Range` is any range
/// of integers (a tensor shape, a protobuf repeated field).
template <typename Range> std::optional<int64_t> checkedProduct(const Range &factors) {
  int64_t product = 1;
  for (auto factor : factors) {
    auto next = checkedMul<int64_t>(product, int64_t(factor));
    if (factor < 0 || !next)
      return std::nullopt;
    product = *next;
  }
  return product;
}
inline std::optional<int64_t> checkedProduct(std::initializer_list<int64_t> factors) {
  return checkedProduct<std::initializer_list<int64_t>>(factors);
}

/// The product of non-negative factors, saturated at INT64_MAX: for
/// expected sizes compared with real ones, which never reach INT64_MAX.
inline int64_t saturatingProduct(std::initializer_list<int64_t> factors) {
  return checkedProduct(factors).value_or(std::numeric_limits<int64_t>::max());
}

/// Whether `v` keeps its magnitude in fp32, the optimizer's precision
/// (cpu::adamwStep, the CUDA kernel): |v| at most FLT_MAX and, unless 0,
/// not rounded to 0.
inline bool fitsFp32(double v) {
  return !(v > std::numeric_limits<float>::max() || v < -std::numeric_limits<float>::max()) &&
         (v == 0 || float(v) != 0.0f);
}
/// What an error says of a value fitsFp32 refuses.
inline constexpr const char *kOutsideFp32 = "is outside fp32's range (the optimizer's precision: "
                                            "magnitudes from about 1.4e-45 to 3.4e+38)";

} // namespace mt

#endif // MT_RUNTIME_SUPPORT_CHECKEDMATH_H
