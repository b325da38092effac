// The CUDA flash attention (runtime/cuda/Attention.h) against
// cpu::attentionForward/Backward on the same bf16-exact data: odd lengths
// (partial tiles), grouped and plain multi-head, both head sizes, large
// scores; plus determinism and the shape checks.
#include "runtime/cuda/Attention.h"

#include "runtime/cpu/Attention.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct AttnCase {
  int64_t batch, seq, heads, kvHeads, headDim;
  float qkRange; // q, k uniform in [-qkRange, qkRange): 16 gives |scores| ~ 100s
};

void PrintTo(const AttnCase &c, std::ostream *os) {
  *os << shapeText({c.batch, c.seq, c.heads, c.kvHeads, c.headDim}) << " qk"
      << c.qkRange;
}

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesCpu) {
  const AttnCase c = GetParam();
  const std::string shape =
      shapeText({c.batch, c.seq, c.heads, c.kvHeads, c.headDim}) +
      (c.qkRange > 1 ? " large" : "");
  const float scale = 1.0f / std::sqrt(float(c.headDim));
  const cpu::AttentionShape cpuShape{c.batch, c.seq, c.heads, c.kvHeads,
                                     c.headDim, scale};
  const cuda::AttentionShape gpuShape{c.batch, c.seq, c.heads, c.kvHeads,
                                      c.headDim, scale};
  const size_t nQ = size_t(c.batch * c.seq * c.heads * c.headDim);
  const size_t nKv = size_t(c.batch * c.seq * c.kvHeads * c.headDim);
  const size_t nLse = size_t(c.batch * c.heads * c.seq);
  std::mt19937 rng(uint32_t(c.seq * 131 + c.heads * 17 + c.headDim + c.batch));
  const auto q = randomBf16(rng, nQ, -c.qkRange, c.qkRange);
  const auto k = randomBf16(rng, nKv, -c.qkRange, c.qkRange);
  const auto v = randomBf16(rng, nKv, -1, 1);
  const auto dout = randomBf16(rng, nQ, -1, 1);

  std::vector<float> wantOut(nQ), wantLse(nLse);
  cpu::attentionForward(q.data(), k.data(), v.data(), wantOut.data(),
                        wantLse.data(), cpuShape);

  DeviceBuffer<bf16> dQ(nQ), dK(nKv), dV(nKv), dOut(nQ), dDout(nQ);
  DeviceBuffer<bf16> dDq(nQ), dDk(nKv), dDv(nKv);
  DeviceBuffer<float> dLse(nLse);
  DeviceBuffer<uint8_t> workspace(cuda::attentionBackwardWorkspaceBytes(gpuShape));
  uploadBf16(dQ, q);
  uploadBf16(dK, k);
  uploadBf16(dV, v);
  uploadBf16(dDout, dout);

  MT_ASSERT_OK(cuda::attentionForward(dQ.get(), dK.get(), dV.get(), dOut.get(),
                                      dLse.get(), gpuShape, nullptr));
  const auto gotOut = downloadBf16(dOut);
  const auto gotLse = download(dLse);
  expectClose("attention_fwd.out", shape, gotOut, wantOut,
              tol::kBf16AttentionRel);
  expectClose("attention_fwd.lse", shape, gotLse, wantLse, tol::kFp32AccumRel);
  // Deterministic: a second run (poisoned outputs) gives the same bits.
  dOut.poison();
  dLse.poison();
  MT_ASSERT_OK(cuda::attentionForward(dQ.get(), dK.get(), dV.get(), dOut.get(),
                                      dLse.get(), gpuShape, nullptr));
  EXPECT_EQ(downloadBf16(dOut), gotOut);
  EXPECT_EQ(download(dLse), gotLse);

  // The backward on both sides starts from the reference's out (rounded to
  // bf16, as the GPU stores it) and lse, so it is checked on its own.
  std::vector<float> outBf16(nQ);
  for (size_t i = 0; i < nQ; ++i)
    outBf16[i] = roundBf16(wantOut[i]);
  uploadBf16(dOut, outBf16);
  dLse.upload(wantLse.data());
  // The CPU adds into zeros; the GPU writes over poison (NaN).
  std::vector<float> wantDq(nQ, 0.0f), wantDk(nKv, 0.0f), wantDv(nKv, 0.0f);
  cpu::attentionBackward(q.data(), k.data(), v.data(), outBf16.data(),
                         wantLse.data(), dout.data(), wantDq.data(),
                         wantDk.data(), wantDv.data(), cpuShape);
  MT_ASSERT_OK(cuda::attentionBackward(
      dQ.get(), dK.get(), dV.get(), dOut.get(), dLse.get(), dDout.get(),
      dDq.get(), dDk.get(), dDv.get(), workspace.get(), gpuShape, nullptr));
  const auto gotDq = downloadBf16(dDq), gotDk = downloadBf16(dDk),
             gotDv = downloadBf16(dDv);
  expectClose("attention_bwd.dq", shape, gotDq, wantDq, tol::kBf16AttentionRel);
  expectClose("attention_bwd.dk", shape, gotDk, wantDk, tol::kBf16AttentionRel);
  expectClose("attention_bwd.dv", shape, gotDv, wantDv, tol::kBf16AttentionRel);

  dDq.poison();
  dDk.poison();
  dDv.poison();
  MT_ASSERT_OK(cuda::attentionBackward(
      dQ.get(), dK.get(), dV.get(), dOut.get(), dLse.get(), dDout.get(),
      dDq.get(), dDk.get(), dDv.get(), workspace.get(), gpuShape, nullptr));
  EXPECT_EQ(downloadBf16(dDq), gotDq);
  EXPECT_EQ(downloadBf16(dDk), gotDk);
  EXPECT_EQ(downloadBf16(dDv), gotDv);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(
        AttnCase{1, 1, 4, 2, 64, 1}, AttnCase{2, 7, 4, 2, 64, 1},
        AttnCase{1, 7, 6, 1, 128, 1}, AttnCase{2, 129, 4, 2, 64, 1},
        AttnCase{1, 129, 6, 1, 128, 1}, AttnCase{2, 257, 4, 4, 64, 1},
        AttnCase{1, 257, 6, 1, 64, 1}, AttnCase{2, 257, 4, 2, 128, 1},
        AttnCase{1, 128, 4, 4, 128, 1}, AttnCase{1, 129, 4, 2, 64, 16},
        AttnCase{2, 65, 6, 1, 128, 16}),
    [](const auto &info) {
      const AttnCase &c = info.param;
      return joined("b", c.batch, "_s", c.seq, "_h", c.heads, "_kv", c.kvHeads,
                    "_d", c.headDim, c.qkRange > 1 ? "_large" : "");
    });

