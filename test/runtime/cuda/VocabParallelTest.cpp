// The CUDA vocab-parallel cross-entropy steps (runtime/cuda/VocabParallel.h)
// against the CPU ones (runtime/cpu/VocabParallel.h) on one slice of a
// split vocabulary: odd slice widths, padding columns, labels inside and
// outside the slice, masked tokens, a dominant logit.
#include "runtime/cuda/VocabParallel.h"

#include "runtime/cpu/VocabParallel.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct SliceCase {
  int64_t tokens, localVocab, vocabStart, validVocab;
};

void PrintTo(const SliceCase &c, std::ostream *os) {
  *os << c.tokens << " tokens, columns [" << c.vocabStart << ", "
      << c.vocabStart + c.localVocab << ") of " << c.validVocab;
}

class VocabParallelTest : public ::testing::TestWithParam<SliceCase> {};

TEST_P(VocabParallelTest, StepsMatchCpu) {
  const SliceCase c = GetParam();
  const int64_t columns = cpu::validColumns(c.localVocab, c.vocabStart, c.validVocab);
  const cpu::VocabShard cs{c.tokens, c.localVocab, c.vocabStart, columns};
  const cuda::VocabSlice gs{c.tokens, c.localVocab, c.vocabStart, columns};
  const std::string shape = shapeText({c.tokens, c.localVocab});
  std::mt19937 rng(uint32_t(c.tokens * 31 + c.localVocab + c.vocabStart));
  std::vector<float> logits = randomBf16(rng, size_t(c.tokens * c.localVocab), -8, 8);
  logits[0] = 60.0f; // a dominant logit: p ~ 1 where it is the label
  std::vector<int32_t> labels(c.tokens);
  std::vector<float> mask(c.tokens, 1.0f);
  for (int64_t t = 0; t < c.tokens; ++t) {
    labels[t] = int32_t(rng() % uint32_t(c.validVocab)); // mostly outside the slice
    if (t % 3 == 0 && columns > 0)
      labels[t] = int32_t(c.vocabStart + int64_t(rng() % uint32_t(columns)));
    if (t % 5 == 4)
      mask[t] = 0.0f;
  }
  const float dloss = 0.7f;

  std::vector<float> rowMax(c.tokens), predicted(c.tokens), sumExp(c.tokens);
  cpu::vocabParallelLogitsMax(logits.data(), rowMax.data(), cs);
  cpu::vocabParallelPredictedLogits(logits.data(), rowMax.data(), labels.data(),
                                    predicted.data(), sumExp.data(), cs);
  const float loss = cpu::crossEntropyLoss(rowMax.data(), predicted.data(), sumExp.data(),
                                           mask.data(), c.tokens);
  std::vector<float> dlogits(logits.size(), 0.0f);
  cpu::vocabParallelCrossEntropyBackward(logits.data(), labels.data(), mask.data(),
                                         rowMax.data(), sumExp.data(), dloss, dlogits.data(), cs);

  DeviceBuffer<bf16> dLogits(logits.size()), dGrad(logits.size());
  DeviceBuffer<int32_t> dLabels(c.tokens);
  DeviceBuffer<float> dMask(c.tokens), dMax(c.tokens), dPredicted(c.tokens), dSum(c.tokens),
      dLoss(1), dSeed(1), dWork(1);
  uploadBf16(dLogits, logits);
  dLabels.upload(labels.data());
  dMask.upload(mask.data());
  dSeed.upload(&dloss);
  MT_ASSERT_OK(cuda::vocabParallelLogitsMax(dLogits.get(), dMax.get(), gs, nullptr));
  EXPECT_EQ(download(dMax), rowMax) << "the maximum of bf16 values is exact";
  MT_ASSERT_OK(cuda::vocabParallelPredictedLogits(dLogits.get(), dMax.get(), dLabels.get(),
                                                  dPredicted.get(), dSum.get(), gs, nullptr));
  EXPECT_EQ(download(dPredicted), predicted) << "a bf16 logit, or 0";
  expectClose("vocab_parallel_predicted_logits.sum_exp", shape, download(dSum), sumExp,
              tol::kFp32AccumRel);
  MT_ASSERT_OK(cuda::crossEntropyLoss(dMax.get(), dPredicted.get(), dSum.get(), dMask.get(),
                                      dLoss.get(), c.tokens, nullptr));
  expectClose("cross_entropy_loss", shape, download(dLoss), std::vector<float>{loss},
              tol::kFp32AccumRel);
  // The backward from the CPU's rows: its own error only.
  dMax.upload(rowMax.data());
  dSum.upload(sumExp.data());
  MT_ASSERT_OK(cuda::vocabParallelCrossEntropyBackward(
      dLogits.get(), dLabels.get(), dMask.get(), dMax.get(), dSum.get(), dSeed.get(),
      dGrad.get(), dWork.get(), gs, nullptr));
  const std::vector<float> got = downloadBf16(dGrad);
  expectClose("vocab_parallel_cross_entropy_grad", shape, got, dlogits, tol::kBf16Rel);
  for (int64_t t = 0; t < c.tokens; ++t)
    for (int64_t v = columns; v < c.localVocab; ++v)
      ASSERT_EQ(got[t * c.localVocab + v], 0.0f) << "padding column " << v << " of token " << t;
}

INSTANTIATE_TEST_SUITE_P(
    Slices, VocabParallelTest,
    ::testing::Values(SliceCase{7, 18, 0, 35},      // first slice of a padded 36
                      SliceCase{7, 18, 18, 35},     // last slice: one padding column
                      SliceCase{33, 257, 257, 514}, // an odd width, whole
                      SliceCase{5, 300, 600, 700},  // padding past the middle
                      SliceCase{64, 1000, 0, 2000}));

} // namespace
