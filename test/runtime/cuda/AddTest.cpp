// The CUDA addition kernels (runtime/cuda/Add.h) against the CPU references
// of runtime/cpu/Dense.h on the same bf16-exact data: add, accumulate (bf16
// and fp32), bias add and the bias gradient, at 16-byte-aligned pointers and
// one element off, in place, and accumulating into non-zero values; and the
// fp32 scale of expert gradients against the CPU backend's expression.
#include "runtime/cuda/Add.h"

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

/// Pointer offsets, in elements: 0 (16-byte aligned, the vector path where
/// the shape allows) and 1 (the scalar path).
constexpr int64_t kOffsets[] = {0, 1};

/// v behind `offset` zeros: uploaded whole, the data starts at get() + offset.
std::vector<float> padded(const std::vector<float> &v, int64_t offset) {
  std::vector<float> p(offset, 0.0f);
  p.insert(p.end(), v.begin(), v.end());
  return p;
}

/// The data of a buffer filled by padded(): the first `offset` dropped.
std::vector<float> unpadded(std::vector<float> v, int64_t offset) {
  v.erase(v.begin(), v.begin() + offset);
  return v;
}

std::string caseText(std::initializer_list<int64_t> dims, int64_t offset) {
  return shapeText(dims) + (offset ? "+off1" : "");
}

class AddTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(AddTest, MatchesCpu) {
  const int64_t n = GetParam();
  std::mt19937 rng{uint32_t(n)};
  const auto a = randomBf16(rng, n, -4, 4);
  const auto b = randomBf16(rng, n, -4, 4);
  std::vector<float> want(n);
  cpu::addForward(a.data(), b.data(), want.data(), n);
  for (int64_t off : kOffsets) {
    const std::string shape = caseText({n}, off);
    DeviceBuffer<bf16> dA(n + off), dB(n + off), dY(n + off);
    uploadBf16(dA, padded(a, off));
    uploadBf16(dB, padded(b, off));
    MT_ASSERT_OK(cuda::add(dA.get() + off, dB.get() + off, dY.get() + off, n,
                           nullptr));
    expectClose("add", shape, unpadded(downloadBf16(dY), off), want,
                tol::kBf16Rel);
    // In place: y aliases a.
    MT_ASSERT_OK(cuda::add(dA.get() + off, dB.get() + off, dA.get() + off, n,
                           nullptr));
    expectClose("add(y=a)", shape, unpadded(downloadBf16(dA), off), want,
                tol::kBf16Rel);
  }
}

class AccumulateTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(AccumulateTest, Bf16MatchesCpu) {
  const int64_t n = GetParam();
  std::mt19937 rng{uint32_t(n + 1)};
  const auto x = randomBf16(rng, n, -4, 4);
  const auto yOld = randomBf16(rng, n, -4, 4);
  std::vector<float> want = yOld;
  cpu::accumulate(x.data(), want.data(), n);
  for (int64_t off : kOffsets) {
    DeviceBuffer<bf16> dX(n + off), dY(n + off);
    uploadBf16(dX, padded(x, off));
    uploadBf16(dY, padded(yOld, off));
    MT_ASSERT_OK(cuda::accumulate(dX.get() + off, dY.get() + off, n, nullptr));
    expectClose("accumulate_bf16+=", caseText({n}, off),
                unpadded(downloadBf16(dY), off), want, tol::kBf16Rel);
  }
}

TEST_P(AccumulateTest, Fp32BitExactWithCpu) {
  const int64_t n = GetParam();
  std::mt19937 rng{uint32_t(n + 2)};
  std::uniform_real_distribution<float> dist(-4, 4);
  std::vector<float> x(n), yOld(n);
  for (int64_t i = 0; i < n; ++i)
    x[i] = dist(rng), yOld[i] = dist(rng); // fp32: the sums round
  std::vector<float> want = yOld;
  cpu::accumulate(x.data(), want.data(), n);
  for (int64_t off : kOffsets) {
    DeviceBuffer<float> dX(n + off), dY(n + off);
    dX.upload(padded(x, off).data());
    dY.upload(padded(yOld, off).data());
    MT_ASSERT_OK(cuda::accumulate(dX.get() + off, dY.get() + off, n, nullptr));
    std::vector<float> got = download(dY);
    expectClose("accumulate_f32+=", caseText({n}, off), unpadded(got, off),
                want, tol::kBitExact);
  }
}

