// Tests of the RMSNorm and LayerNorm CPU kernels (runtime/cpu/Norm.h)
// against plain fp64 references and central finite differences.
#include "runtime/cpu/Norm.h"

#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cpu::check;
namespace tol = mt::tolerance;

std::vector<double> rmsnormRef(const std::vector<double> &x,
                               const std::vector<double> &w, int64_t rows,
                               int64_t dim, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0.0;
    for (int64_t i = 0; i < dim; ++i)
      ms += x[r * dim + i] * x[r * dim + i];
    ms /= dim;
    for (int64_t i = 0; i < dim; ++i)
      y[r * dim + i] = x[r * dim + i] / std::sqrt(ms + eps) * w[i];
  }
  return y;
}

std::vector<double> layernormRef(const std::vector<double> &x,
                                 const std::vector<double> &w,
                                 const std::vector<double> *b, int64_t rows,
                                 int64_t dim, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < dim; ++i)
      mean += x[r * dim + i];
    mean /= dim;
    for (int64_t i = 0; i < dim; ++i)
      var += (x[r * dim + i] - mean) * (x[r * dim + i] - mean);
    var /= dim;
    for (int64_t i = 0; i < dim; ++i)
      y[r * dim + i] = (x[r * dim + i] - mean) / std::sqrt(var + eps) * w[i] +
                       (b ? (*b)[i] : 0.0);
  }
  return y;
}

constexpr int64_t kRows = 7, kDim = 33;

/// Rows of O(1) data, then edge rows: all zeros, large magnitudes, and a
/// large common offset (which a single-pass fp32 variance would lose).
std::vector<float> edgeRows(std::mt19937 &rng) {
  auto x = randomVector(rng, kRows * kDim, -2, 2);
  for (int64_t i = 0; i < kDim; ++i) {
    x[4 * kDim + i] = 0.0f;
    x[5 * kDim + i] *= 1000.0f;
    x[6 * kDim + i] += 3000.0f;
  }
  return x;
}

TEST(NormTest, RmsnormForwardMatchesReference) {
  std::mt19937 rng(11);
  auto x = edgeRows(rng);
  auto w = randomVector(rng, kDim, 0.5, 1.5);
  const float eps = 1e-6f;
  std::vector<float> y(x.size(), 123.0f);
  cpu::rmsnormForward(x.data(), w.data(), y.data(), kRows, kDim, eps);
  expectClose(y, rmsnormRef(toDouble(x), toDouble(w), kRows, kDim, eps),
              tol::kFp32KernelRel, tol::kFp32KernelAbs, "y");
  for (int64_t i = 0; i < kDim; ++i)
    EXPECT_EQ(y[4 * kDim + i], 0.0f) << "zero row stays finite and zero";
}

TEST(NormTest, RmsnormBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(12);
  auto x = randomVector(rng, kRows * kDim, -2, 2);
  auto w = randomVector(rng, kDim, 0.5, 1.5);
  auto dy = randomVector(rng, x.size(), -1, 1);
  auto dx0 = randomVector(rng, x.size(), -1, 1);
  auto dw0 = randomVector(rng, w.size(), -1, 1);
  auto dx = dx0, dw = dw0;
  const float eps = 1e-6f;
  cpu::rmsnormBackward(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                       kRows, kDim, eps);
  auto xd = toDouble(x), wd = toDouble(w), dyd = toDouble(dy);
  auto loss = [&] { return sumProduct(dyd, rmsnormRef(xd, wd, kRows, kDim, eps)); };
  expectGradient(dx, dx0, finiteDifference(xd, loss), "dx");
  expectGradient(dw, dw0, finiteDifference(wd, loss), "dw");
}

