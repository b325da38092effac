// The comparison rule of the CUDA kernel tests (CudaTestSupport.h), on the
// host: a NaN matches only where the reference wants one and the caller
// says so, infinities match exactly, errors are relative to max |want|.
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace {

using namespace mt::cudatest;

const float kNan = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

TEST(CompareRelative, ANanIsAMismatchUnlessWantedThere) {
  // An unwritten (poisoned) output against a reference that is NaN there.
  EXPECT_EQ(compareRelative(std::vector<float>{1, kNan}, std::vector<float>{1, kNan}).err,
            INFINITY);
  EXPECT_EQ(compareRelative(std::vector<float>{1, kNan}, std::vector<float>{1, 2}).err,
            INFINITY);
  EXPECT_EQ(compareRelative(std::vector<float>{1, 2}, std::vector<float>{1, kNan}).err,
            INFINITY);
  // A cast of NaN: wanted, and declared.
  EXPECT_EQ(compareRelative(std::vector<float>{1, kNan}, std::vector<float>{1, kNan},
                            Nan::MatchesWhereWanted)
                .err,
            0.0);
  const Comparison c = compareRelative(std::vector<float>{kNan, 1}, std::vector<float>{1, 1},
                                       Nan::MatchesWhereWanted);
  EXPECT_EQ(c.err, INFINITY);
  EXPECT_EQ(c.worst, 0u);
}

TEST(CompareRelative, InfinitiesMatchOnlyThemselves) {
  EXPECT_EQ(compareRelative(std::vector<float>{kInf, -kInf}, std::vector<float>{kInf, -kInf}).err,
            0.0);
  EXPECT_EQ(compareRelative(std::vector<float>{kInf}, std::vector<float>{-kInf}).err, INFINITY);
  EXPECT_EQ(compareRelative(std::vector<float>{3e38f}, std::vector<float>{kInf}).err, INFINITY);
}

TEST(CompareRelative, ErrorsAreRelativeToTheLargestFiniteWant) {
  const Comparison c =
      compareRelative(std::vector<float>{4, 0.5f, kInf}, std::vector<float>{4, 0.25f, kInf});
  EXPECT_DOUBLE_EQ(c.err, 0.25 / 4);
  EXPECT_EQ(c.worst, 1u);
}

} // namespace