class ScaleTest : public ::testing::TestWithParam<int64_t> {};

// mt.scale: y = x * float(factor), the CPU backend's kernel (CpuExecutor.cpp)
// one multiply per element; 1/3 rounds, so the product rounds too.
TEST_P(ScaleTest, Fp32BitExactWithCpu) {
  const int64_t n = GetParam();
  std::mt19937 rng{uint32_t(n + 3)};
  std::uniform_real_distribution<float> dist(-4, 4);
  std::vector<float> x(n), want(n);
  for (float &v : x)
    v = dist(rng);
  for (double factor : {0.5, 1.0 / 3.0}) {
    for (int64_t i = 0; i < n; ++i)
      want[i] = x[i] * float(factor);
    for (int64_t off : kOffsets) {
      const std::string shape = caseText({n}, off) + (factor == 0.5 ? " x0.5" : " x1/3");
      DeviceBuffer<float> dX(n + off), dY(n + off);
      dX.upload(padded(x, off).data());
      MT_ASSERT_OK(cuda::scale(dX.get() + off, dY.get() + off, n, float(factor), nullptr));
      expectClose("scale_f32", shape, unpadded(download(dY), off), want, tol::kBitExact);
      // In place: y aliases x.
      MT_ASSERT_OK(cuda::scale(dX.get() + off, dX.get() + off, n, float(factor), nullptr));
      expectClose("scale_f32(y=x)", shape, unpadded(download(dX), off), want, tol::kBitExact);
    }
  }
}

const auto kSizes = ::testing::Values(int64_t{1}, int64_t{7}, int64_t{4096},
                                      int64_t{1 << 20}, int64_t{1000003});
INSTANTIATE_TEST_SUITE_P(Sizes, AddTest, kSizes);
INSTANTIATE_TEST_SUITE_P(Sizes, AccumulateTest, kSizes);
INSTANTIATE_TEST_SUITE_P(Sizes, ScaleTest, kSizes);

struct BiasCase {
  int64_t rows, dim;
};

void PrintTo(const BiasCase &c, std::ostream *os) {
  *os << shapeText({c.rows, c.dim});
}

class BiasTest : public ::testing::TestWithParam<BiasCase> {};

TEST_P(BiasTest, AddMatchesCpu) {
  const auto [rows, dim] = GetParam();
  std::mt19937 rng(uint32_t(rows * 1000 + dim));
  const auto x = randomBf16(rng, rows * dim, -4, 4);
  const auto bias = randomBf16(rng, dim, -1, 1);
  std::vector<float> want(rows * dim);
  cpu::biasAddForward(x.data(), bias.data(), want.data(), rows, dim);
  for (int64_t off : kOffsets) {
    const std::string shape = caseText({rows, dim}, off);
    DeviceBuffer<bf16> dX(x.size() + off), dBias(dim + off), dY(x.size() + off);
    uploadBf16(dX, padded(x, off));
    uploadBf16(dBias, padded(bias, off));
    MT_ASSERT_OK(cuda::biasAdd(dX.get() + off, dBias.get() + off,
                               dY.get() + off, rows, dim, nullptr));
    expectClose("bias_add", shape, unpadded(downloadBf16(dY), off), want,
                tol::kBf16Rel);
    // In place: y aliases x.
    MT_ASSERT_OK(cuda::biasAdd(dX.get() + off, dBias.get() + off,
                               dX.get() + off, rows, dim, nullptr));
    expectClose("bias_add(y=x)", shape, unpadded(downloadBf16(dX), off), want,
                tol::kBf16Rel);
  }
}

