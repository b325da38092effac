// Tests of the CPU rotary embedding and causal grouped-query attention
// kernels against plain fp64 references and central finite differences.
#include "runtime/cpu/Attention.h"
#include "test/Tolerances.h"
#include "test/runtime/cpu/AttentionReference.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace mt::cpu {

// Names a shape in gtest's messages (found by argument-dependent lookup).
static void PrintTo(const AttentionShape &s, std::ostream *os) {
  *os << "batch " << s.batch << " seq " << s.seq << " heads " << s.heads
      << " kvHeads " << s.kvHeads << " headDim " << s.headDim;
}

namespace {

using namespace check;
namespace tol = mt::tolerance;
using Doubles = std::vector<double>;
using Floats = std::vector<float>;

/// n values in [-range, range) from a generator of their own seed.
Floats randomFloats(size_t n, uint32_t seed, float range = 1.0f) {
  std::mt19937 rng(seed);
  return randomVector(rng, n, -range, range);
}

//===----------------------------------------------------------------------===//
// Rotary
//===----------------------------------------------------------------------===//

RotaryParams llama3Params() {
  RotaryParams p;
  p.theta = 500000;
  p.scalingFactor = 32;
  p.lowFreqFactor = 1;
  p.highFreqFactor = 4;
  p.originalMaxPosition = 8192;
  return p;
}

/// The inverse frequencies from their definition, in fp64.
Doubles refInvFreq(const RotaryParams &p, int64_t dim) {
  Doubles inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    double f = std::pow(p.theta, -2.0 * i / dim);
    if (p.scalingFactor != 0) {
      const double wavelen = 2 * std::numbers::pi / f;
      const double orig = p.originalMaxPosition;
      if (wavelen > orig / p.lowFreqFactor) {
        f /= p.scalingFactor;
      } else if (wavelen >= orig / p.highFreqFactor) {
        const double s = (orig / wavelen - p.lowFreqFactor) /
                         (p.highFreqFactor - p.lowFreqFactor);
        f = (1 - s) * f / p.scalingFactor + s * f;
      }
    }
    inv[i] = f;
  }
  return inv;
}

struct RotaryDims {
  int64_t batch, seq, heads, dim;
  size_t size() const { return batch * seq * heads * dim; }
};

/// Rotate-half rotary embedding with angle s * inv[i], in fp64.
Doubles refRotary(const Doubles &x, const RotaryDims &d, const Doubles &inv) {
  Doubles y(x.size());
  const int64_t half = d.dim / 2;
  for (int64_t b = 0; b < d.batch; ++b)
    for (int64_t s = 0; s < d.seq; ++s)
      for (int64_t h = 0; h < d.heads; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const size_t at = ((b * d.seq + s) * d.heads + h) * d.dim + i;
          const double a = s * inv[i];
          y[at] = x[at] * std::cos(a) - x[at + half] * std::sin(a);
          y[at + half] = x[at + half] * std::cos(a) + x[at] * std::sin(a);
        }
  return y;
}

Doubles kernelInvFreq(const RotaryParams &p, int64_t dim) {
  Doubles inv(dim / 2);
  kernels::rotaryInverseFrequencies(p, dim, inv.data());
  return inv;
}

void expectEachRelClose(const Doubles &actual, const Doubles &expected,
                        double rel, const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i)
    EXPECT_LE(std::abs(actual[i] - expected[i]), rel * std::abs(expected[i]))
        << what << " i=" << i << ": " << actual[i] << " vs " << expected[i];
}

TEST(RotaryInverseFrequencies, DefaultMatchesHandValues) {
  RotaryParams p; // theta 10000: 10000^(-2i/8) = 10^-i
  expectEachRelClose(kernelInvFreq(p, 8), {1, 0.1, 0.01, 0.001},
                     tol::kFp32ChainRel, "theta 1e4, dim 8");
}