TEST(AttentionShapeTest, RejectsInvalidShapes) {
  DeviceBuffer<bf16> t(4 * 128);
  DeviceBuffer<float> lse(16);
  const cuda::AttentionShape badDim{1, 2, 2, 1, 96, 1.0f};
  const Status dim = cuda::attentionForward(t.get(), t.get(), t.get(), t.get(),
                                            lse.get(), badDim, nullptr);
  ASSERT_FALSE(dim.isOk());
  EXPECT_NE(dim.message().find("headDim 64 or 128, got 96"), std::string::npos)
      << dim.message();
  const cuda::AttentionShape badGroup{1, 2, 6, 4, 64, 1.0f};
  const Status group = cuda::attentionBackward(
      t.get(), t.get(), t.get(), t.get(), lse.get(), t.get(), t.get(), t.get(),
      t.get(), lse.get(), badGroup, nullptr);
  ASSERT_FALSE(group.isOk());
  EXPECT_NE(group.message().find("heads (6) divisible by kvHeads (4)"),
            std::string::npos)
      << group.message();
  const Status negative = cuda::attentionForward(
      t.get(), t.get(), t.get(), t.get(), lse.get(),
      cuda::AttentionShape{1, 1, 1, 1, 64, -0.125f}, nullptr);
  ASSERT_FALSE(negative.isOk());
  EXPECT_NE(negative.message().find("positive finite scale"), std::string::npos)
      << negative.message();
  const Status misaligned = cuda::attentionForward(
      t.get() + 1, t.get(), t.get(), t.get(), lse.get(),
      cuda::AttentionShape{1, 1, 1, 1, 64, 1.0f}, nullptr);
  EXPECT_FALSE(misaligned.isOk());
}

} // namespace
