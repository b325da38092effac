// Tests of the RMSNorm and LayerNorm CPU kernels (runtime/cpu/Norm.h)
// against plain fp64 references and central finite differences.
#include "runtime/cpu/Norm.h"

#include "test/Tolerances.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace {

using namespace mt;
namespace tol = mt::tolerance;

std::vector<float> randomVector(std::mt19937 &rng, size_t n, float lo,
                                float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

std::vector<double> toDouble(const std::vector<float> &v) {
  return {v.begin(), v.end()};
}

double maxAbs(const std::vector<double> &v) {
  double m = 0.0;
  for (double x : v)
    m = std::max(m, std::fabs(x));
  return m;
}

/// Worst |got - want| must stay within rel * max|want| + abs.
void expectClose(const std::vector<float> &got, const std::vector<double> &want,
                 const char *what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double bound = tol::kFp32KernelRel * maxAbs(want) + tol::kFp32KernelAbs;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[i]), bound)
        << what << "[" << i << "]: got " << got[i] << " want " << want[i];
}

/// Central differences of loss() with respect to each element of v.
std::vector<double> finiteDifference(std::vector<double> &v,
                                     const std::function<double()> &loss) {
  const double h = tol::kFiniteDifferenceStep;
  std::vector<double> grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double saved = v[i];
    v[i] = saved + h;
    const double up = loss();
    v[i] = saved - h;
    const double down = loss();
    v[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

/// What the kernel added to a buffer that held `before` must match fd.
void expectGradient(const std::vector<float> &after,
                    const std::vector<float> &before,
                    const std::vector<double> &fd, const char *what) {
  ASSERT_EQ(after.size(), fd.size()) << what;
  const double bound = tol::kGradientRel * maxAbs(fd) + tol::kGradientAbs;
  for (size_t i = 0; i < fd.size(); ++i) {
    const double added = static_cast<double>(after[i]) - before[i];
    ASSERT_LE(std::fabs(added - fd[i]), bound)
        << what << "[" << i << "]: added " << added << " fd " << fd[i];
  }
}

double sumProduct(const std::vector<double> &a, const std::vector<double> &b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    s += a[i] * b[i];
  return s;
}

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
  expectClose(y, rmsnormRef(toDouble(x), toDouble(w), kRows, kDim, eps), "y");
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
              "y");
  // The constant (zero) row normalizes to exactly the bias.
  for (int64_t i = 0; i < kDim; ++i)
    EXPECT_EQ(y[4 * kDim + i], b[i]);

  std::fill(y.begin(), y.end(), 123.0f);
  cpu::layernormForward(x.data(), w.data(), nullptr, y.data(), kRows, kDim, eps);
  expectClose(y, layernormRef(toDouble(x), toDouble(w), nullptr, kRows, kDim, eps),
              "y without bias");
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
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> dx(x.size(), 0.5f), dw(dim, 0.5f);
    std::vector<float> lx(x.size(), 0.5f), lw(dim, 0.5f), lb(dim, 0.5f);
    cpu::rmsnormBackward(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                         rows, dim, 1e-6f);
    cpu::layernormBackward(x.data(), w.data(), dy.data(), lx.data(), lw.data(),
                           lb.data(), rows, dim, 1e-5f);
    omp_set_num_threads(before);
    return std::vector<std::vector<float>>{dx, dw, lx, lw, lb};
  };
  EXPECT_EQ(run(1), run(2));
}

} // namespace
