// The buckets of the overlapped dp gradient reduction (runtime/plan/
// GradientBuckets.h): backward's order, Megatron's size, and a large
// gradient finished last never holding back the ones finished before it.
#include "runtime/plan/GradientBuckets.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

using Buckets = std::vector<std::vector<size_t>>;

TEST(GradientBucketsTest, DefaultSizeIsMegatrons) {
  EXPECT_EQ(defaultBucketElements(1), 40'000'000u);
  EXPECT_EQ(defaultBucketElements(2), 40'000'000u);
  EXPECT_EQ(defaultBucketElements(40), 40'000'000u);
  EXPECT_EQ(defaultBucketElements(64), 64'000'000u);
}

TEST(GradientBucketsTest, FollowsBackwardOrderAndClosesAtTheSize) {
  // Indices 0..4 written last by instructions 9, 3, 7, 3, 5: backward
  // finishes 1 and 3 (a tie: their order), then 4, 2, 0.
  std::vector<GradientToReduce> g = {{4, 9}, {3, 3}, {2, 7}, {5, 3}, {1, 5}};
  EXPECT_EQ(formGradientBuckets(g, 8), (Buckets{{1, 3}, {4, 2, 0}}));
  EXPECT_EQ(formGradientBuckets(g, 1), (Buckets{{1}, {3}, {4}, {2}, {0}}));
  EXPECT_EQ(formGradientBuckets(g, 100), (Buckets{{1, 3, 4, 2, 0}}));
  EXPECT_EQ(formGradientBuckets(g, 0), formGradientBuckets(g, 1));
  EXPECT_TRUE(formGradientBuckets({}, 8).empty());
}

TEST(GradientBucketsTest, ALargeGradientIsABucketOfItsOwn) {
  // Small gradients around one at least the bucket size: it closes the
  // open bucket and takes nothing after it.
  std::vector<GradientToReduce> g = {{3, 1}, {20, 2}, {3, 3}, {3, 4}};
  EXPECT_EQ(formGradientBuckets(g, 10), (Buckets{{0}, {1}, {2, 3}}));
}

TEST(GradientBucketsTest, LlamaTiedEmbeddingDoesNotHoldBackTheFirstLayer) {
  // llama3.2-1b's gradients in backward's order: the final norm, then per
  // layer from the last (down, gate, up, post-attention norm, o, v, k, q,
  // input norm), and last the tied embedding (its lookup's backward is
  // the last write).
  std::vector<GradientToReduce> g;
  int writer = 0;
  g.push_back({2048, writer++});
  for (int layer = 15; layer >= 0; --layer)
    for (size_t n : {16'777'216u, 16'777'216u, 16'777'216u, 2'048u, 4'194'304u, 1'048'576u,
                     1'048'576u, 4'194'304u, 2'048u})
      g.push_back({n, writer++});
  const size_t embedding = g.size();
  g.push_back({128'256u * 2'048u, writer++});
  const Buckets buckets = formGradientBuckets(g, defaultBucketElements(2));
  ASSERT_GE(buckets.size(), 2u);
  // The embedding is reduced alone, after a bucket that ends with the first
  // layer's input norm (the gradient written just before it), so the first
  // layer's gradients start before the embedding's backward.
  EXPECT_EQ(buckets.back(), std::vector<size_t>{embedding});
  EXPECT_EQ(buckets[buckets.size() - 2].back(), embedding - 1);
  size_t total = 0;
  for (const auto &bucket : buckets)
    total += bucket.size();
  EXPECT_EQ(total, g.size());
}

} // namespace
} // namespace mt
