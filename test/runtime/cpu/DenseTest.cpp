// Tests of the dense CPU kernels (runtime/cpu/Dense.h) against plain fp64
// references and central finite differences of L = sum(dy * y).
#include "runtime/cpu/Dense.h"

#include "runtime/kernels/Qkv.h"
#include "runtime/plan/OpRegistry.h"
#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <numbers>
#include <random>
#include <utility>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cpu::check;
namespace tol = mt::tolerance;

std::vector<double> linearRef(const std::vector<double> &x,
                              const std::vector<double> &w,
                              const std::vector<double> *bias, int64_t tokens,
                              int64_t in, int64_t out) {
  std::vector<double> y(tokens * out);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i)
        s += x[t * in + i] * w[o * in + i];
      y[t * out + o] = s;
    }
  return y;
}

constexpr int64_t kTokens = 7, kIn = 13, kOut = 5;

TEST(DenseTest, LinearForwardMatchesReference) {
  std::mt19937 rng(1);
  auto x = randomVector(rng, kTokens * kIn, -2, 2);
  auto w = randomVector(rng, kOut * kIn, -1, 1);
  auto b = randomVector(rng, kOut, -1, 1);
  auto bd = toDouble(b);
  std::vector<float> y(kTokens * kOut, 123.0f); // forward overwrites
  cpu::linearForward(x.data(), w.data(), b.data(), y.data(), kTokens, kIn, kOut);
  expectClose(y, linearRef(toDouble(x), toDouble(w), &bd, kTokens, kIn, kOut),
              tol::kFp32KernelRel, tol::kFp32KernelAbs, "y with bias");
  std::fill(y.begin(), y.end(), 123.0f);
  cpu::linearForward(x.data(), w.data(), nullptr, y.data(), kTokens, kIn, kOut);
  expectClose(y, linearRef(toDouble(x), toDouble(w), nullptr, kTokens, kIn, kOut),
              tol::kFp32KernelRel, tol::kFp32KernelAbs, "y without bias");
}

TEST(DenseTest, LinearBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(2);
  auto x = randomVector(rng, kTokens * kIn, -2, 2);
  auto w = randomVector(rng, kOut * kIn, -1, 1);
  auto b = randomVector(rng, kOut, -1, 1);
  auto dy = randomVector(rng, kTokens * kOut, -1, 1);
  // Non-zero starting gradients: the kernels must add to them.
  auto dx0 = randomVector(rng, x.size(), -1, 1);
  auto dw0 = randomVector(rng, w.size(), -1, 1);
  auto db0 = randomVector(rng, b.size(), -1, 1);
  auto dx = dx0, dw = dw0, db = db0;
  cpu::linearBackwardInput(dy.data(), w.data(), dx.data(), kTokens, kIn, kOut);
  cpu::linearBackwardWeight(x.data(), dy.data(), dw.data(), kTokens, kIn, kOut);
  cpu::biasBackward(dy.data(), db.data(), kTokens, kOut);

  auto xd = toDouble(x), wd = toDouble(w), bd = toDouble(b), dyd = toDouble(dy);
  auto loss = [&] {
    return sumProduct(dyd, linearRef(xd, wd, &bd, kTokens, kIn, kOut));
  };
  expectGradient(dx, dx0, finiteDifference(xd, loss), "dx");
  expectGradient(dw, dw0, finiteDifference(wd, loss), "dw");
  expectGradient(db, db0, finiteDifference(bd, loss), "dbias");
}

TEST(DenseTest, LinearBackwardIndependentOfThreadCount) {
  // Several gemm tiles and column blocks: the threads share them.
  const int64_t tokens = 257, in = 131, out = 67;
  std::mt19937 rng(3);
  auto x = randomVector(rng, tokens * in, -1, 1);
  auto w = randomVector(rng, out * in, -1, 1);
  auto b = randomVector(rng, out, -1, 1);
  auto dy = randomVector(rng, tokens * out, -1, 1);
  auto run = [&](int threads) {
    std::vector<float> y(tokens * out), dw(out * in, 0.5f), dx(tokens * in, 0.25f),
        db(out, 1.f);
    withThreads(threads, [&] {
      cpu::linearForward(x.data(), w.data(), b.data(), y.data(), tokens, in, out);
      cpu::linearBackwardWeight(x.data(), dy.data(), dw.data(), tokens, in, out);
      cpu::linearBackwardInput(dy.data(), w.data(), dx.data(), tokens, in, out);
      cpu::biasBackward(dy.data(), db.data(), tokens, out);
    });
    return std::vector<std::vector<float>>{y, dw, dx, db};
  };
  const auto one = run(1);
  EXPECT_EQ(run(2), one);
  EXPECT_EQ(run(3), one);
}

