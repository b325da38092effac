// Our grouped GEMM kernel (runtime/cuda/GroupedGemmKernel.h), its three
// products against fp32 CPU GEMMs (runtime/cpu/Gemm.h) per expert on the
// same bf16-exact data: the forward y_e = x_e w_eᵀ, the input gradient
// dx_e = dy_e w_e (written and added) and the weight gradient dw_e +=
// dy_eᵀ x_e into fp32. Row counts that are odd, zero, past one 128-row tile
// and not a multiple of it; in/out that are not multiples of 128, and not
// multiples of 8 (the element-by-element loads); rows past the groups left
// alone; every result the same bits on a second run. The fused SwiGLU
// products are covered through moe_grouped_mlp in MoETest.cpp.
#include "runtime/cuda/GroupedGemmKernel.h"

#include "runtime/cpu/Gemm.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct Case {
  std::vector<int32_t> counts;
  int64_t in, out, tail; // tail: rows of the buffers past the groups
};

std::string caseText(const Case &c) {
  std::string s = "counts";
  for (int32_t n : c.counts)
    s += " " + std::to_string(n);
  return s + " in " + std::to_string(c.in) + " out " + std::to_string(c.out);
}

class GroupedGemmKernelTest : public ::testing::TestWithParam<Case> {};

/// The bit patterns of `v`: the rows past the groups hold NaN, which never
/// compares equal as a float.
std::vector<uint32_t> bitsOf(const std::vector<float> &v) {
  std::vector<uint32_t> bits(v.size());
  std::memcpy(bits.data(), v.data(), 4 * v.size());
  return bits;
}

/// The reference products, expert by expert over its rows.
struct Reference {
  std::vector<float> y, dx, dxAdded, dw;
};

Reference reference(const Case &c, const std::vector<float> &x, const std::vector<float> &w,
                    const std::vector<float> &dy, const std::vector<float> &dxOld,
                    const std::vector<float> &dwOld) {
  const int64_t in = c.in, out = c.out, E = int64_t(c.counts.size());
  const int64_t used = std::accumulate(c.counts.begin(), c.counts.end(), int64_t(0));
  Reference r;
  r.y.assign(size_t((used + c.tail) * out), NAN); // rows past the groups: not written
  r.dx.assign(size_t((used + c.tail) * in), NAN);
  r.dxAdded = dxOld;
  r.dw = dwOld;
  int64_t begin = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t rows = c.counts[size_t(e)];
    const float *we = w.data() + e * out * in;
    if (rows > 0) {
      cpu::gemm(false, true, rows, out, in, x.data() + begin * in, in, we, in, 0.0f,
                r.y.data() + begin * out, out);
      cpu::gemm(false, false, rows, in, out, dy.data() + begin * out, out, we, in, 0.0f,
                r.dx.data() + begin * in, in);
      cpu::gemm(true, false, out, in, rows, dy.data() + begin * out, out, x.data() + begin * in,
                in, 1.0f, r.dw.data() + e * out * in, in);
    }
    begin += rows;
  }
  for (int64_t i = 0; i < used * in; ++i)
    r.dxAdded[size_t(i)] += r.dx[size_t(i)];
  return r;
}