TEST_P(BiasTest, GradMatchesCpuAndIsDeterministic) {
  const auto [tokens, out] = GetParam();
  std::mt19937 rng(uint32_t(tokens * 1000 + out + 1));
  const auto dy = randomBf16(rng, tokens * out, -1, 1);
  const auto dbiasOld = randomBf16(rng, out, -1, 1);
  std::vector<float> want = dbiasOld;
  cpu::biasBackward(dy.data(), want.data(), tokens, out);
  std::vector<float> first;
  for (int64_t off : kOffsets) {
    const std::string shape = caseText({tokens, out}, off);
    DeviceBuffer<bf16> dDy(dy.size() + off);
    DeviceBuffer<float> dDbias(out + off);
    uploadBf16(dDy, padded(dy, off));
    for (int run = 0; run < 2; ++run) {
      dDbias.upload(padded(dbiasOld, off).data());
      MT_ASSERT_OK(cuda::biasGrad(dDy.get() + off, dDbias.get() + off, tokens,
                                  out, nullptr));
      const std::vector<float> got = unpadded(download(dDbias), off);
      if (first.empty()) {
        expectClose("bias_grad+=", shape, got, want, tol::kFp32AccumRel);
        first = got;
      } else {
        // A fixed summation order: the same bits every run, at any offset.
        EXPECT_EQ(got, first) << "bias_grad " << shape << " run " << run;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, BiasTest,
    ::testing::Values(BiasCase{1, 1}, BiasCase{3, 5}, BiasCase{129, 1000},
                      BiasCase{300, 4097}, BiasCase{8192, 2048}),
    [](const auto &info) {
      return joined("r", info.param.rows, "_d", info.param.dim);
    });

// fp32 add (the loss plus the MoE aux losses): the CPU's own additions.
TEST(AddFp32Test, MatchesCpuBitForBit) {
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(4099)}) {
    std::mt19937 rng{uint32_t(n)};
    std::uniform_real_distribution<float> dist(-4, 4);
    std::vector<float> a(n), b(n), want(n);
    for (int64_t i = 0; i < n; ++i)
      a[i] = dist(rng), b[i] = dist(rng);
    cpu::addForward(a.data(), b.data(), want.data(), n);
    DeviceBuffer<float> dA(n), dB(n), dY(n);
    dA.upload(a.data());
    dB.upload(b.data());
    MT_ASSERT_OK(cuda::add(dA.get(), dB.get(), dY.get(), n, nullptr));
    expectClose("add(fp32)", shapeText({n}), download(dY), want, tol::kBitExact);
  }
}

TEST(AddEmptyTest, ZeroSizesAreNoOps) {
  DeviceBuffer<float> dbias(3);
  const std::vector<float> old = {1.0f, -2.0f, 3.0f};
  dbias.upload(old.data());
  MT_ASSERT_OK(cuda::add(static_cast<const bf16 *>(nullptr), nullptr, nullptr, 0, nullptr));
  MT_ASSERT_OK(cuda::add(static_cast<const float *>(nullptr), nullptr, nullptr, 0, nullptr));
  MT_ASSERT_OK(cuda::accumulate(static_cast<const bf16 *>(nullptr), nullptr, 0,
                                nullptr));
  MT_ASSERT_OK(cuda::accumulate(static_cast<const float *>(nullptr), nullptr, 0,
                                nullptr));
  MT_ASSERT_OK(cuda::scale(nullptr, nullptr, 0, 0.5f, nullptr));
  MT_ASSERT_OK(cuda::biasAdd(nullptr, nullptr, nullptr, 0, 3, nullptr));
  MT_ASSERT_OK(cuda::biasGrad(nullptr, dbias.get(), 0, 3, nullptr));
  EXPECT_EQ(download(dbias), old); // no tokens: dbias untouched
}

} // namespace
