// Vocab-parallel embedding and cross-entropy over 1, 2 and 4 simulated
// ranks (the local kernels, with the all-reduces between them done in the
// test) against the unsharded kernels of Loss.h and Dense.h.
#include "runtime/cpu/Dense.h"
#include "runtime/cpu/Loss.h"
#include "runtime/cpu/VocabParallel.h"
#include "test/Tolerances.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace mt::cpu {
namespace {

/// The local steps of the vocab-parallel cross-entropy on `ranks` slices of
/// [tokens, ranks·local] logits (rank r holds columns [r·local, (r+1)·local),
/// of which those below `valid` are real), with the plan's all-reduces done
/// here in rank order: the loss of every rank and the full dlogits.
struct SplitCrossEntropy {
  std::vector<float> losses, dlogits;
};

SplitCrossEntropy runSplit(const std::vector<float> &logits, const std::vector<int32_t> &labels,
                           const std::vector<float> &mask, int64_t tokens, int ranks,
                           int64_t local, int64_t valid, float dloss) {
  const int64_t width = int64_t(ranks) * local;
  std::vector<std::vector<float>> shards(ranks, std::vector<float>(size_t(tokens * local)));
  std::vector<VocabShard> s;
  for (int r = 0; r < ranks; ++r) {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t v = 0; v < local; ++v)
        shards[r][t * local + v] = logits[t * width + r * local + v];
    s.push_back({tokens, local, r * local, validColumns(local, r * local, valid)});
  }
  auto reduce = [&](std::vector<std::vector<float>> &parts, bool max) {
    std::vector<float> out = parts[0];
    for (int r = 1; r < ranks; ++r)
      for (size_t i = 0; i < out.size(); ++i)
        out[i] = max ? std::max(out[i], parts[r][i]) : out[i] + parts[r][i];
    return out;
  };
  std::vector<std::vector<float>> rowMax(ranks, std::vector<float>(tokens)), predicted = rowMax,
                                                                            sumExp = rowMax;
  for (int r = 0; r < ranks; ++r)
    vocabParallelLogitsMax(shards[r].data(), rowMax[r].data(), s[r]);
  std::vector<float> max = reduce(rowMax, true);
  for (int r = 0; r < ranks; ++r)
    vocabParallelPredictedLogits(shards[r].data(), max.data(), labels.data(), predicted[r].data(),
                                 sumExp[r].data(), s[r]);
  std::vector<float> label = reduce(predicted, false), sum = reduce(sumExp, false);
  SplitCrossEntropy out{{}, std::vector<float>(logits.size(), 0.0f)};
  for (int r = 0; r < ranks; ++r) {
    out.losses.push_back(crossEntropyLoss(max.data(), label.data(), sum.data(), mask.data(),
                                          tokens));
    std::vector<float> dshard(size_t(tokens * local), 0.0f);
    vocabParallelCrossEntropyBackward(shards[r].data(), labels.data(), mask.data(), max.data(),
                                      sum.data(), dloss, dshard.data(), s[r]);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t v = 0; v < local; ++v)
        out.dlogits[t * width + r * local + v] = dshard[t * local + v];
  }
  return out;
}

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

  SplitCrossEntropy split = runSplit(d.logits, d.labels, d.mask, kTokens, ranks, local, kVocab,
                                     0.5f);
  const std::vector<float> &losses = split.losses, &dlogits = split.dlogits;
  std::vector<float> ySum(kTokens * kHidden, 0.0f), dtable(d.table.size(), 0.0f);
  std::vector<std::vector<float>> ys(ranks);
  for (int r = 0; r < ranks; ++r) {
    int64_t start = r * local;
    ys[r].resize(kTokens * kHidden);
    embeddingForwardShard(d.labels.data(), d.table.data() + start * kHidden, ys[r].data(),
                          kTokens, kHidden, start, local);
    embeddingBackwardShard(d.labels.data(), d.dy.data(), dtable.data() + start * kHidden,
                           kTokens, kHidden, start, local);
  }
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

/// makeData's rows cut to a vocabulary of 35, in rows of 35 (compact) and
/// padded to 36 with a huge logit in the padding column, labels below 35.
constexpr int64_t kValidVocab = 35, kPaddedVocab = 36;
struct Padded {
  Data d;
  std::vector<float> compact, padded;
  std::vector<int32_t> labels;
};

