// The CUDA RMSNorm (runtime/cuda/Norm.h), plain and fused with the residual
// add, against the CPU kernels of mt.rmsnorm / mt.rmsnorm_grad and of
// mt.add_rmsnorm / mt.add_rmsnorm_grad (runtime/cpu/Norm.h) on the same
// bf16-exact data.
#include "runtime/cuda/Norm.h"

#include "runtime/cpu/Norm.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct NormCase {
  int64_t rows, dim;
  bool residual; // fused add in the forward, dresidual in the backward
};

void PrintTo(const NormCase &c, std::ostream *os) {
  *os << shapeText({c.rows, c.dim}) << (c.residual ? "+res" : "");
}

class RmsNormTest : public ::testing::TestWithParam<NormCase> {};

/// Random rows, with edge rows when there are enough: all zeros (the norm
/// is then 1/sqrt(eps) times 0) and large magnitudes. Rows differ in scale,
/// so outputs are compared row by row.
std::vector<float> normInput(std::mt19937 &rng, int64_t rows, int64_t dim) {
  auto x = randomBf16(rng, rows * dim, -2, 2);
  if (rows >= 3) {
    std::fill(x.begin(), x.begin() + dim, 0.0f);
    for (int64_t i = 0; i < dim; ++i)
      x[dim + i] = roundBf16(x[dim + i] * 300.0f);
  }
  return x;
}

TEST_P(RmsNormTest, MatchesCpu) {
  const auto [rows, dim, fused] = GetParam();
  const std::string shape = shapeText({rows, dim}) + (fused ? "+res" : "");
  const float eps = 1e-5f;
  std::mt19937 rng(uint32_t(rows * 1000 + dim + fused));
  const auto x = normInput(rng, rows, dim);
  const auto res = randomBf16(rng, rows * dim, -1, 1);
  const auto w = randomBf16(rng, dim, 0.5, 1.5);
  const auto dy = randomBf16(rng, rows * dim, -1, 1);
  const auto dres = randomBf16(rng, rows * dim, -1, 1);
  const auto dwOld = randomBf16(rng, dim, -1, 1);

  DeviceBuffer<bf16> dX(x.size()), dRes(x.size()), dResOut(x.size()),
      dW(dim), dY(x.size()), dDy(x.size()), dDres(x.size()), dDx(x.size());
  DeviceBuffer<float> dDw(dim);
  uploadBf16(dX, x);
  uploadBf16(dRes, res);
  uploadBf16(dW, w);
  uploadBf16(dDy, dy);
  uploadBf16(dDres, dres);
  dDw.upload(dwOld.data());

  MT_ASSERT_OK(cuda::rmsnormForward(dX.get(), fused ? dRes.get() : nullptr,
                                    fused ? dResOut.get() : nullptr, dW.get(),
                                    dY.get(), rows, dim, eps, nullptr));
  // The normalized input: x, or the sum of mt.add_rmsnorm's CPU kernel
  // rounded to bf16: the GPU stores the residual stream in bf16 and
  // normalizes the stored value, so the reference norm is taken again of
  // the rounded sum (the fp32 sum's norm differs by one more rounding).
  std::vector<float> in = x, want(x.size());
  if (fused) {
    cpu::addRmsnormForward(x.data(), res.data(), w.data(), in.data(), want.data(), rows, dim,
                           eps);
    for (float &v : in)
      v = roundBf16(v);
    expectClose("add_rmsnorm.sum", shape, downloadBf16(dResOut), in, tol::kBitExact);
  }
  cpu::rmsnormForward(in.data(), w.data(), want.data(), rows, dim, eps);
  expectCloseRows("rmsnorm_fwd", shape, downloadBf16(dY), want, dim,
                  tol::kBf16Rel);

  // The backward reads the normalized input (residualOut when fused).
  const bf16 *normIn = fused ? dResOut.get() : dX.get();
  DeviceBuffer<uint8_t> workspace(cuda::rmsnormBackwardWorkspaceBytes(rows, dim));
  MT_ASSERT_OK(cuda::rmsnormBackward(normIn, dW.get(), dDy.get(),
                                     fused ? dDres.get() : nullptr, dDx.get(),
                                     dDw.get(), workspace.get(), rows, dim, eps,
                                     nullptr));
  // The CPU kernel of mt.add_rmsnorm_grad when fused, of mt.rmsnorm_grad
  // when not.
  std::vector<float> wantDx(x.size()), wantDw = dwOld;
  if (fused)
    cpu::addRmsnormBackward(in.data(), w.data(), dy.data(), dres.data(), wantDx.data(),
                            wantDw.data(), rows, dim, eps);
  else
    cpu::rmsnormBackward(in.data(), w.data(), dy.data(), wantDx.data(), wantDw.data(), rows,
                         dim, eps);
  expectCloseRows("rmsnorm_bwd.dx", shape, downloadBf16(dDx), wantDx, dim,
                  tol::kBf16Rel);
  const std::vector<float> dwFirst = download(dDw);
  expectClose("rmsnorm_bwd.dw+=", shape, dwFirst, wantDw, tol::kFp32AccumRel);

  // Deterministic: the same inputs add the same bits again.
  dDw.upload(dwOld.data());
  MT_ASSERT_OK(cuda::rmsnormBackward(normIn, dW.get(), dDy.get(),
                                     fused ? dDres.get() : nullptr, dDx.get(),
                                     dDw.get(), workspace.get(), rows, dim, eps,
                                     nullptr));
  EXPECT_EQ(download(dDw), dwFirst);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RmsNormTest,
    ::testing::Values(NormCase{7, 13, false}, NormCase{7, 13, true},
                      NormCase{129, 256, false}, NormCase{129, 256, true},
                      NormCase{3, 2048, true}, NormCase{1000, 64, true},
                      NormCase{5, 16384, false}, NormCase{9, 3000, true},
                      // Warp-per-row: more rows than the backward's groups,
                      // and the widest warp row.
                      NormCase{20000, 128, false}, NormCase{77, 1024, true},
                      NormCase{33, 1032, false},
                      // Warp-per-row with dw in registers (1024 < dim <= 4096,
                      // dim % 256 == 0): uneven rows per warp, and the kernel
                      // that reloads x and dy (dim > 2048).
                      NormCase{4103, 2048, true}, NormCase{37, 1280, false},
                      NormCase{9, 4096, true}, NormCase{2051, 3072, false}),
    [](const auto &info) {
      const NormCase &c = info.param;
      return joined("r", c.rows, "_d", c.dim, c.residual ? "_res" : "");
    });

} // namespace
