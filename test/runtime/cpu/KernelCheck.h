// Checks shared by the CPU kernel tests (test/runtime/cpu): seeded random
// inputs, central finite differences of an fp64 reference, worst-error
// comparison within the bounds of test/Tolerances.h, "backward adds into its
// buffers" checks, and running kernels under a fixed thread count.
#ifndef MT_TEST_RUNTIME_CPU_KERNELCHECK_H
#define MT_TEST_RUNTIME_CPU_KERNELCHECK_H

#include "test/Tolerances.h"

#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace mt::cpu::check {

//===----------------------------------------------------------------------===//
// Inputs
//===----------------------------------------------------------------------===//

/// n values drawn uniformly from [lo, hi): the same seed, the same inputs.
inline std::vector<float> randomVector(std::mt19937 &rng, size_t n,
                                       float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

/// The fp32 inputs, exactly, for the fp64 reference.
inline std::vector<double> toDouble(const std::vector<float> &v) {
  return {v.begin(), v.end()};
}

//===----------------------------------------------------------------------===//
// fp64 reference helpers
//===----------------------------------------------------------------------===//

inline double maxAbs(const std::vector<double> &v) {
  double m = 0.0;
  for (double x : v)
    m = std::max(m, std::fabs(x));
  return m;
}

/// sum(a * b): the loss L = sum(dy * y) whose gradient a backward computes.
inline double sumProduct(const std::vector<double> &a,
                         const std::vector<double> &b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    s += a[i] * b[i];
  return s;
}

/// Central differences (step kFiniteDifferenceStep) of loss() with respect
/// to each element of v, which loss() reads by reference.
inline std::vector<double>
finiteDifference(std::vector<double> &v, const std::function<double()> &loss) {
  const double h = tolerance::kFiniteDifferenceStep;
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

//===----------------------------------------------------------------------===//
// Comparisons
//===----------------------------------------------------------------------===//

namespace detail {

/// Worst |got - want| must stay within rel * max|want| + abs; a NaN anywhere
/// is the worst element and fails.
template <typename T>
void expectWithin(const std::vector<T> &got, const std::vector<double> &want,
                  double rel, double abs, const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double bound = rel * maxAbs(want) + abs;
  size_t worst = 0;
  double worstErr = 0.0;
  for (size_t i = 0; i < got.size() && !std::isnan(worstErr); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= worstErr)) {
      worst = i;
      worstErr = err;
    }
  }
  EXPECT_LE(worstErr, bound) << what << ": worst at " << worst << " got "
                             << got[worst] << " want " << want[worst];
}

} // namespace detail

/// An fp32 result against its fp64 reference: the worst |got - want| must
/// stay within rel * max|want| + abs (bounds from test/Tolerances.h).
inline void expectClose(const std::vector<float> &got,
                        const std::vector<double> &want, double rel,
                        double abs, const std::string &what) {
  detail::expectWithin(got, want, rel, abs, what);
}

/// A backward kernel ran on a buffer that held `before`: what it added must
/// match the finite-difference gradient fd (this also checks that it adds).
inline void expectGradient(const std::vector<float> &after,
                           const std::vector<float> &before,
                           const std::vector<double> &fd,
                           const std::string &what) {
  ASSERT_EQ(after.size(), before.size()) << what;
  std::vector<double> added(after.size());
  for (size_t i = 0; i < after.size(); ++i)
    added[i] = static_cast<double>(after[i]) - before[i];
  detail::expectWithin(added, fd, tolerance::kGradientRel,
                       tolerance::kGradientAbs, what);
}

/// A backward kernel ran once on zeroed buffers (giving `fresh`) and once on
/// buffers that held `start` (giving `acc`): acc must be start + fresh,
/// summed in fp64, within rel * max|start + fresh| + abs.
inline void expectAccumulated(const std::vector<float> &acc,
                              const std::vector<float> &start,
                              const std::vector<float> &fresh, double rel,
                              double abs, const std::string &what) {
  ASSERT_EQ(start.size(), fresh.size()) << what;
  std::vector<double> want(start.size());
  for (size_t i = 0; i < start.size(); ++i)
    want[i] = static_cast<double>(start[i]) + fresh[i];
  expectClose(acc, want, rel, abs, what);
}

/// As expectAccumulated, for kernels that add with one fp32 addition per
/// element: acc must be the fp32 start + fresh, bit for bit.
inline void expectAccumulatedExactly(const std::vector<float> &acc,
                                     const std::vector<float> &start,
                                     const std::vector<float> &fresh,
                                     const std::string &what) {
  ASSERT_EQ(acc.size(), start.size()) << what;
  ASSERT_EQ(acc.size(), fresh.size()) << what;
  for (size_t i = 0; i < acc.size(); ++i)
    ASSERT_EQ(acc[i], start[i] + fresh[i]) << what << " at " << i;
}

//===----------------------------------------------------------------------===//
// Thread counts
//===----------------------------------------------------------------------===//

/// Limits both OpenMP and OpenBLAS to `threads` while alive (a kernel may
/// split its work through either), then restores both. OpenBLAS is restored
/// first: some builds of it also set the OpenMP count.
class ThreadCount {
public:
  explicit ThreadCount(int threads)
      : ompBefore_(omp_get_max_threads()),
        blasBefore_(openblas_get_num_threads()) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
  ~ThreadCount() {
    openblas_set_num_threads(blasBefore_);
    omp_set_num_threads(ompBefore_);
  }
  ThreadCount(const ThreadCount &) = delete;
  ThreadCount &operator=(const ThreadCount &) = delete;

private:
  int ompBefore_, blasBefore_;
};

/// f() under ThreadCount(threads); returns what f returns.
template <typename F> decltype(auto) withThreads(int threads, F &&f) {
  ThreadCount limit(threads);
  return f();
}

} // namespace mt::cpu::check

#endif // MT_TEST_RUNTIME_CPU_KERNELCHECK_H
