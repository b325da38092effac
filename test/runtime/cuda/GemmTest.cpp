// GemmRunner (runtime/cuda/Gemm.h) against the CPU linear kernels
// (runtime/cpu/Dense.h) on the same bf16-exact data, over odd shapes, with
// bias, accumulation and unaligned operands.
#include "runtime/cuda/Gemm.h"

#include "runtime/cpu/Dense.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct GemmShape {
  int64_t tokens, in, out;
};

void PrintTo(const GemmShape &s, std::ostream *os) {
  *os << shapeText({s.tokens, s.in, s.out});
}

class GemmTest : public ::testing::TestWithParam<GemmShape> {};

// Choice::Timed times its candidates on scratch: the accumulating products
// still add to exactly the values uploaded, and every choice is a correct
// product.
TEST_P(GemmTest, MatchesCpuLinear) {
  for (auto choice : {cuda::GemmRunner::Choice::Heuristic, cuda::GemmRunner::Choice::Timed}) {
    SCOPED_TRACE(choice == cuda::GemmRunner::Choice::Timed ? "timed" : "heuristic");
    const auto [tokens, in, out] = GetParam();
    const std::string shape = shapeText({tokens, in, out});
    std::mt19937 rng(uint32_t(tokens * 131 + in * 7 + out));
    const auto x = randomBf16(rng, tokens * in, -1, 1);
    const auto w = randomBf16(rng, out * in, -1, 1);
    const auto bias = randomBf16(rng, out, -2, 2);
    const auto dy = randomBf16(rng, tokens * out, -1, 1);
    const auto dxOld = randomBf16(rng, tokens * in, -1, 1);
    const auto dwOld = randomBf16(rng, out * in, -0.5, 0.5);

    DeviceBuffer<bf16> dX(x.size()), dW(w.size()), dBias(bias.size()),
        dDy(dy.size()), dY(tokens * out), dDx(x.size());
    DeviceBuffer<float> dDw(w.size());
    uploadBf16(dX, x);
    uploadBf16(dW, w);
    uploadBf16(dBias, bias);
    uploadBf16(dDy, dy);
    dDw.upload(dwOld.data());
    auto runner = cuda::GemmRunner::create();
    ASSERT_TRUE(runner) << runner.message();
    runner->setChoice(choice);

    for (bool withBias : {false, true}) {
      dY.poison();
      MT_ASSERT_OK(runner->linearForward(dX.get(), dW.get(),
                                         withBias ? dBias.get() : nullptr,
                                         dY.get(), tokens, in, out, nullptr));
      std::vector<float> want(tokens * out);
      cpu::linearForward(x.data(), w.data(), withBias ? bias.data() : nullptr,
                         want.data(), tokens, in, out);
      expectClose(withBias ? "linear_fwd+bias" : "linear_fwd", shape,
                  downloadBf16(dY), want, tol::kBf16Rel);
    }

    for (bool accumulate : {false, true}) {
      if (accumulate)
        uploadBf16(dDx, dxOld);
      else
        dDx.poison();
      MT_ASSERT_OK(runner->linearBackwardInput(dDy.get(), dW.get(), dDx.get(),
                                               tokens, in, out, nullptr,
                                               accumulate));
      std::vector<float> want = accumulate ? dxOld : std::vector<float>(x.size());
      cpu::linearBackwardInput(dy.data(), w.data(), want.data(), tokens, in, out);
      expectClose(accumulate ? "linear_dgrad+=" : "linear_dgrad", shape,
                  downloadBf16(dDx), want,
                  accumulate ? tol::kBf16TwoRoundingsRel : tol::kBf16Rel);
    }

    MT_ASSERT_OK(runner->linearBackwardWeight(dX.get(), dDy.get(), dDw.get(),
                                              tokens, in, out, nullptr));
    std::vector<float> want = dwOld;
    cpu::linearBackwardWeight(x.data(), dy.data(), want.data(), tokens, in, out);
    expectClose("linear_wgrad+=", shape, download(dDw), want, tol::kFp32AccumRel);

    // Written (a step's first micro-batch): the poisoned old values are not
    // read, and the result is the product's alone.
    dDw.poison();
    MT_ASSERT_OK(runner->linearBackwardWeight(dX.get(), dDy.get(), dDw.get(), tokens, in, out,
                                              nullptr, /*accumulate=*/false));
    std::vector<float> product(w.size(), 0.0f);
    cpu::linearBackwardWeight(x.data(), dy.data(), product.data(), tokens, in, out);
    expectClose("linear_wgrad", shape, download(dDw), product, tol::kFp32AccumRel);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmTest,
                         ::testing::Values(GemmShape{7, 13, 5},
                                           GemmShape{129, 256, 384},
                                           GemmShape{1, 8, 1000},
                                           GemmShape{64, 2048, 96},
                                           GemmShape{200, 64, 2048}),
                         [](const auto &info) {
                           const GemmShape &s = info.param;
                           return joined("t", s.tokens, "_in", s.in, "_out",
                                         s.out);
                         });

// Operands at an address that is only 2-byte aligned (a view into a larger
// buffer): the runner must choose a kernel that allows it.
TEST(GemmTest, UnalignedOperands) {
  const int64_t tokens = 33, in = 64, out = 48;
  std::mt19937 rng(5);
  const auto x = randomBf16(rng, tokens * in + 1, -1, 1);
  const auto w = randomBf16(rng, out * in, -1, 1);
  DeviceBuffer<bf16> dX(x.size()), dW(w.size()), dY(tokens * out + 1);
  uploadBf16(dX, x);
  uploadBf16(dW, w);
  auto runner = cuda::GemmRunner::create();
  ASSERT_TRUE(runner) << runner.message();
  MT_ASSERT_OK(runner->linearForward(dX.get() + 1, dW.get(), nullptr,
                                     dY.get() + 1, tokens, in, out, nullptr));
  std::vector<float> want(tokens * out);
  cpu::linearForward(x.data() + 1, w.data(), nullptr, want.data(), tokens, in, out);
  std::vector<float> got = downloadBf16(dY);
  got.erase(got.begin());
  expectClose("linear_fwd(unaligned)", shapeText({tokens, in, out}), got, want,
              tol::kBf16Rel);
}

// The experts' products: one runner sees a new token count at each call.
// Counts of one bucket of 64 share a plan whose layouts are resized to
// each count, up and down, and the bucket's largest count returns to it.
TEST(GemmTest, TokenCountsShareAPlanPerBucket) {
  const int64_t maxTokens = 128, in = 96, out = 80;
  std::mt19937 rng(11);
  const auto x = randomBf16(rng, maxTokens * in, -1, 1);
  const auto w = randomBf16(rng, out * in, -1, 1);
  const auto dy = randomBf16(rng, maxTokens * out, -1, 1);
  DeviceBuffer<bf16> dX(x.size()), dW(w.size()), dDy(dy.size()), dY(maxTokens * out),
      dDx(x.size());
  DeviceBuffer<float> dDw(w.size());
  uploadBf16(dX, x);
  uploadBf16(dW, w);
  uploadBf16(dDy, dy);
  auto runner = cuda::GemmRunner::create();
  ASSERT_TRUE(runner) << runner.message();
  runner->setChoice(cuda::GemmRunner::Choice::Timed); // bucket plans timed at one count
  const std::vector<float> zeros(w.size(), 0.0f);
  for (int64_t tokens : {100, 77, 128, 65, 100, 1, 64, 127}) {
    const std::string shape = shapeText({tokens, in, out});
    dY.poison();
    dDx.poison();
    dDw.upload(zeros.data());
    MT_ASSERT_OK(runner->linearForward(dX.get(), dW.get(), nullptr, dY.get(), tokens, in, out,
                                       nullptr));
    MT_ASSERT_OK(runner->linearBackwardInput(dDy.get(), dW.get(), dDx.get(), tokens, in, out,
                                             nullptr));
    MT_ASSERT_OK(runner->linearBackwardWeight(dX.get(), dDy.get(), dDw.get(), tokens, in, out,
                                              nullptr));
    std::vector<float> wantY(tokens * out), wantDx(tokens * in), wantDw(zeros);
    cpu::linearForward(x.data(), w.data(), nullptr, wantY.data(), tokens, in, out);
    cpu::linearBackwardInput(dy.data(), w.data(), wantDx.data(), tokens, in, out);
    cpu::linearBackwardWeight(x.data(), dy.data(), wantDw.data(), tokens, in, out);
    std::vector<float> y = downloadBf16(dY), dx = downloadBf16(dDx);
    y.resize(size_t(tokens * out));
    dx.resize(size_t(tokens * in));
    expectClose("linear_fwd", shape, y, wantY, tol::kBf16Rel);
    expectClose("linear_dgrad", shape, dx, wantDx, tol::kBf16Rel);
    expectClose("linear_wgrad", shape, download(dDw), wantDw, tol::kFp32AccumRel);
  }
}

} // namespace