TEST(DenseTest, EmbeddingForwardCopiesRows) {
  const int64_t vocab = 6, hidden = 33;
  const std::vector<int32_t> ids = {3, 1, 3, 0, 5, 4, 1};
  std::mt19937 rng(4);
  auto table = randomVector(rng, vocab * hidden, -3, 3);
  std::vector<float> y(ids.size() * hidden, 123.0f);
  cpu::embeddingForward(ids.data(), table.data(), y.data(), ids.size(), hidden);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t h = 0; h < hidden; ++h)
      ASSERT_EQ(y[t * hidden + h], table[ids[t] * hidden + h]) << t << "," << h;
}

TEST(DenseTest, EmbeddingBackwardScatterAddsRepeatedIds) {
  // Id 3 appears three times and 1 twice; id 2 never (its row must not move).
  const int64_t vocab = 6, hidden = 33;
  const std::vector<int32_t> ids = {3, 1, 3, 0, 3, 4, 1};
  const int64_t tokens = ids.size();
  std::mt19937 rng(5);
  auto table = randomVector(rng, vocab * hidden, -3, 3);
  auto dy = randomVector(rng, tokens * hidden, -1, 1);
  auto dtable0 = randomVector(rng, table.size(), -1, 1);
  auto dtable = dtable0;
  cpu::embeddingBackward(ids.data(), dy.data(), dtable.data(), tokens, vocab,
                         hidden);

  auto tableD = toDouble(table), dyD = toDouble(dy);
  auto loss = [&] {
    double s = 0.0;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < hidden; ++h)
        s += dyD[t * hidden + h] * tableD[ids[t] * hidden + h];
    return s;
  };
  expectGradient(dtable, dtable0, finiteDifference(tableD, loss), "dtable");
  for (int64_t h = 0; h < hidden; ++h)
    EXPECT_EQ(dtable[2 * hidden + h], dtable0[2 * hidden + h]) << h;
}

TEST(DenseTest, EmbeddingBackwardIndependentOfThreadCount) {
  const int64_t vocab = 11, hidden = 300, tokens = 1000;
  std::mt19937 rng(6);
  std::vector<int32_t> ids(tokens);
  for (auto &id : ids)
    id = static_cast<int32_t>(rng() % vocab); // many repeats per id
  auto dy = randomVector(rng, tokens * hidden, -1, 1);
  auto run = [&](int threads) {
    std::vector<float> dtable(vocab * hidden, 0.125f);
    withThreads(threads, [&] {
      cpu::embeddingBackward(ids.data(), dy.data(), dtable.data(), tokens,
                             vocab, hidden);
    });
    return dtable;
  };
  EXPECT_EQ(run(1), run(2));
}

/// Checks an element-wise forward against `ref` and its backward against
/// finite differences of sum(dy * ref(x)).
void checkUnary(const std::vector<float> &x,
                const std::function<double(double)> &ref,
                const std::function<void(const float *, float *, int64_t)> &fwd,
                const std::function<void(const float *, const float *, float *,
                                         int64_t)> &bwd,
                const char *what) {
  const int64_t n = x.size();
  std::mt19937 rng(7);
  std::vector<float> y(n, 123.0f);
  fwd(x.data(), y.data(), n);
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i)
    want[i] = ref(x[i]);
  expectClose(y, want, tol::kFp32KernelRel, tol::kFp32KernelAbs, what);

  auto dy = randomVector(rng, n, -1, 1);
  auto dx0 = randomVector(rng, n, -1, 1);
  auto dx = dx0;
  bwd(x.data(), dy.data(), dx.data(), n);
  auto xd = toDouble(x), dyd = toDouble(dy);
  auto loss = [&] {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i)
      s += dyd[i] * ref(xd[i]);
    return s;
  };
  expectGradient(dx, dx0, finiteDifference(xd, loss), what);
}