TEST(RotaryInverseFrequencies, Llama3MatchesPinnedValues) {
  // theta 500000, dim 64: f_i = 500000^(-i/32), wavelength 2 pi / f_i.
  // i <= 14: wavelength < 8192/4, kept; i >= 18: > 8192/1, divided by 32;
  // 15..17 blend: s = (8192 / wavelength - 1) / 3, f (1 - s) / 32 + f s.
  // i = 16: f = 1/sqrt(500000), wavelength 4442.8829..., s = 0.2812826...
  const std::vector<std::pair<int, double>> pinned = {
      {0, 1.0},
      {14, 0.003211445994752591},
      {15, 0.001290547928209264},
      {16, 0.00042955679655936815},
      {17, 9.70828780262767e-05},
      {18, 1.9461638184831125e-05},
      {31, 9.41830672543491e-08}};
  const Doubles ref = refInvFreq(llama3Params(), 64);
  const Doubles kernel = kernelInvFreq(llama3Params(), 64);
  for (auto [i, value] : pinned) {
    EXPECT_NEAR(ref[i], value, 1e-13 * value) << "reference i=" << i;
    EXPECT_LE(std::abs(kernel[i] - value), tol::kFp32ChainRel * value)
        << "kernel i=" << i << ": " << kernel[i];
  }
  const double s16 =
      (8192 / (2 * std::numbers::pi * std::sqrt(500000.0)) - 1) / 3;
  EXPECT_NEAR(ref[16], ((1 - s16) / 32 + s16) / std::sqrt(500000.0), 1e-18);
}

// HF holds inv_freq as an fp32 tensor: every value must be an fp32 number,
// and close to the fp64 formula (also for a head_dim whose 2i/D is inexact).
TEST(RotaryInverseFrequencies, AreFp32ValuesOfTheFormula) {
  RotaryParams big;
  big.theta = 1e6;
  const std::vector<std::pair<RotaryParams, int64_t>> cases = {
      {RotaryParams{}, 16}, {RotaryParams{}, 96}, {big, 80},
      {big, 128},           {llama3Params(), 64}, {llama3Params(), 128}};
  for (const auto &[p, dim] : cases) {
    const Doubles kernel = kernelInvFreq(p, dim);
    const std::string what =
        "theta " + std::to_string(p.theta) + " dim " + std::to_string(dim);
    expectEachRelClose(kernel, refInvFreq(p, dim), tol::kFp32ChainRel, what);
    for (double v : kernel)
      EXPECT_EQ(v, static_cast<double>(static_cast<float>(v))) << what;
  }
}

TEST(Rotary, ForwardMatchesReference) {
  const std::vector<std::pair<RotaryParams, RotaryDims>> cases = {
      {RotaryParams{}, {2, 13, 3, 16}}, {llama3Params(), {2, 7, 2, 64}}};
  for (const auto &[p, d] : cases) {
    const Floats x = randomFloats(d.size(), 1);
    Floats y(d.size());
    rotaryForward(x.data(), y.data(), d.batch, d.seq, d.heads, d.dim, p);
    expectClose(y, refRotary(toDouble(x), d, refInvFreq(p, d.dim)),
                tol::kFp32KernelRel, tol::kFp32KernelAbs,
                "dim " + std::to_string(d.dim));
  }
}