// The fused residual add + norm (mt.add_rmsnorm): the sum, the reference
// norm of the sum, and bit for bit the unfused add then rmsnormForward.
TEST(NormTest, AddRmsnormForwardMatchesReferenceAndUnfused) {
  std::mt19937 rng(16);
  auto x = edgeRows(rng);
  auto r = randomVector(rng, x.size(), -1, 1);
  auto w = randomVector(rng, kDim, 0.5, 1.5);
  const float eps = 1e-6f;
  std::vector<float> sum(x.size(), 123.0f), y(x.size(), 123.0f);
  cpu::addRmsnormForward(x.data(), r.data(), w.data(), sum.data(), y.data(), kRows, kDim, eps);
  std::vector<float> h(x.size()), unfused(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    h[i] = x[i] + r[i];
  cpu::rmsnormForward(h.data(), w.data(), unfused.data(), kRows, kDim, eps);
  EXPECT_EQ(sum, h);
  EXPECT_EQ(y, unfused);
  expectClose(y, rmsnormRef(toDouble(h), toDouble(w), kRows, kDim, eps), tol::kFp32KernelRel,
              tol::kFp32KernelAbs, "y");
}

// Its backward (mt.add_rmsnorm_grad): dx += dresidual + the norm's input
// gradient, by finite differences of sum(dy * rmsnorm(h)) + sum(dres * h);
// from a zeroed dx, bit for bit rmsnormBackward followed by the add.
TEST(NormTest, AddRmsnormBackwardMatchesFiniteDifferencesAndUnfused) {
  std::mt19937 rng(17);
  auto h = randomVector(rng, kRows * kDim, -2, 2);
  auto w = randomVector(rng, kDim, 0.5, 1.5);
  auto dy = randomVector(rng, h.size(), -1, 1);
  auto dres = randomVector(rng, h.size(), -1, 1);
  auto dx0 = randomVector(rng, h.size(), -1, 1);
  auto dw0 = randomVector(rng, w.size(), -1, 1);
  auto dx = dx0, dw = dw0;
  const float eps = 1e-6f;
  cpu::addRmsnormBackward(h.data(), w.data(), dy.data(), dres.data(), dx.data(), dw.data(),
                          kRows, kDim, eps);
  auto hd = toDouble(h), wd = toDouble(w), dyd = toDouble(dy), dresd = toDouble(dres);
  auto loss = [&] {
    return sumProduct(dyd, rmsnormRef(hd, wd, kRows, kDim, eps)) + sumProduct(dresd, hd);
  };
  expectGradient(dx, dx0, finiteDifference(hd, loss), "dx");
  expectGradient(dw, dw0, finiteDifference(wd, loss), "dw");

  std::vector<float> fused(h.size(), 0.0f), fusedDw(kDim, 0.0f);
  cpu::addRmsnormBackward(h.data(), w.data(), dy.data(), dres.data(), fused.data(),
                          fusedDw.data(), kRows, kDim, eps);
  std::vector<float> normDx(h.size(), 0.0f), unfusedDw(kDim, 0.0f), unfused(h.size());
  cpu::rmsnormBackward(h.data(), w.data(), dy.data(), normDx.data(), unfusedDw.data(), kRows,
                       kDim, eps);
  for (size_t i = 0; i < h.size(); ++i)
    unfused[i] = dres[i] + normDx[i];
  EXPECT_EQ(fused, unfused);
  EXPECT_EQ(fusedDw, unfusedDw);
}

TEST(NormTest, LayernormForwardMatchesReference) {
  std::mt19937 rng(13);
  auto x = edgeRows(rng);
  auto w = randomVector(rng, kDim, 0.5, 1.5);
  auto b = randomVector(rng, kDim, -1, 1);
  auto bd = toDouble(b);
  const float eps = 1e-5f;
  std::vector<float> y(x.size(), 123.0f);
  cpu::layernormForward(x.data(), w.data(), b.data(), y.data(), kRows, kDim, eps);
  expectClose(y, layernormRef(toDouble(x), toDouble(w), &bd, kRows, kDim, eps),
              tol::kFp32KernelRel, tol::kFp32KernelAbs, "y");
  // The constant (zero) row normalizes to exactly the bias.
  for (int64_t i = 0; i < kDim; ++i)
    EXPECT_EQ(y[4 * kDim + i], b[i]);

  std::fill(y.begin(), y.end(), 123.0f);
  cpu::layernormForward(x.data(), w.data(), nullptr, y.data(), kRows, kDim, eps);
  expectClose(y, layernormRef(toDouble(x), toDouble(w), nullptr, kRows, kDim, eps),
              tol::kFp32KernelRel, tol::kFp32KernelAbs, "y without bias");
}

TEST(NormTest, LayernormBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(14);
  auto x = randomVector(rng, kRows * kDim, -2, 2);
  auto w = randomVector(rng, kDim, 0.5, 1.5);
  auto b = randomVector(rng, kDim, -1, 1);
  auto dy = randomVector(rng, x.size(), -1, 1);
  auto dx0 = randomVector(rng, x.size(), -1, 1);
  auto dw0 = randomVector(rng, w.size(), -1, 1);
  auto db0 = randomVector(rng, b.size(), -1, 1);
  auto dx = dx0, dw = dw0, db = db0;
  const float eps = 1e-5f;
  cpu::layernormBackward(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                         db.data(), kRows, kDim, eps);
  auto xd = toDouble(x), wd = toDouble(w), bd = toDouble(b), dyd = toDouble(dy);
  auto loss = [&] {
    return sumProduct(dyd, layernormRef(xd, wd, &bd, kRows, kDim, eps));
  };
  expectGradient(dx, dx0, finiteDifference(xd, loss), "dx");
  expectGradient(dw, dw0, finiteDifference(wd, loss), "dw");
  expectGradient(db, db0, finiteDifference(bd, loss), "db");
}

TEST(NormTest, BackwardIndependentOfThreadCount) {
  const int64_t rows = 600, dim = 97; // several column blocks, parallel path
  std::mt19937 rng(15);
  auto x = randomVector(rng, rows * dim, -2, 2);
  auto w = randomVector(rng, dim, 0.5, 1.5);
  auto dy = randomVector(rng, x.size(), -1, 1);
  auto run = [&](int threads) {
    std::vector<float> dx(x.size(), 0.5f), dw(dim, 0.5f);
    std::vector<float> lx(x.size(), 0.5f), lw(dim, 0.5f), lb(dim, 0.5f);
    withThreads(threads, [&] {
      cpu::rmsnormBackward(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                           rows, dim, 1e-6f);
      cpu::layernormBackward(x.data(), w.data(), dy.data(), lx.data(),
                             lw.data(), lb.data(), rows, dim, 1e-5f);
    });
    return std::vector<std::vector<float>>{dx, dw, lx, lw, lb};
  };
  EXPECT_EQ(run(1), run(2));
}

} // namespace