/// 33 values over [-6, 6] plus edges: zero and large magnitudes.
std::vector<float> activationInputs() {
  std::mt19937 rng(8);
  auto x = randomVector(rng, 28, -6, 6);
  for (float e : {0.0f, 30.0f, -30.0f, 12.5f, -12.5f})
    x.push_back(e);
  return x;
}

TEST(DenseTest, GeluExactForwardAndBackward) {
  auto ref = [](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); };
  checkUnary(
      activationInputs(), ref,
      [](const float *x, float *y, int64_t n) { cpu::geluForward(x, y, n, false); },
      [](const float *x, const float *dy, float *dx, int64_t n) {
        cpu::geluBackward(x, dy, dx, n, false);
      },
      "gelu erf");
}

TEST(DenseTest, GeluTanhForwardAndBackward) {
  auto ref = [](double v) {
    const double k = std::sqrt(2.0 / std::numbers::pi);
    return 0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v)));
  };
  checkUnary(
      activationInputs(), ref,
      [](const float *x, float *y, int64_t n) { cpu::geluForward(x, y, n, true); },
      [](const float *x, const float *dy, float *dx, int64_t n) {
        cpu::geluBackward(x, dy, dx, n, true);
      },
      "gelu tanh");
}

TEST(DenseTest, SwigluForwardAndBackward) {
  auto gate = activationInputs();
  const int64_t n = gate.size();
  std::mt19937 rng(9);
  auto up = randomVector(rng, n, -2, 2);
  auto silu = [](double g) { return g / (1.0 + std::exp(-g)); };
  std::vector<float> y(n, 123.0f);
  cpu::swigluForward(gate.data(), up.data(), y.data(), n);
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i)
    want[i] = silu(gate[i]) * up[i];
  expectClose(y, want, tol::kFp32KernelRel, tol::kFp32KernelAbs, "swiglu");

  auto dy = randomVector(rng, n, -1, 1);
  auto dgate0 = randomVector(rng, n, -1, 1), dup0 = randomVector(rng, n, -1, 1);
  auto dgate = dgate0, dup = dup0;
  cpu::swigluBackward(gate.data(), up.data(), dy.data(), dgate.data(),
                      dup.data(), n);
  auto gd = toDouble(gate), ud = toDouble(up), dyd = toDouble(dy);
  auto loss = [&] {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i)
      s += dyd[i] * silu(gd[i]) * ud[i];
    return s;
  };
  expectGradient(dgate, dgate0, finiteDifference(gd, loss), "dgate");
  expectGradient(dup, dup0, finiteDifference(ud, loss), "dup");
}

// The packed SwiGLU of a fused linear_fc1 computes each element as the
// plain one does (gate: the first `dim` columns of each row, up: the last):
// bit for bit, and its backward writes where the plain one adds to zero.
TEST(DenseTest, ChunkedSwigluIsSwigluOfTheRowHalves) {
  const int64_t rows = 5, dim = 37, n = rows * dim;
  std::mt19937 rng(11);
  auto x = randomVector(rng, 2 * n, -8, 8);
  x[3] = -100.0f, x[dim + 4] = 100.0f;
  auto dy = randomVector(rng, n, -1, 1);
  std::vector<float> gate(n), up(n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i) {
      gate[r * dim + i] = x[r * 2 * dim + i];
      up[r * dim + i] = x[r * 2 * dim + dim + i];
    }
  std::vector<float> want(n), got(n, 123.0f);
  cpu::swigluForward(gate.data(), up.data(), want.data(), n);
  cpu::chunkedSwigluForward(x.data(), got.data(), rows, dim);
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), n * sizeof(float)));

  std::vector<float> dgate(n, 0.0f), dup(n, 0.0f), dx(2 * n, 123.0f);
  cpu::swigluBackward(gate.data(), up.data(), dy.data(), dgate.data(), dup.data(), n);
  cpu::chunkedSwigluBackward(x.data(), dy.data(), dx.data(), rows, dim);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i) {
      EXPECT_EQ(dx[r * 2 * dim + i], dgate[r * dim + i]) << r << ", " << i;
      EXPECT_EQ(dx[r * 2 * dim + dim + i], dup[r * dim + i]) << r << ", " << i;
    }

  // The recomputing backward (chunked_swiglu_recompute_grad): the same dx,
  // and the forward's output again, bit for bit.
  std::vector<float> dx2(2 * n, 123.0f), y(n, 123.0f);
  cpu::chunkedSwigluBackward(x.data(), dy.data(), dx2.data(), rows, dim, y.data());
  EXPECT_EQ(0, std::memcmp(dx2.data(), dx.data(), dx.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(y.data(), want.data(), n * sizeof(float)));
}

