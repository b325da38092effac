// Parameter initialization depends only on (seed, name, element index).
#include "runtime/exec/Initialization.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace mt::exec {
namespace {

plan::Parameter normalParam(const std::string &name, double std) {
  plan::Parameter p;
  p.set_name(name);
  p.set_init(plan::NORMAL);
  p.set_init_std(std);
  return p;
}

TEST(Initialization, AnyRangeOfATensorEqualsThatRangeOfTheWholeTensor) {
  plan::Parameter p = normalParam("model.layers.0.mlp.up_proj.weight", 0.02);
  std::vector<float> whole(1000), shard(300);
  initializeRange(7, p, 0, whole.data(), whole.size());
  initializeRange(7, p, 500, shard.data(), shard.size());
  for (size_t i = 0; i < shard.size(); ++i)
    ASSERT_EQ(shard[i], whole[500 + i]) << i;
}

TEST(Initialization, NormalHasTheRequestedMoments) {
  plan::Parameter p = normalParam("w", 0.02);
  std::vector<float> v(200000);
  initializeRange(1, p, 0, v.data(), v.size());
  double mean = 0, sq = 0;
  for (float x : v)
    mean += x, sq += double(x) * x;
  mean /= v.size();
  double std = std::sqrt(sq / v.size() - mean * mean);
  // 200k samples: the standard error of the mean is 0.02/sqrt(2e5) = 4.5e-5.
  EXPECT_NEAR(mean, 0.0, 3e-4);
  EXPECT_NEAR(std, 0.02, 2e-4);
}

TEST(Initialization, SeedsAndNamesGiveDifferentValues) {
  plan::Parameter a = normalParam("a", 1.0), b = normalParam("b", 1.0);
  EXPECT_NE(initialValue(1, "a", 0, plan::NORMAL, 1.0), initialValue(2, "a", 0, plan::NORMAL, 1.0));
  EXPECT_NE(initialValue(1, "a", 0, plan::NORMAL, 1.0), initialValue(1, "b", 0, plan::NORMAL, 1.0));
  EXPECT_NE(initialValue(1, "a", 0, plan::NORMAL, 1.0), initialValue(1, "a", 1, plan::NORMAL, 1.0));
  EXPECT_EQ(initialValue(1, "a", 5, plan::NORMAL, 1.0), initialValue(1, "a", 5, plan::NORMAL, 1.0));
}

TEST(Initialization, ConstantsAreExact) {
  EXPECT_EQ(initialValue(1, "n", 3, plan::ONES, 0), 1.0f);
  EXPECT_EQ(initialValue(1, "b", 3, plan::ZEROS, 0), 0.0f);
}

} // namespace
} // namespace mt::exec
