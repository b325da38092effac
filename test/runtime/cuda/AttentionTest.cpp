// The CUDA flash attention (runtime/cuda/Attention.h), on both backends (the
// mtc kernels and cuDNN's fused attention), against
// cpu::attentionForward/Backward on the same bf16-exact data: odd lengths
// (partial tiles), grouped (ratios 2, 4, 6, 8) and plain multi-head, both
// head sizes, large scores; plus determinism, the shape checks and the
// backend choice.
#include "runtime/cuda/Attention.h"

#include "runtime/cpu/Attention.h"
#include "runtime/cuda/CudnnAttention.h"
#include "runtime/plan/AttentionWorkspace.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
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

/// A backend as the tests force it: the mtc kernels, cuDNN deterministic,
/// and cuDNN with its atomic dQ (same numbers, bits may vary by run).
enum class Backend { Mtc, Cudnn, CudnnAtomicDq };

const char *backendName(Backend b) {
  return b == Backend::Mtc ? "mtc" : b == Backend::Cudnn ? "cudnn" : "cudnn_atomic_dq";
}

class AttentionTest : public ::testing::TestWithParam<std::tuple<AttnCase, Backend>> {};

TEST_P(AttentionTest, MatchesCpu) {
  const auto [c, which] = GetParam();
  const cuda::AttentionOptions options{
      which == Backend::Mtc ? cuda::AttentionBackend::Mtc : cuda::AttentionBackend::Cudnn,
      which != Backend::CudnnAtomicDq};
  const std::string shape =
      shapeText({c.batch, c.seq, c.heads, c.kvHeads, c.headDim}) +
      (c.qkRange > 1 ? " large" : "");
  // The mtc rows keep their historical names in the GPU report.
  const std::string prefix =
      which == Backend::Mtc ? "attention" : std::string("attention_") + backendName(which);
  const std::string fwd = prefix + "_fwd", bwd = prefix + "_bwd";
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
  // Forcing a backend: a cuDNN plan that does not build fails the test.
  auto plan = cuda::planAttention(gpuShape, false, options);
  ASSERT_TRUE(plan.isOk()) << plan.message();
  ASSERT_EQ(plan->backend, options.backend);
  DeviceBuffer<uint8_t> workspace(std::max<size_t>(plan->workspaceBytes(), 1));
  uploadBf16(dQ, q);
  uploadBf16(dK, k);
  uploadBf16(dV, v);
  uploadBf16(dDout, dout);

  MT_ASSERT_OK(cuda::attentionForward(dQ.get(), dK.get(), dV.get(), dOut.get(),
                                      dLse.get(), gpuShape, nullptr, nullptr, options,
                                      workspace.get()));
  const auto gotOut = downloadBf16(dOut);
  const auto gotLse = download(dLse);
  expectClose(fwd + ".out", shape, gotOut, wantOut,
              tol::kBf16AttentionRel);
  expectClose(fwd + ".lse", shape, gotLse, wantLse, tol::kFp32AccumRel);
  // Deterministic: a second run (poisoned outputs) gives the same bits.
  dOut.poison();
  dLse.poison();
  MT_ASSERT_OK(cuda::attentionForward(dQ.get(), dK.get(), dV.get(), dOut.get(),
                                      dLse.get(), gpuShape, nullptr, nullptr, options,
                                      workspace.get()));
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
      dDq.get(), dDk.get(), dDv.get(), workspace.get(), gpuShape, nullptr, nullptr,
      options));
  const auto gotDq = downloadBf16(dDq), gotDk = downloadBf16(dDk),
             gotDv = downloadBf16(dDv);
  expectClose(bwd + ".dq", shape, gotDq, wantDq, tol::kBf16AttentionRel);
  expectClose(bwd + ".dk", shape, gotDk, wantDk, tol::kBf16AttentionRel);
  expectClose(bwd + ".dv", shape, gotDv, wantDv, tol::kBf16AttentionRel);

  dDq.poison();
  dDk.poison();
  dDv.poison();
  MT_ASSERT_OK(cuda::attentionBackward(
      dQ.get(), dK.get(), dV.get(), dOut.get(), dLse.get(), dDout.get(),
      dDq.get(), dDk.get(), dDv.get(), workspace.get(), gpuShape, nullptr, nullptr,
      options));
  if (options.deterministic)
    EXPECT_EQ(downloadBf16(dDq), gotDq);
  else
    expectClose(bwd + ".dq_again", shape, downloadBf16(dDq), wantDq, tol::kBf16AttentionRel);
  EXPECT_EQ(downloadBf16(dDk), gotDk);
  EXPECT_EQ(downloadBf16(dDv), gotDv);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Combine(
        ::testing::Values(
            AttnCase{1, 1, 4, 2, 64, 1}, AttnCase{2, 7, 4, 2, 64, 1},
            AttnCase{1, 7, 6, 1, 128, 1}, AttnCase{2, 129, 4, 2, 64, 1},
            AttnCase{1, 129, 6, 1, 128, 1}, AttnCase{2, 257, 4, 4, 64, 1},
            AttnCase{1, 257, 6, 1, 64, 1}, AttnCase{2, 257, 4, 2, 128, 1},
            AttnCase{1, 128, 4, 4, 128, 1}, AttnCase{1, 129, 4, 2, 64, 16},
            AttnCase{2, 65, 6, 1, 128, 16}, AttnCase{1, 131, 8, 2, 64, 1},
            AttnCase{2, 77, 8, 2, 128, 1}, AttnCase{1, 131, 8, 1, 64, 1},
            AttnCase{2, 77, 8, 1, 128, 1}),
        ::testing::Values(Backend::Mtc, Backend::Cudnn, Backend::CudnnAtomicDq)),
    [](const auto &info) {
      const AttnCase &c = std::get<0>(info.param);
      return joined("b", c.batch, "_s", c.seq, "_h", c.heads, "_kv", c.kvHeads,
                    "_d", c.headDim, c.qkRange > 1 ? "_large" : "", "_",
                    backendName(std::get<1>(info.param)));
    });

