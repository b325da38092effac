// Overflow-checked size arithmetic (runtime/support/CheckedMath.h): exact
// results up to the type's limit, nullopt (or saturation) one past it.
#include "runtime/support/CheckedMath.h"

#include <gtest/gtest.h>

#include <vector>

namespace mt {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(CheckedMath, MultipliesAndAddsUpToTheLimit) {
  EXPECT_EQ(checkedMul<int64_t>(kMax / 2, 2), kMax - 1);
  EXPECT_EQ(checkedMul<int64_t>(kMax / 2 + 1, 2), std::nullopt);
  EXPECT_EQ(checkedMul<uint64_t>(uint64_t(1) << 63, 2), std::nullopt);
  EXPECT_EQ(checkedAdd<int64_t>(kMax - 1, 1), kMax);
  EXPECT_EQ(checkedAdd<int64_t>(kMax, 1), std::nullopt);
  EXPECT_EQ(checkedAdd<uint64_t>(~uint64_t(0), 1), std::nullopt);
}

TEST(CheckedMath, ProductOfAShape) {
  EXPECT_EQ(checkedProduct({}), 1);
  EXPECT_EQ(checkedProduct({2, 3, 7}), 42);
  EXPECT_EQ(checkedProduct({5, 0, kMax}), 0);
  EXPECT_EQ(checkedProduct({int64_t(1) << 31, int64_t(1) << 31}), int64_t(1) << 62);
  EXPECT_EQ(checkedProduct({int64_t(1) << 31, int64_t(1) << 31, 2}), std::nullopt); // 2^63
  EXPECT_EQ(checkedProduct({3, -1}), std::nullopt); // negative: not a size
  // (2^62 + 1) x 4 wraps to 4 in 64 bits: refused, not wrapped.
  EXPECT_EQ(checkedProduct(std::vector<int64_t>{(int64_t(1) << 62) + 1, 4}), std::nullopt);
  EXPECT_EQ(saturatingProduct({(int64_t(1) << 62) + 1, 4}), kMax);
  EXPECT_EQ(saturatingProduct({6, 7}), 42);
}

} // namespace
} // namespace mt
