// Tests of the masked cross-entropy CPU kernels (runtime/cpu/Loss.h) against
// a plain fp64 reference and central finite differences of the loss.
#include "runtime/cpu/Loss.h"

#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cpu::check;
namespace tol = mt::tolerance;

constexpr int64_t kTokens = 7, kVocab = 13;

/// Plain fp64 masked mean cross-entropy; each row shifted by its max.
double crossEntropyRef(const std::vector<double> &logits,
                       const std::vector<int32_t> &labels,
                       const std::vector<float> &mask, int64_t vocab) {
  double sum = 0.0, count = 0.0;
  for (size_t t = 0; t < labels.size(); ++t) {
    if (mask[t] == 0.0f)
      continue;
    const double *row = logits.data() + t * vocab;
    double max = row[0];
    for (int64_t v = 1; v < vocab; ++v)
      max = std::max(max, row[v]);
    double z = 0.0;
    for (int64_t v = 0; v < vocab; ++v)
      z += std::exp(row[v] - max);
    sum += mask[t] * (max + std::log(z) - row[labels[t]]);
    count += mask[t];
  }
  return count == 0.0 ? 0.0 : sum / count;
}

/// Random logits with edge rows: a confident row (label at 80, the rest at
/// -80), a wrong confident row (label at -80, others at 80) and a row at
/// +-1000 where exp without the max shift overflows even in fp64.
struct Batch {
  std::vector<float> logits;
  std::vector<int32_t> labels = {2, 0, 12, 5, 7, 3, 9};
  std::vector<float> mask = {1, 1, 0, 1, 1, 1, 1};
};

Batch edgeBatch() {
  Batch b;
  std::mt19937 rng(21);
  b.logits = randomVector(rng, kTokens * kVocab, -3, 3);
  float *confident = b.logits.data() + 3 * kVocab;
  float *wrong = b.logits.data() + 4 * kVocab;
  float *huge = b.logits.data() + 5 * kVocab;
  for (int64_t v = 0; v < kVocab; ++v) {
    confident[v] = v == b.labels[3] ? 80.0f : -80.0f;
    wrong[v] = v == b.labels[4] ? -80.0f : (v % 3 == 0 ? 80.0f : 1.0f);
    huge[v] = v == b.labels[5] ? -1000.0f : (v % 2 == 0 ? 1000.0f : 0.0f);
  }
  return b;
}

TEST(LossTest, ForwardMatchesReferencePerTokenAndOverall) {
  Batch b = edgeBatch();
  // Each unmasked token alone, so that a small loss is not hidden by the
  // large ones in the mean.
  for (int64_t t = 0; t < kTokens; ++t) {
    std::vector<float> only(kTokens, 0.0f);
    only[t] = 1.0f;
    const double want =
        crossEntropyRef(toDouble(b.logits), b.labels, only, kVocab);
    const float got = cpu::crossEntropyForward(b.logits.data(), b.labels.data(),
                                               only.data(), kTokens, kVocab);
    ASSERT_TRUE(std::isfinite(got)) << t;
    EXPECT_NEAR(got, want,
                tol::kFp32KernelRel * std::fabs(want) + tol::kFp32KernelAbs)
        << "token " << t;
  }
  const double want = crossEntropyRef(toDouble(b.logits), b.labels, b.mask, kVocab);
  const float got = cpu::crossEntropyForward(b.logits.data(), b.labels.data(),
                                             b.mask.data(), kTokens, kVocab);
  EXPECT_NEAR(got, want, tol::kFp32KernelRel * std::fabs(want) + tol::kFp32KernelAbs);
  // The wrong confident row costs 160 + log(#80s), the +-1000 row 2000 + log(#1000s).
  EXPECT_GT(want, 2000.0 / 6);
}

TEST(LossTest, BackwardMatchesFiniteDifferences) {
  Batch b = edgeBatch();
  const float dloss = 0.7f;
  std::mt19937 rng(22);
  auto d0 = randomVector(rng, b.logits.size(), -1, 1);
  auto d = d0;
  cpu::crossEntropyBackward(b.logits.data(), b.labels.data(), b.mask.data(),
                            dloss, d.data(), kTokens, kVocab);

  auto ld = toDouble(b.logits);
  auto loss = [&] { return dloss * crossEntropyRef(ld, b.labels, b.mask, kVocab); };
  expectGradient(d, d0, finiteDifference(ld, loss), "dlogits");
  // The masked token's row is untouched, bit for bit.
  EXPECT_EQ(0, std::memcmp(d.data() + 2 * kVocab, d0.data() + 2 * kVocab,
                           sizeof(float) * kVocab));
}