TEST_P(GroupedGemmKernelTest, ProductsMatchCpu) {
  const Case c = GetParam();
  const std::string shape = caseText(c);
  const int64_t in = c.in, out = c.out, E = int64_t(c.counts.size());
  const int64_t rows =
      std::accumulate(c.counts.begin(), c.counts.end(), int64_t(0)) + c.tail;
  std::mt19937 rng{uint32_t(rows * 31 + in * 7 + out)};
  const auto x = randomBf16(rng, rows * in, -1, 1);
  const auto w = randomBf16(rng, E * out * in, -0.5f, 0.5f);
  const auto dy = randomBf16(rng, rows * out, -1, 1);
  const auto dxOld = randomBf16(rng, rows * in, -1, 1);
  const auto dwOld = randomBf16(rng, E * out * in, -1, 1);
  const Reference want = reference(c, x, w, dy, dxOld, dwOld);

  DeviceBuffer<bf16> dX(rows * in), dW(E * out * in), dY(rows * out), dDy(rows * out),
      dDx(rows * in);
  DeviceBuffer<float> dDw(E * out * in);
  DeviceBuffer<int32_t> dCounts(E);
  DeviceBuffer<char> scratch(cuda::groupedLayoutBytes(E));
  uploadBf16(dX, x);
  uploadBf16(dW, w);
  uploadBf16(dDy, dy);
  dCounts.upload(c.counts.data());
  auto layout = cuda::groupedLayout(dCounts.get(), E, rows, scratch.get(), nullptr);
  ASSERT_TRUE(layout) << layout.message();
  std::vector<std::vector<float>> first;
  for (int run = 0; run < 2; ++run) { // the second run must give the same bits
    dY.poison();
    dDx.poison();
    dDw.upload(dwOld.data());
    MT_ASSERT_OK(cuda::groupedKernelForward(dX.get(), dW.get(), dY.get(), in, out, *layout,
                                            nullptr));
    MT_ASSERT_OK(cuda::groupedKernelBackwardInput(dDy.get(), dW.get(), dDx.get(), in, out, false,
                                                  *layout, nullptr));
    MT_ASSERT_OK(cuda::groupedKernelBackwardWeight(dX.get(), dDy.get(), dDw.get(), in, out,
                                                   *layout, nullptr));
    std::vector<std::vector<float>> got{downloadBf16(dY), downloadBf16(dDx), download(dDw)};
    uploadBf16(dDx, dxOld);
    MT_ASSERT_OK(cuda::groupedKernelBackwardInput(dDy.get(), dW.get(), dDx.get(), in, out, true,
                                                  *layout, nullptr));
    got.push_back(downloadBf16(dDx));
    if (run == 1) {
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_EQ(bitsOf(got[i]), bitsOf(first[i]))
            << "result " << i << " differs between runs " << shape;
      break;
    }
    expectClose("grouped_kernel_fwd", shape, got[0], want.y, tol::kBf16Rel,
                Nan::MatchesWhereWanted);
    expectClose("grouped_kernel_dgrad", shape, got[1], want.dx, tol::kBf16Rel,
                Nan::MatchesWhereWanted);
    expectClose("grouped_kernel_wgrad", shape, got[2], want.dw, tol::kFp32AccumRel);
    expectClose("grouped_kernel_dgrad (add)", shape, got[3], want.dxAdded, tol::kBf16Rel);
    first = std::move(got);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GroupedGemmKernelTest,
    ::testing::Values(
        // Odd and empty groups, one past a 128-row tile, one of exactly two.
        Case{{37, 0, 129, 1, 0, 256}, 200, 136, 5},
        // in and out not multiples of 8: every load element by element.
        Case{{3, 0, 17}, 37, 19, 2},
        // More reduction tiles than pipeline stages in every product.
        Case{{300, 0, 77}, 520, 264, 0},
        // No rows at all: nothing written, the gradients left as they are.
        Case{{0, 0}, 64, 64, 3}),
    [](const ::testing::TestParamInfo<Case> &info) {
      return "c" + std::to_string(info.index) + "_in" + std::to_string(info.param.in) + "_out" +
             std::to_string(info.param.out);
    });

/// The device cannot report a bad count: a negative one reads as 0 and the
/// groups are cut at the rows, so nothing is read or written past them.
TEST(GroupedGemmKernelLayoutTest, CountsThatDoNotFitTheRowsAreCut) {
  const int64_t rows = 8, in = 16, out = 8, E = 3;
  const std::vector<int32_t> counts{5, -3, 100};
  std::mt19937 rng{5};
  const auto x = randomBf16(rng, rows * in, -1, 1);
  const auto w = randomBf16(rng, E * out * in, -0.5f, 0.5f);
  // Expert 0 takes rows 0..4, expert 1 none, expert 2 the 3 rows left.
  std::vector<float> want(rows * out);
  cpu::gemm(false, true, 5, out, in, x.data(), in, w.data(), in, 0.0f, want.data(), out);
  cpu::gemm(false, true, 3, out, in, x.data() + 5 * in, in, w.data() + 2 * out * in, in, 0.0f,
            want.data() + 5 * out, out);
  DeviceBuffer<bf16> dX(rows * in), dW(E * out * in), dY(rows * out);
  DeviceBuffer<int32_t> dCounts(E);
  DeviceBuffer<char> scratch(cuda::groupedLayoutBytes(E));
  uploadBf16(dX, x);
  uploadBf16(dW, w);
  dCounts.upload(counts.data());
  dY.poison();
  auto layout = cuda::groupedLayout(dCounts.get(), E, rows, scratch.get(), nullptr);
  ASSERT_TRUE(layout) << layout.message();
  MT_ASSERT_OK(
      cuda::groupedKernelForward(dX.get(), dW.get(), dY.get(), in, out, *layout, nullptr));
  expectClose("grouped_kernel_fwd", "counts 5 -3 100 over 8 rows", downloadBf16(dY), want,
              tol::kBf16Rel);
  std::vector<int32_t> rowStart(E + 1);
  check(cudaMemcpy(rowStart.data(), layout->rowStart, 4 * rowStart.size(),
                   cudaMemcpyDeviceToHost),
        "rowStart");
  EXPECT_EQ(rowStart, (std::vector<int32_t>{0, 5, 5, 8}));
}

} // namespace
