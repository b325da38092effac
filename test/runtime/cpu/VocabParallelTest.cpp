// Vocab-parallel embedding and cross-entropy over 1, 2 and 4 simulated
// ranks (threads with an in-process reduction) against the unsharded kernels.
#include "runtime/cpu/Dense.h"
#include "runtime/cpu/Loss.h"
#include "runtime/cpu/VocabParallel.h"
#include "test/Tolerances.h"

#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

namespace mt::cpu {
namespace {

/// All-reduce among `ranks` threads: each contributes, all read the result
/// (summed in rank order, so identical on every rank).
class ThreadAxis {
public:
  explicit ThreadAxis(int ranks) : ranks_(ranks), sync_(ranks), slots_(ranks) {}
  AxisReduce reduceFor(int rank) {
    return [this, rank](float *data, int64_t count, bool max) {
      slots_[rank].assign(data, data + count);
      sync_.arrive_and_wait();
      for (int64_t i = 0; i < count; ++i) {
        float acc = slots_[0][i];
        for (int r = 1; r < ranks_; ++r)
          acc = max ? std::max(acc, slots_[r][i]) : acc + slots_[r][i];
        data[i] = acc;
      }
      sync_.arrive_and_wait();
    };
  }

private:
  int ranks_;
  std::barrier<> sync_;
  std::vector<std::vector<float>> slots_;
};

constexpr int64_t kTokens = 7, kVocab = 36, kHidden = 5;

struct Data {
  std::vector<float> logits, mask, table, dy;
  std::vector<int32_t> labels;
};

Data makeData() {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  Data d;
  for (int64_t i = 0; i < kTokens * kVocab; ++i)
    d.logits.push_back(normal(gen));
  d.logits[5] = 80.0f; // a large logit on rank 0's columns
  for (int64_t i = 0; i < kVocab * kHidden; ++i)
    d.table.push_back(normal(gen));
  for (int64_t i = 0; i < kTokens * kHidden; ++i)
    d.dy.push_back(normal(gen));
  for (int64_t t = 0; t < kTokens; ++t) {
    d.labels.push_back(int32_t((t * 11) % kVocab));
    d.mask.push_back(t == 3 ? 0.0f : 1.0f);
  }
  return d;
}

class VocabParallel : public ::testing::TestWithParam<int> {};

TEST_P(VocabParallel, ShardsReproduceTheUnshardedKernels) {
  const int ranks = GetParam();
  const int64_t local = kVocab / ranks;
  Data d = makeData();
  float lossRef = crossEntropyForward(d.logits.data(), d.labels.data(), d.mask.data(),
                                      kTokens, kVocab);
  std::vector<float> dlogitsRef(d.logits.size(), 0.0f), yRef(kTokens * kHidden);
  crossEntropyBackward(d.logits.data(), d.labels.data(), d.mask.data(), 0.5f,
                       dlogitsRef.data(), kTokens, kVocab);
  embeddingForward(d.labels.data(), d.table.data(), yRef.data(), kTokens, kHidden);

  ThreadAxis axis(ranks);
  std::vector<float> losses(ranks), dlogits(d.logits.size(), 0.0f),
      ySum(kTokens * kHidden, 0.0f), dtable(d.table.size(), 0.0f);
  std::vector<std::vector<float>> ys(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      int64_t start = r * local;
      std::vector<float> shard(kTokens * local), dshard(kTokens * local, 0.0f);
      for (int64_t t = 0; t < kTokens; ++t)
        for (int64_t v = 0; v < local; ++v)
          shard[t * local + v] = d.logits[t * kVocab + start + v];
      AxisReduce reduce = axis.reduceFor(r);
      losses[r] = crossEntropyForwardShard(shard.data(), d.labels.data(), d.mask.data(),
                                           kTokens, local, start, kVocab, reduce);
      crossEntropyBackwardShard(shard.data(), d.labels.data(), d.mask.data(), 0.5f,
                                dshard.data(), kTokens, local, start, kVocab, reduce);
      for (int64_t t = 0; t < kTokens; ++t)
        for (int64_t v = 0; v < local; ++v)
          dlogits[t * kVocab + start + v] = dshard[t * local + v];
      ys[r].resize(kTokens * kHidden);
      embeddingForwardShard(d.labels.data(), d.table.data() + start * kHidden, ys[r].data(),
                            kTokens, kHidden, start, local);
      embeddingBackwardShard(d.labels.data(), d.dy.data(), dtable.data() + start * kHidden,
                             kTokens, kHidden, start, local);
    });
  for (auto &t : threads)
    t.join();
  for (int r = 0; r < ranks; ++r) {
    EXPECT_EQ(losses[r], losses[0]) << "every rank gets the same loss";
    EXPECT_NEAR(losses[r], lossRef, tolerance::kFp32KernelRel * lossRef);
    for (size_t i = 0; i < ySum.size(); ++i)
      ySum[i] += ys[r][i];
  }
  for (size_t i = 0; i < dlogits.size(); ++i)
    EXPECT_NEAR(dlogits[i], dlogitsRef[i], tolerance::kFp32KernelAbs) << i;
  EXPECT_EQ(ySum, yRef) << "exactly one rank holds each row";
  std::vector<float> dtableRef(d.table.size(), 0.0f);
  embeddingBackward(d.labels.data(), d.dy.data(), dtableRef.data(), kTokens, kVocab, kHidden);
  EXPECT_EQ(dtable, dtableRef);
}

INSTANTIATE_TEST_SUITE_P(Ranks, VocabParallel, ::testing::Values(1, 2, 4));

TEST(VocabParallelPadding, PaddedColumnsTakeNoPart) {
  // A vocabulary of 35 padded to 36 over 2 ranks: the padding column holds a
  // huge logit that must neither change the loss nor get a gradient.
  const int64_t vocab = 35, padded = 36, local = padded / 2;
  Data d = makeData();
  std::vector<float> logits(kTokens * vocab);
  for (int64_t t = 0; t < kTokens; ++t)
    for (int64_t v = 0; v < vocab; ++v)
      logits[t * vocab + v] = d.logits[t * kVocab + v];
  std::vector<int32_t> labels(d.labels);
  for (int32_t &l : labels)
    l %= vocab;
  float lossRef = crossEntropyForward(logits.data(), labels.data(), d.mask.data(), kTokens, vocab);
  std::vector<float> dRef(logits.size(), 0.0f);
  crossEntropyBackward(logits.data(), labels.data(), d.mask.data(), 1.0f, dRef.data(), kTokens,
                       vocab);
  ThreadAxis axis(2);
  std::vector<float> losses(2), dpad(kTokens * padded, 0.0f);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      int64_t start = r * local;
      std::vector<float> shard(kTokens * local, 1e6f), dshard(kTokens * local, 0.0f);
      for (int64_t t = 0; t < kTokens; ++t)
        for (int64_t v = 0; v < local && start + v < vocab; ++v)
          shard[t * local + v] = logits[t * vocab + start + v];
      AxisReduce reduce = axis.reduceFor(r);
      losses[r] = crossEntropyForwardShard(shard.data(), labels.data(), d.mask.data(), kTokens,
                                           local, start, vocab, reduce);
      crossEntropyBackwardShard(shard.data(), labels.data(), d.mask.data(), 1.0f,
                                dshard.data(), kTokens, local, start, vocab, reduce);
      for (int64_t t = 0; t < kTokens; ++t)
        for (int64_t v = 0; v < local; ++v)
          dpad[t * padded + start + v] = dshard[t * local + v];
    });
  for (auto &t : threads)
    t.join();
  EXPECT_NEAR(losses[0], lossRef, tolerance::kFp32KernelRel * lossRef);
  EXPECT_EQ(losses[0], losses[1]);
  for (int64_t t = 0; t < kTokens; ++t) {
    EXPECT_EQ(dpad[t * padded + vocab], 0.0f) << "padding column of token " << t;
    for (int64_t v = 0; v < vocab; ++v)
      EXPECT_NEAR(dpad[t * padded + v], dRef[t * vocab + v], tolerance::kFp32KernelAbs);
  }
}

} // namespace
} // namespace mt::cpu