Padded paddedData() {
  Padded p{makeData(), std::vector<float>(kTokens * kValidVocab),
           std::vector<float>(kTokens * kPaddedVocab, 1e6f), {}};
  for (int64_t t = 0; t < kTokens; ++t)
    for (int64_t v = 0; v < kValidVocab; ++v)
      p.compact[t * kValidVocab + v] = p.padded[t * kPaddedVocab + v] = p.d.logits[t * kVocab + v];
  p.labels = p.d.labels;
  for (int32_t &l : p.labels)
    l %= kValidVocab;
  return p;
}

TEST(VocabParallelPadding, PaddedColumnsTakeNoPart) {
  // A vocabulary of 35 padded to 36 over 2 ranks: the padding column holds a
  // huge logit that must neither change the loss nor get a gradient.
  const int64_t vocab = kValidVocab, paddedVocab = kPaddedVocab;
  const Padded p = paddedData();
  const std::vector<float> &mask = p.d.mask;
  float lossRef =
      crossEntropyForward(p.compact.data(), p.labels.data(), mask.data(), kTokens, vocab);
  std::vector<float> dRef(p.compact.size(), 0.0f);
  crossEntropyBackward(p.compact.data(), p.labels.data(), mask.data(), 1.0f, dRef.data(),
                       kTokens, vocab);
  SplitCrossEntropy split =
      runSplit(p.padded, p.labels, mask, kTokens, 2, paddedVocab / 2, vocab, 1.0f);
  const std::vector<float> &losses = split.losses, &dpad = split.dlogits;
  EXPECT_NEAR(losses[0], lossRef, tolerance::kFp32KernelRel * lossRef);
  EXPECT_EQ(losses[0], losses[1]);
  for (int64_t t = 0; t < kTokens; ++t) {
    EXPECT_EQ(dpad[t * paddedVocab + vocab], 0.0f) << "padding column of token " << t;
    for (int64_t v = 0; v < vocab; ++v)
      EXPECT_NEAR(dpad[t * paddedVocab + v], dRef[t * vocab + v], tolerance::kFp32KernelAbs);
  }
}

TEST(VocabParallelBackward, WritesEveryElementAndMayReplaceTheLogits) {
  // The plan gives the gradient the logits' own buffer: written, not added,
  // so a stale output (NaN here) and the aliasing both leave it exact.
  const int64_t vocab = kValidVocab, paddedVocab = kPaddedVocab;
  const Padded p = paddedData();
  const std::vector<float> &mask = p.d.mask;
  const VocabShard s{kTokens, paddedVocab, 0, validColumns(paddedVocab, 0, vocab)};
  std::vector<float> rowMax(kTokens), predicted(kTokens), sumExp(kTokens);
  vocabParallelLogitsMax(p.padded.data(), rowMax.data(), s);
  vocabParallelPredictedLogits(p.padded.data(), rowMax.data(), p.labels.data(), predicted.data(),
                               sumExp.data(), s);
  std::vector<float> apart(p.padded.size(), std::nanf(""));
  vocabParallelCrossEntropyBackward(p.padded.data(), p.labels.data(), mask.data(), rowMax.data(),
                                    sumExp.data(), 0.5f, apart.data(), s);
  std::vector<float> same = p.padded;
  vocabParallelCrossEntropyBackward(same.data(), p.labels.data(), mask.data(), rowMax.data(),
                                    sumExp.data(), 0.5f, same.data(), s);
  EXPECT_EQ(same, apart) << "in place equals out of place";
  std::vector<float> ref(p.compact.size(), 0.0f);
  crossEntropyBackward(p.compact.data(), p.labels.data(), mask.data(), 0.5f, ref.data(),
                       kTokens, vocab);
  for (int64_t t = 0; t < kTokens; ++t) {
    EXPECT_EQ(apart[t * paddedVocab + vocab], 0.0f) << "padding column of token " << t;
    for (int64_t v = 0; v < vocab; ++v)
      EXPECT_NEAR(apart[t * paddedVocab + v], ref[t * vocab + v], tolerance::kFp32KernelAbs)
          << "token " << t << " column " << v << (mask[t] == 0 ? " (masked)" : "");
  }
}

} // namespace
} // namespace mt::cpu
