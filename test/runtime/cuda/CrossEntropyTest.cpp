// The CUDA cross-entropy (runtime/cuda/CrossEntropy.h) against
// cpu::crossEntropyForward/Backward: vocabularies around the 8-element
// chunk and 16-byte row boundaries, masked tokens, extreme logits, in-place
// and differently aligned gradients.
#include "runtime/cuda/CrossEntropy.h"

#include "runtime/cpu/Loss.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct CeCase {
  int64_t tokens, vocab;
  bool allMasked;
};

void PrintTo(const CeCase &c, std::ostream *os) {
  *os << shapeText({c.tokens, c.vocab}) << (c.allMasked ? " all-masked" : "");
}

class CrossEntropyTest : public ::testing::TestWithParam<CeCase> {};

/// Logits in [-8, 8] with edge rows: one dominant logit (p ~ 1 at the label,
/// so p - 1 cancels), all equal, large magnitudes, a few -inf entries.
std::vector<float> ceLogits(std::mt19937 &rng, int64_t tokens, int64_t vocab,
                            std::vector<int32_t> &labels) {
  auto logits = randomBf16(rng, tokens * vocab, -8, 8);
  labels.resize(tokens);
  for (int32_t &l : labels)
    l = int32_t(rng() % vocab);
  if (tokens >= 4 && vocab >= 4) {
    logits[0 * vocab + labels[0]] = 80.0f;
    std::fill(logits.begin() + vocab, logits.begin() + 2 * vocab, 3.0f);
    for (int64_t v = 0; v < vocab; ++v)
      logits[2 * vocab + v] = roundBf16(logits[2 * vocab + v] * 12.0f);
    const float ninf = -std::numeric_limits<float>::infinity();
    for (int64_t v = 0; v < vocab; v += 3)
      if (v != labels[3])
        logits[3 * vocab + v] = ninf;
  }
  return logits;
}

TEST_P(CrossEntropyTest, MatchesCpu) {
  const auto [tokens, vocab, allMasked] = GetParam();
  const std::string shape =
      shapeText({tokens, vocab}) + (allMasked ? " all-masked" : "");
  std::mt19937 rng(uint32_t(tokens * 7 + vocab));
  std::vector<int32_t> labels;
  const auto logits = ceLogits(rng, tokens, vocab, labels);
  std::vector<float> mask(tokens, 1.0f);
  for (int64_t t = 0; t < tokens; ++t)
    if (allMasked || (t % 5 == 4))
      mask[t] = 0.0f;
  const float dloss = 0.7f;

  // +1 element: room to view the gradient at an offset of one bf16.
  DeviceBuffer<bf16> dLogits(logits.size()), dGrad(logits.size() + 1);
  DeviceBuffer<int32_t> dLabels(tokens);
  DeviceBuffer<float> dMask(tokens), dLse(tokens), dLoss(1), dTotal(1), dSeed(1);
  dSeed.upload(&dloss);
  uploadBf16(dLogits, logits);
  dLabels.upload(labels.data());
  dMask.upload(mask.data());

  MT_ASSERT_OK(cuda::crossEntropyForward(dLogits.get(), dLabels.get(),
                                         dMask.get(), dLse.get(), dLoss.get(),
                                         dTotal.get(), tokens, vocab, nullptr));
  const float want = cpu::crossEntropyForward(logits.data(), labels.data(),
                                              mask.data(), tokens, vocab);
  expectClose("cross_entropy_fwd.loss", shape, download(dLoss),
              std::vector<float>{want}, tol::kFp32AccumRel);
  double total = 0;
  for (float m : mask)
    total += m;
  EXPECT_EQ(download(dTotal)[0], float(total));

  std::vector<float> wantGrad(logits.size(), 0.0f);
  cpu::crossEntropyBackward(logits.data(), labels.data(), mask.data(), dloss,
                            wantGrad.data(), tokens, vocab);
  // Aligned with the logits, then one bf16 off (the scalar path).
  for (int offset : {0, 1}) {
    MT_ASSERT_OK(cuda::crossEntropyBackward(
        dLogits.get(), dLabels.get(), dMask.get(), dLse.get(), dTotal.get(),
        dSeed.get(), dGrad.get() + offset, tokens, vocab, nullptr));
    std::vector<float> got = downloadBf16(dGrad);
    got.erase(got.begin(), got.begin() + offset);
    got.resize(logits.size());
    // Relative to the largest gradient: at the label of the dominant row,
    // p - 1 (~1e-31) is below fp32's resolution of p and comes out 0.
    expectClose(offset ? "cross_entropy_bwd(offset)" : "cross_entropy_bwd",
                shape, got, wantGrad, tol::kBf16Rel);
    for (int64_t t = 0; t < tokens; ++t) {
      if (mask[t] != 0.0f)
        continue;
      for (int64_t v = 0; v < vocab; ++v)
        ASSERT_EQ(got[t * vocab + v], 0.0f) << "masked row " << t;
    }
    // A -inf logit has probability 0 and a gradient of exactly 0 (the CPU
    // reference's values there: LossTest.NegativeInfiniteLogitsHaveProbabilityZero).
    for (size_t i = 0; i < logits.size(); ++i) {
      if (std::isinf(logits[i])) {
        ASSERT_EQ(got[i], 0.0f) << "gradient of the -inf logit " << i;
      }
    }
  }
  // In place: the gradient overwrites the logits it is computed from.
  const std::vector<float> outOfPlace = [&] {
    std::vector<float> g = downloadBf16(dGrad);
    return std::vector<float>(g.begin() + 1, g.begin() + 1 + logits.size());
  }();
  MT_ASSERT_OK(cuda::crossEntropyBackward(
      dLogits.get(), dLabels.get(), dMask.get(), dLse.get(), dTotal.get(), dSeed.get(),
      dLogits.get(), tokens, vocab, nullptr));
  EXPECT_EQ(downloadBf16(dLogits), outOfPlace);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CrossEntropyTest,
    ::testing::Values(CeCase{7, 1000, false}, CeCase{129, 32001, false},
                      CeCase{5, 7, false}, CeCase{9, 8, false}, CeCase{6, 9, false},
                      CeCase{4, 128256, false}, CeCase{33, 4096, false},
                      CeCase{6, 1000, true}),
    [](const auto &info) {
      const CeCase &c = info.param;
      return joined("t", c.tokens, "_v", c.vocab, c.allMasked ? "_masked" : "");
    });

} // namespace
