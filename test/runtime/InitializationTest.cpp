// Parameter initialization depends only on (seed, name, element index).
#include "runtime/exec/Initialization.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string_view>
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

// The documented rule (runtime/exec/Initialization.h), written again here
// from the published definitions of its parts, each checked against its
// published test vectors below.

/// SplitMix64's finalizer (Steele, Lea and Flood, 2014).
uint64_t refMix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// 64-bit FNV-1a: offset basis 14695981039346656037, prime 2^40 + 2^8 + 0xb3.
uint64_t refFnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s)
    h = (h ^ c) * 0x100000001B3ull;
  return h;
}

double refValue(uint64_t seed, std::string_view name, uint64_t index, double std) {
  const uint64_t key = refMix(seed ^ refMix(refFnv1a(name)));
  auto unit = [](uint64_t x) { return std::ldexp(double((x >> 11) + 1), -53); };
  const double u1 = unit(refMix(key ^ refMix(2 * index)));
  const double u2 = unit(refMix(key ^ refMix(2 * index + 1)));
  return std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

TEST(Initialization, ReferenceAgreesWithPublishedVectors) {
  // SplitMix64 from state 1234567: next() = mix(state += 0x9E3779B97F4A7C15).
  const uint64_t want[] = {6457827717110365317ull, 3203168211198807973ull,
                           9817491932198370423ull, 4593380528125082431ull,
                           16408922859458223821ull};
  uint64_t state = 1234567;
  for (uint64_t w : want)
    EXPECT_EQ(refMix(state += 0x9E3779B97F4A7C15ull), w);
  // FNV-1a test vectors of its authors.
  EXPECT_EQ(refFnv1a(""), 0xCBF29CE484222325ull);
  EXPECT_EQ(refFnv1a("a"), 0xAF63DC4C8601EC8Cull);
  EXPECT_EQ(refFnv1a("foobar"), 0x85944171F73967E8ull);
}

TEST(Initialization, NormalFollowsTheDocumentedRule) {
  // Seeds, names and indices that exercise every bit of the rule: large
  // indices (the 2·index + 1 counter), names that differ in one byte.
  const uint64_t seeds[] = {0, 1, 1234, 0xFFFFFFFFFFFFFFFFull};
  const char *names[] = {"model.embed_tokens.weight", "model.embed_tokens.weigh",
                         "model.layers.0.mlp.experts.*.up_proj.weight"};
  const uint64_t indices[] = {0, 1, 2, 1000003, 0x7FFFFFFFFFFFull};
  for (uint64_t seed : seeds)
    for (const char *name : names)
      for (uint64_t index : indices) {
        const double want = refValue(seed, name, index, 0.02);
        const float got = initialValue(seed, name, index, plan::NORMAL, 0.02);
        // The same fp64 operations; the one rounding to fp32 may differ by
        // an ulp only where the fp64 values straddle a rounding boundary.
        EXPECT_LE(std::fabs(double(got) - want), std::ldexp(std::fabs(want), -23))
            << "seed " << seed << " name " << name << " index " << index;
      }
}

TEST(Initialization, SeedsNamesAndIndicesGiveDifferentValues) {
  EXPECT_NE(initialValue(1, "a", 0, plan::NORMAL, 1.0), initialValue(2, "a", 0, plan::NORMAL, 1.0));
  EXPECT_NE(initialValue(1, "a", 0, plan::NORMAL, 1.0), initialValue(1, "b", 0, plan::NORMAL, 1.0));
  EXPECT_NE(initialValue(1, "a", 0, plan::NORMAL, 1.0), initialValue(1, "a", 1, plan::NORMAL, 1.0));
}

TEST(Initialization, ConstantsAreExact) {
  EXPECT_EQ(initialValue(1, "n", 3, plan::ONES, 0), 1.0f);
  EXPECT_EQ(initialValue(1, "b", 3, plan::ZEROS, 0), 0.0f);
}

} // namespace
} // namespace mt::exec