// The split of a fused linear_qkv output, [rows, q + 2 kv], is the row
// slices [0, q), [q, q + kv), [q + kv, q + 2 kv), as torch.split of the last
// axis; concatQkv puts them back.
TEST(DenseTest, SplitQkvTakesTheColumnsOfEachPart) {
  const int64_t rows = 3, qDim = 6, kvDim = 2, dim = qDim + 2 * kvDim;
  std::vector<float> x(rows * dim);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(i);
  std::vector<float> q(rows * qDim), k(rows * kvDim), v(rows * kvDim);
  cpu::splitQkv(x.data(), q.data(), k.data(), v.data(), rows, qDim, kvDim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < qDim; ++i)
      EXPECT_EQ(q[r * qDim + i], float(r * dim + i));
    for (int64_t i = 0; i < kvDim; ++i) {
      EXPECT_EQ(k[r * kvDim + i], float(r * dim + qDim + i));
      EXPECT_EQ(v[r * kvDim + i], float(r * dim + qDim + kvDim + i));
    }
  }
  std::vector<float> back(x.size(), -1.0f);
  cpu::concatQkv(q.data(), k.data(), v.data(), back.data(), rows, qDim, kvDim);
  EXPECT_EQ(back, x);
}

// A split_qkv instruction whose packed width is not q_dim + 2 kv_dim would
// read past the buffers the loader checked: refused, naming the values.
TEST(DenseTest, QkvShapeRefusesAWidthThatIsNotTheParts) {
  plan::Instruction in;
  in.set_op("split_qkv");
  for (auto [name, value] : {std::pair{"rows", 4}, {"dim", 17}, {"q_dim", 8}, {"kv_dim", 4}}) {
    auto *a = in.add_attributes();
    a->set_name(name);
    a->set_i(value);
  }
  Expected<kernels::QkvShape> bad = kernels::qkvShapeOf("split_qkv", plan::Attrs(in));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.message(), "split_qkv: dim (17) is not q_dim (8) + 2 x kv_dim (4)");
  in.mutable_attributes(1)->set_i(16);
  Expected<kernels::QkvShape> good = kernels::qkvShapeOf("split_qkv", plan::Attrs(in));
  ASSERT_TRUE(good) << good.message();
  EXPECT_EQ(good->rows, 4);
  EXPECT_EQ(good->qDim, 8);
  EXPECT_EQ(good->kvDim, 4);
}

TEST(DenseTest, AddAndAccumulate) {
  const int64_t n = 33;
  std::mt19937 rng(10);
  auto a = randomVector(rng, n, -100, 100), b = randomVector(rng, n, -1, 1);
  std::vector<float> y(n, 123.0f);
  cpu::addForward(a.data(), b.data(), y.data(), n);
  std::vector<double> sum(n);
  for (int64_t i = 0; i < n; ++i)
    sum[i] = static_cast<double>(a[i]) + b[i];
  expectClose(y, sum, tol::kFp32KernelRel, tol::kFp32KernelAbs, "add");

  auto dst = b;
  cpu::accumulate(a.data(), dst.data(), n);
  expectClose(dst, sum, tol::kFp32KernelRel, tol::kFp32KernelAbs, "accumulate");
}

TEST(DenseTest, BiasAddBroadcastsOverRows) {
  const int64_t rows = 3, dim = 5;
  std::vector<float> x(rows * dim), b(dim), y(rows * dim, -1.0f);
  for (int64_t i = 0; i < rows * dim; ++i)
    x[i] = float(i);
  for (int64_t i = 0; i < dim; ++i)
    b[i] = 0.5f * float(i + 1);
  cpu::biasAddForward(x.data(), b.data(), y.data(), rows, dim);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i)
      EXPECT_EQ(y[r * dim + i], x[r * dim + i] + b[i]);
}

} // namespace
