// The fp32 master as its bf16 copy plus 16 low bits (kernels::splitMaster /
// joinMaster), against the bit patterns themselves: exact round trips, and
// copies that are the master rounded to nearest (ties toward zero).
#include "runtime/kernels/MasterRemainders.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace mt::kernels {
namespace {

/// The bf16 nearest to `x`, ties to the value nearer zero, by value: the
/// two bf16 neighbours of x compared in double.
uint16_t nearestTiesTowardZero(float x) {
  const uint32_t u = floatBits(x);
  const uint16_t down = uint16_t(u >> 16), up = uint16_t(down + 1);
  const double below = double(bitsFloat(uint32_t(down) << 16));
  const double above = double(bitsFloat(uint32_t(up) << 16));
  if (std::isinf(above) && !std::isinf(x)) // rounding past the largest finite: by place
    return (u & 0xFFFFu) > 0x8000u ? up : down;
  const double gapDown = std::fabs(double(x) - below), gapUp = std::fabs(above - double(x));
  return gapUp < gapDown ? up : down;
}

TEST(MasterRemaindersTest, EveryCopyPatternWithTheLowBitsAroundHalfAPlaceRoundTrips) {
  const uint32_t lows[] = {0x0000, 0x0001, 0x1234, 0x7FFF, 0x8000, 0x8001, 0xABCD, 0xFFFE, 0xFFFF};
  int64_t checked = 0;
  for (uint32_t high = 0; high <= 0xFFFF; ++high)
    for (uint32_t low : lows) {
      const uint32_t bits = (high << 16) | low;
      const float x = bitsFloat(bits);
      const MasterHalves h = splitMaster(x);
      if (std::isnan(x)) {
        EXPECT_EQ(h.copy, 0x7FC0) << std::hex << bits;
        EXPECT_TRUE(std::isnan(joinMaster(h.copy, h.remainder))) << std::hex << bits;
        continue;
      }
      ASSERT_EQ(floatBits(joinMaster(h.copy, h.remainder)), bits) << std::hex << bits;
      ASSERT_EQ(h.remainder, low) << std::hex << bits;
      ASSERT_EQ(h.copy, nearestTiesTowardZero(x)) << std::hex << bits;
      ++checked;
    }
  EXPECT_GT(checked, 500000); // the NaN patterns are a small part
}

TEST(MasterRemaindersTest, TheCopyIsRoundToNearestEvenButForExactTies) {
  // 1 + 2^-8 lies halfway between bf16 1 and 1 + 2^-7: toward zero, 1;
  // round-to-nearest-even would also give 1 (its last bit even), but for
  // 1 + 3·2^-8, halfway between 1 + 2^-7 (odd) and 1 + 2^-6, nearest-even
  // goes up and this copy goes down.
  EXPECT_EQ(splitMaster(1.0f + 0x1p-8f).copy, 0x3F80);
  EXPECT_EQ(splitMaster(1.0f + 3 * 0x1p-8f).copy, 0x3F81);
  EXPECT_EQ(splitMaster(-(1.0f + 3 * 0x1p-8f)).copy, 0xBF81);
  // Just past half a place rounds away from zero, on either sign.
  EXPECT_EQ(splitMaster(bitsFloat(0x3F808001)).copy, 0x3F81);
  EXPECT_EQ(splitMaster(bitsFloat(0xBF808001)).copy, 0xBF81);
  // The largest finite floats round to infinity, as to nearest-even;
  // the master stays exact.
  const float big = std::numeric_limits<float>::max();
  EXPECT_EQ(splitMaster(big).copy, 0x7F80);
  EXPECT_EQ(splitMaster(-big).copy, 0xFF80);
  EXPECT_EQ(joinMaster(0x7F80, splitMaster(big).remainder), big);
  EXPECT_EQ(splitMaster(std::numeric_limits<float>::infinity()).copy, 0x7F80);
  EXPECT_EQ(splitMaster(-0.0f).copy, 0x8000);
}

} // namespace
} // namespace mt::kernels