TEST(AttentionBackendTest, ParsesAndResolves) {
  auto parsed = cuda::parseAttentionBackend("cudnn", "--attention-backend");
  ASSERT_TRUE(parsed.isOk());
  EXPECT_EQ(*parsed, cuda::AttentionBackend::Cudnn);
  auto bad = cuda::parseAttentionBackend("flash", "MT_ATTENTION_BACKEND");
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.message().find("MT_ATTENTION_BACKEND='flash' is not an attention backend: "
                               "use auto, cudnn or mtc"),
            std::string::npos)
      << bad.message();
  const cuda::AttentionShape shape{1, 64, 4, 2, 64, 0.125f};
  // Documents packed in a row: auto keeps the mtc kernels, forced cudnn fails.
  auto packed = cuda::planAttention(shape, true, {cuda::AttentionBackend::Auto});
  ASSERT_TRUE(packed.isOk()) << packed.message();
  EXPECT_EQ(packed->backend, cuda::AttentionBackend::Mtc);
  auto forced = cuda::planAttention(shape, true, {cuda::AttentionBackend::Cudnn});
  ASSERT_FALSE(forced.isOk());
  EXPECT_NE(forced.message().find("cannot mask documents"), std::string::npos)
      << forced.message();
  auto mtc = cuda::planAttention(shape, false, {cuda::AttentionBackend::Mtc});
  ASSERT_TRUE(mtc.isOk());
  EXPECT_EQ(mtc->backend, cuda::AttentionBackend::Mtc);
  EXPECT_EQ(mtc->forwardBytes, 0u);
  EXPECT_EQ(mtc->backwardBytes, cuda::attentionBackwardWorkspaceBytes(shape));
}

// What cuDNN's backward asks for, deterministic or not, agrees, within the 5% that
// --explain's memory promises, with the workspace `mtc compile --explain`
// predicts and mtc compile plans (plan::cudnnAttentionWorkspaceBytes):
// llama3.2-1b's shapes, whose figures the formula was read from, and
// qwen3-0.6b's (head_dim 128); its forward asks for what
// plan::kCudnnAttentionForwardWorkspaceBytes says.
TEST(AttentionBackendTest, CudnnWorkspaceIsAsPredicted) {
  for (const cuda::AttentionShape &s :
       {cuda::AttentionShape{4, 2048, 32, 8, 64, 0.125f},
        cuda::AttentionShape{1, 8192, 32, 8, 64, 0.125f},
        cuda::AttentionShape{4, 2048, 16, 8, 128, 0.088f}}) {
    for (bool deterministic : {true, false}) {
      auto bytes = cuda::cudnnAttentionPrepare(s, deterministic);
      ASSERT_TRUE(bytes.isOk()) << bytes.message();
      const double predicted = double(plan::cudnnAttentionWorkspaceBytes(
          s.batch, s.heads, s.seq, s.seq, s.headDim, deterministic));
      const std::string what = shapeText({s.batch, s.seq, s.heads, s.kvHeads, s.headDim}) +
                               (deterministic ? " deterministic" : " atomic dQ");
      EXPECT_NEAR(double(bytes->backward), predicted, 0.05 * predicted) << what;
      EXPECT_EQ(bytes->forward, plan::kCudnnAttentionForwardWorkspaceBytes) << what;
    }
  }
}

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