// At long positions HF's fp32 product position * inv_freq loses ~1e-4 rad;
// the kernel reproduces it (and so differs from exact fp64 angles).
TEST(Rotary, LongPositionsUseFp32Angles) {
  const RotaryParams p = llama3Params();
  const RotaryDims d{1, 8192, 1, 64};
  const Floats x = randomFloats(d.size(), 2);
  Floats y(d.size());
  rotaryForward(x.data(), y.data(), d.batch, d.seq, d.heads, d.dim, p);
  const Doubles inv = kernelInvFreq(p, d.dim), exactInv = refInvFreq(p, d.dim);
  const int64_t s = d.seq - 1;
  Floats yLast(y.end() - d.dim, y.end());
  Doubles hf(d.dim), exact(d.dim);
  for (int64_t i = 0; i < d.dim / 2; ++i) {
    const double xa = x[s * d.dim + i], xb = x[s * d.dim + i + d.dim / 2];
    // The fp32 product of HF's fp32 position and fp32 inv_freq.
    const double a32 = static_cast<float>(s) * static_cast<float>(inv[i]);
    const double a64 = s * exactInv[i];
    hf[i] = xa * std::cos(a32) - xb * std::sin(a32);
    hf[i + d.dim / 2] = xb * std::cos(a32) + xa * std::sin(a32);
    exact[i] = xa * std::cos(a64) - xb * std::sin(a64);
    exact[i + d.dim / 2] = xb * std::cos(a64) + xa * std::sin(a64);
  }
  expectClose(yLast, hf, tol::kFp32KernelRel, tol::kFp32KernelAbs, "fp32");
  double worst = 0;
  for (int64_t i = 0; i < d.dim; ++i)
    worst = std::max(worst, std::abs(yLast[i] - exact[i]));
  EXPECT_GT(worst,
            10 * (tol::kFp32KernelRel * maxAbs(exact) + tol::kFp32KernelAbs));
}

TEST(Rotary, BackwardMatchesFiniteDifferences) {
  const std::vector<std::pair<RotaryParams, RotaryDims>> cases = {
      {RotaryParams{}, {2, 7, 3, 16}}, {llama3Params(), {2, 5, 2, 64}}};
  for (const auto &[p, d] : cases) {
    const Floats x = randomFloats(d.size(), 3);
    const Floats dy = randomFloats(d.size(), 4);
    Floats dx(d.size(), 0.0f);
    rotaryBackward(dy.data(), dx.data(), d.batch, d.seq, d.heads, d.dim, p);
    Doubles xd = toDouble(x);
    const Doubles dyd = toDouble(dy), inv = refInvFreq(p, d.dim);
    const Doubles fd = finiteDifference(
        xd, [&] { return sumProduct(dyd, refRotary(xd, d, inv)); });
    expectClose(dx, fd, tol::kGradientRel, tol::kGradientAbs,
                "dx dim " + std::to_string(d.dim));
  }
}

TEST(Rotary, BackwardAccumulates) {
  const RotaryParams p = llama3Params();
  const RotaryDims d{2, 7, 3, 64};
  const Floats dy = randomFloats(d.size(), 5);
  const Floats initial = randomFloats(d.size(), 6);
  Floats fresh(d.size(), 0.0f), dx = initial;
  rotaryBackward(dy.data(), fresh.data(), d.batch, d.seq, d.heads, d.dim, p);
  rotaryBackward(dy.data(), dx.data(), d.batch, d.seq, d.heads, d.dim, p);
  expectAccumulatedExactly(dx, initial, fresh, "dx");
}

TEST(Rotary, ThreadCountDoesNotChangeResults) {
  const RotaryParams p = llama3Params();
  const RotaryDims d{2, 13, 3, 64};
  const Floats x = randomFloats(d.size(), 7);
  Floats y[2], dx[2];
  for (int t = 0; t < 2; ++t)
    withThreads(t + 1, [&] {
      y[t].assign(d.size(), 0.0f);
      dx[t].assign(d.size(), 0.0f);
      rotaryForward(x.data(), y[t].data(), d.batch, d.seq, d.heads, d.dim, p);
      rotaryBackward(x.data(), dx[t].data(), d.batch, d.seq, d.heads, d.dim, p);
    });
  EXPECT_EQ(y[0], y[1]);
  EXPECT_EQ(dx[0], dx[1]);
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

AttentionShape attentionShape(int64_t batch, int64_t seq, int64_t heads,
                              int64_t kvHeads, int64_t headDim) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
  return {batch, seq, heads, kvHeads, headDim, scale};
}