// Logits of -inf (a vocabulary entry masked out, as padded vocabulary rows
// are) have probability 0: they add nothing to the log-sum-exp and get a
// gradient of exactly 0, never NaN. The values below are derived by hand
// from loss = ln(sum_v e^l[v]) - l[label] and dl = (softmax - onehot) / 3.
TEST(LossTest, NegativeInfiniteLogitsHaveProbabilityZero) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const float ln3 = std::log(3.0f);
  const std::vector<float> logits = {
      0.0f, ninf, ln3,  ninf,  // p = (1/4, 0, 3/4, 0), label 0: loss ln 4
      ninf, 2.0f, ninf, 2.0f,  // p = (0, 1/2, 0, 1/2), label 3: loss ln 2
      ninf, 5.0f, 5.0f, 5.0f}; // p = (0, 1/3, 1/3, 1/3), label 1: loss ln 3 (max after -inf)
  const std::vector<int32_t> labels = {0, 3, 1};
  const std::vector<float> mask = {1, 1, 1};
  const float loss = cpu::crossEntropyForward(logits.data(), labels.data(), mask.data(), 3, 4);
  const double want = (std::log(4.0) + std::log(2.0) + std::log(3.0)) / 3;
  EXPECT_NEAR(loss, want, tol::kFp32KernelRel * want);

  std::vector<float> d(logits.size(), 0.0f);
  cpu::crossEntropyBackward(logits.data(), labels.data(), mask.data(), 1.0f, d.data(), 3, 4);
  const std::vector<double> wantD = {-1.0 / 4, 0, 1.0 / 4, 0,
                                     0, 1.0 / 6, 0, -1.0 / 6,
                                     0, -2.0 / 9, 1.0 / 9, 1.0 / 9};
  expectClose(d, wantD, tol::kFp32KernelRel, 0.0, "dlogits");
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == ninf) {
      EXPECT_EQ(d[i], 0.0f) << "gradient of the -inf logit " << i;
    }
  }
}

// The gradient check itself: the cross-entropy backward's gradient, 0.05%
// too large, is far outside kGradientRel (the bound is not loose enough to
// hide a wrong scale factor).
TEST(LossTest, GradientCheckRejectsAGradientScaledBy1Point0005) {
  Batch b = edgeBatch();
  const float dloss = 0.7f;
  std::vector<float> d0(b.logits.size(), 0.0f), d = d0;
  cpu::crossEntropyBackward(b.logits.data(), b.labels.data(), b.mask.data(),
                            dloss, d.data(), kTokens, kVocab);
  auto ld = toDouble(b.logits);
  auto loss = [&] { return dloss * crossEntropyRef(ld, b.labels, b.mask, kVocab); };
  const std::vector<double> fd = finiteDifference(ld, loss);
  expectGradient(d, d0, fd, "dlogits");
  for (float &x : d)
    x *= 1.0005f;
  EXPECT_NONFATAL_FAILURE(expectGradient(d, d0, fd, "dlogits x 1.0005"), "dlogits x 1.0005");
}

TEST(LossTest, FullyMaskedBatchGivesZeroLossAndNoGradient) {
  Batch b = edgeBatch();
  std::vector<float> none(kTokens, 0.0f);
  EXPECT_EQ(cpu::crossEntropyForward(b.logits.data(), b.labels.data(),
                                     none.data(), kTokens, kVocab),
            0.0f);
  std::mt19937 rng(23);
  auto d0 = randomVector(rng, b.logits.size(), -1, 1);
  auto d = d0;
  cpu::crossEntropyBackward(b.logits.data(), b.labels.data(), none.data(), 1.0f,
                            d.data(), kTokens, kVocab);
  EXPECT_EQ(d, d0);
}

TEST(LossTest, IndependentOfThreadCount) {
  const int64_t tokens = 64, vocab = 1000; // parallel path
  std::mt19937 rng(24);
  auto logits = randomVector(rng, tokens * vocab, -5, 5);
  std::vector<int32_t> labels(tokens);
  std::vector<float> mask(tokens);
  for (int64_t t = 0; t < tokens; ++t) {
    labels[t] = static_cast<int32_t>(rng() % vocab);
    mask[t] = t % 5 == 0 ? 0.0f : 1.0f;
  }
  auto run = [&](int threads) {
    std::vector<float> d(logits.size(), 0.5f);
    const float loss = withThreads(threads, [&] {
      const float l = cpu::crossEntropyForward(logits.data(), labels.data(),
                                               mask.data(), tokens, vocab);
      cpu::crossEntropyBackward(logits.data(), labels.data(), mask.data(), 1.0f,
                                d.data(), tokens, vocab);
      return l;
    });
    d.push_back(loss);
    return d;
  };
  EXPECT_EQ(run(1), run(2));
}

} // namespace
