// Tests of the tiled sgemm (runtime/cpu/Gemm.h): every transposition over
// several tiles with row strides wider than the rows, against an fp64
// reference, and the same bits for any thread count.
#include "runtime/cpu/Gemm.h"

#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cpu::check;
namespace tol = mt::tolerance;

// Three row tiles (the last partial) and two column tiles.
constexpr int64_t kM = 2 * cpu::kGemmTile + 44, kN = cpu::kGemmTile + 3, kK = 67;
// Every stored row has this many unused columns after the used ones.
constexpr int64_t kPad = 5;

struct Operands {
  bool transA, transB;
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c;
};

/// Random operands for C[kM, kN] = op(A) op(B) + C, rows padded by kPad.
Operands operands(bool transA, bool transB, std::mt19937 &rng) {
  Operands o{transA, transB, (transA ? kM : kK) + kPad, (transB ? kK : kN) + kPad,
             kN + kPad, {}, {}, {}};
  o.a = randomVector(rng, (transA ? kK : kM) * o.lda);
  o.b = randomVector(rng, (transB ? kN : kK) * o.ldb);
  o.c = randomVector(rng, kM * o.ldc);
  return o;
}

std::vector<float> run(Operands o) {
  cpu::gemm(o.transA, o.transB, kM, kN, kK, o.a.data(), o.lda, o.b.data(), o.ldb, 1.0f,
            o.c.data(), o.ldc);
  return o.c;
}

TEST(GemmTest, MatchesReferenceForEveryTransposition) {
  std::mt19937 rng(11);
  for (bool transA : {false, true})
    for (bool transB : {false, true}) {
      const Operands o = operands(transA, transB, rng);
      const std::vector<float> c = run(o);
      std::vector<float> got;
      std::vector<double> want;
      for (int64_t i = 0; i < kM; ++i)
        for (int64_t j = 0; j < kN; ++j) {
          double s = o.c[i * o.ldc + j];
          for (int64_t k = 0; k < kK; ++k)
            s += double(transA ? o.a[k * o.lda + i] : o.a[i * o.lda + k]) *
                 double(transB ? o.b[j * o.ldb + k] : o.b[k * o.ldb + j]);
          got.push_back(c[i * o.ldc + j]);
          want.push_back(s);
        }
      const std::string what = std::string("C, transA ") + (transA ? "1" : "0") +
                               ", transB " + (transB ? "1" : "0");
      expectClose(got, want, tol::kFp32KernelRel, tol::kFp32KernelAbs, what);
      for (int64_t i = 0; i < kM; ++i)
        for (int64_t j = kN; j < o.ldc; ++j)
          ASSERT_EQ(c[i * o.ldc + j], o.c[i * o.ldc + j]) << what << ": padding at " << i;
    }
}

TEST(GemmTest, IndependentOfThreadCount) {
  std::mt19937 rng(12);
  for (bool transA : {false, true})
    for (bool transB : {false, true}) {
      const Operands o = operands(transA, transB, rng);
      const std::vector<float> one = withThreads(1, [&] { return run(o); });
      for (int threads : {2, 3})
        EXPECT_EQ(withThreads(threads, [&] { return run(o); }), one)
            << threads << " threads, transA " << transA << ", transB " << transB;
    }
}

} // namespace