size_t qSize(const AttentionShape &s) {
  return s.batch * s.seq * s.heads * s.headDim;
}
size_t kvSize(const AttentionShape &s) {
  return s.batch * s.seq * s.kvHeads * s.headDim;
}

struct AttentionData {
  AttentionShape shape;
  Floats q, k, v, dout, out, lse;

  AttentionData(const AttentionShape &s, uint32_t seed, float range = 1.0f)
      : shape(s), q(randomFloats(qSize(s), seed, range)),
        k(randomFloats(kvSize(s), seed + 1, range)),
        v(randomFloats(kvSize(s), seed + 2)),
        dout(randomFloats(qSize(s), seed + 3)), out(qSize(s)),
        lse(s.batch * s.heads * s.seq) {}

  void forward() {
    attentionForward(q.data(), k.data(), v.data(), out.data(), lse.data(),
                     shape);
  }
  /// Adds the gradients into dq, dk, dv.
  void backward(Floats &dq, Floats &dk, Floats &dv) const {
    attentionBackward(q.data(), k.data(), v.data(), out.data(), lse.data(),
                      dout.data(), dq.data(), dk.data(), dv.data(), shape);
  }
};

class AttentionTest : public testing::TestWithParam<AttentionShape> {};

TEST_P(AttentionTest, ForwardMatchesReference) {
  AttentionData a(GetParam(), 11);
  a.forward();
  Doubles out, lse;
  refAttention(toDouble(a.q), toDouble(a.k), toDouble(a.v), a.shape, out, lse);
  expectClose(a.out, out, tol::kFp32KernelRel, tol::kFp32KernelAbs, "out");
  expectClose(a.lse, lse, tol::kFp32KernelRel, tol::kFp32KernelAbs, "lse");
}

TEST_P(AttentionTest, BackwardMatchesFiniteDifferences) {
  AttentionData a(GetParam(), 21, 1.5f);
  a.forward();
  Floats dq(a.q.size(), 0.0f), dk(a.k.size(), 0.0f), dv(a.v.size(), 0.0f);
  a.backward(dq, dk, dv);
  Doubles q = toDouble(a.q), k = toDouble(a.k), v = toDouble(a.v);
  const Doubles dout = toDouble(a.dout);
  const auto loss = [&] {
    Doubles out, lse;
    refAttention(q, k, v, a.shape, out, lse);
    return sumProduct(dout, out);
  };
  expectClose(dq, finiteDifference(q, loss), tol::kGradientRel,
              tol::kGradientAbs, "dq");
  expectClose(dk, finiteDifference(k, loss), tol::kGradientRel,
              tol::kGradientAbs, "dk");
  expectClose(dv, finiteDifference(v, loss), tol::kGradientRel,
              tol::kGradientAbs, "dv");
}

// Changing k/v at positions after `last` leaves out and lse up to `last`
// bit-identical, and does change position last + 1.
TEST_P(AttentionTest, IsCausal) {
  const AttentionShape s = GetParam();
  for (int64_t last : {int64_t(0), s.seq / 2, s.seq - 2}) {
    AttentionData a(s, 31), b(s, 31);
    const Floats noise = randomFloats(kvSize(s), 37);
    for (size_t at = 0; at < b.k.size(); ++at) {
      const int64_t pos = (at / (s.kvHeads * s.headDim)) % s.seq;
      if (pos > last)
        b.k[at] = noise[at], b.v[at] = -noise[at];
    }
    a.forward();
    b.forward();
    for (int64_t bt = 0; bt < s.batch; ++bt)
      for (int64_t i = 0; i < s.seq; ++i) {
        const size_t row = (bt * s.seq + i) * s.heads * s.headDim;
        const Floats ra(a.out.begin() + row,
                        a.out.begin() + row + s.heads * s.headDim);
        const Floats rb(b.out.begin() + row,
                        b.out.begin() + row + s.heads * s.headDim);
        if (i <= last) {
          EXPECT_EQ(ra, rb) << "batch " << bt << " pos " << i;
        } else if (i == last + 1) {
          EXPECT_NE(ra, rb) << "batch " << bt << " pos " << i;
        }
        for (int64_t h = 0; h < s.heads && i <= last; ++h) {
          const size_t at = (bt * s.heads + h) * s.seq + i;
          EXPECT_EQ(a.lse[at], b.lse[at]) << "lse pos " << i;
        }
      }
  }
}

TEST_P(AttentionTest, BackwardAccumulates) {
  AttentionData a(GetParam(), 41);
  a.forward();
  Floats fq(a.q.size(), 0.0f), fk(a.k.size(), 0.0f), fv(a.v.size(), 0.0f);
  a.backward(fq, fk, fv);
  const Floats iq = randomFloats(a.q.size(), 42);
  const Floats ik = randomFloats(a.k.size(), 43);
  const Floats iv = randomFloats(a.v.size(), 44);
  Floats dq = iq, dk = ik, dv = iv;
  a.backward(dq, dk, dv);
  expectAccumulatedExactly(dq, iq, fq, "dq");
  expectAccumulatedExactly(dk, ik, fk, "dk");
  expectAccumulatedExactly(dv, iv, fv, "dv");
}

TEST_P(AttentionTest, ThreadCountDoesNotChangeResults) {
  AttentionData runs[2] = {AttentionData(GetParam(), 51),
                           AttentionData(GetParam(), 51)};
  Floats dq[2], dk[2], dv[2];
  for (int t = 0; t < 2; ++t)
    withThreads(t + 1, [&] {
      runs[t].forward();
      dq[t].assign(runs[t].q.size(), 0.0f);
      dk[t].assign(runs[t].k.size(), 0.0f);
      dv[t].assign(runs[t].v.size(), 0.0f);
      runs[t].backward(dq[t], dk[t], dv[t]);
    });
  EXPECT_EQ(runs[0].out, runs[1].out);
  EXPECT_EQ(runs[0].lse, runs[1].lse);
  EXPECT_EQ(dq[0], dq[1]);
  EXPECT_EQ(dk[0], dk[1]);
  EXPECT_EQ(dv[0], dv[1]);
}

std::string shapeName(const testing::TestParamInfo<AttentionShape> &info) {
  const AttentionShape &s = info.param;
  return "b" + std::to_string(s.batch) + "s" + std::to_string(s.seq) + "h" +
         std::to_string(s.heads) + "kv" + std::to_string(s.kvHeads) + "d" +
         std::to_string(s.headDim);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         testing::Values(attentionShape(2, 7, 4, 2, 16),
                                         attentionShape(2, 13, 4, 2, 8),
                                         attentionShape(2, 13, 4, 4, 16),
                                         attentionShape(2, 7, 4, 4, 8),
                                         attentionShape(2, 13, 6, 1, 8),
                                         attentionShape(2, 7, 6, 1, 16)),
                         shapeName);

// Scores in the thousands overflow exp() unless the maximum is subtracted.
TEST(Attention, LargeScoresStayFinite) {
  AttentionData a(attentionShape(2, 13, 4, 2, 16), 61, 40.0f);
  a.forward();
  Doubles out, lse;
  refAttention(toDouble(a.q), toDouble(a.k), toDouble(a.v), a.shape, out, lse);
  EXPECT_GT(maxAbs(lse), 1000.0);
  expectClose(a.out, out, tol::kFp32KernelRel, tol::kFp32KernelAbs, "out");
  expectClose(a.lse, lse, tol::kFp32KernelRel, tol::kFp32KernelAbs, "lse");
  Floats dq(a.q.size(), 0.0f), dk(a.k.size(), 0.0f), dv(a.v.size(), 0.0f);
  a.backward(dq, dk, dv);
  for (const Floats *g : {&dq, &dk, &dv})
    for (float x : *g)
      ASSERT_TRUE(std::isfinite(x));
}

} // namespace
} // namespace mt::cpu
