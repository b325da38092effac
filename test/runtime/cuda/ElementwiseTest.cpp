// The CUDA element-wise kernels (runtime/cuda/Elementwise.h) against the
// CPU references: SwiGLU (cpu::swiglu*, cpu::chunkedSwiglu* of a packed
// gate | up), the linear_qkv split and its inverse (cpu::splitQkv,
// cpu::concatQkv, bit-exact), rotary (cpu::rotary*, bit-exact through the
// shared cos/sin table; also out of and into the packed qkv rows), embedding
// (cpu::embedding*, bit-exact; its scaled add of the dp ranks' gathered
// rows), casts (every bf16 pattern; fp32 rounding edge cases) and the fill.
#include "runtime/cuda/Elementwise.h"

#include "runtime/cpu/Attention.h"
#include "runtime/cpu/Dense.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

class SwigluTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(SwigluTest, MatchesCpu) {
  const int64_t n = GetParam();
  const std::string shape = shapeText({n});
  std::mt19937 rng{uint32_t(n)};
  auto gate = randomBf16(rng, n, -8, 8);
  // Edge values: exp(-gate) overflowing, zero, large positive.
  for (float e : {-100.0f, -30.0f, 0.0f, 30.0f, 100.0f})
    gate[rng() % n] = e;
  const auto up = randomBf16(rng, n, -2, 2);
  const auto dy = randomBf16(rng, n, -1, 1);
  DeviceBuffer<bf16> dGate(n), dUp(n), dY(n), dDy(n), dDgate(n), dDup(n);
  uploadBf16(dGate, gate);
  uploadBf16(dUp, up);
  uploadBf16(dDy, dy);

  MT_ASSERT_OK(cuda::swigluForward(dGate.get(), dUp.get(), dY.get(), n, nullptr));
  std::vector<float> want(n);
  cpu::swigluForward(gate.data(), up.data(), want.data(), n);
  expectClose("swiglu_fwd", shape, downloadBf16(dY), want, tol::kBf16Rel);

  MT_ASSERT_OK(cuda::swigluBackward(dGate.get(), dUp.get(), dDy.get(),
                                    dDgate.get(), dDup.get(), n, nullptr));
  std::vector<float> wantDgate(n), wantDup(n);
  cpu::swigluBackward(gate.data(), up.data(), dy.data(), wantDgate.data(),
                      wantDup.data(), n);
  expectClose("swiglu_bwd.dgate", shape, downloadBf16(dDgate), wantDgate,
              tol::kBf16Rel);
  expectClose("swiglu_bwd.dup", shape, downloadBf16(dDup), wantDup, tol::kBf16Rel);
}

INSTANTIATE_TEST_SUITE_P(Sizes, SwigluTest,
                         ::testing::Values(int64_t{1000}, int64_t{4104},
                                           int64_t{129 * 8192}));

// The packed [rows, 2 dim] SwiGLU of a fused linear_fc1: odd widths (the
// one-element kernel), widths of whole 16-byte groups, one row.
class ChunkedSwigluTest : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(ChunkedSwigluTest, MatchesCpu) {
  const auto [rows, dim] = GetParam();
  const int64_t n = rows * dim;
  const std::string shape = shapeText({rows, 2 * dim});
  std::mt19937 rng{uint32_t(n)};
  auto x = randomBf16(rng, 2 * n, -8, 8);
  for (float e : {-100.0f, 0.0f, 100.0f})
    x[rng() % (2 * n)] = e;
  const auto dy = randomBf16(rng, n, -1, 1);
  DeviceBuffer<bf16> dX(2 * n), dY(n), dDy(n), dDx(2 * n);
  uploadBf16(dX, x);
  uploadBf16(dDy, dy);

  MT_ASSERT_OK(cuda::chunkedSwigluForward(dX.get(), dY.get(), rows, dim, nullptr));
  std::vector<float> want(n);
  cpu::chunkedSwigluForward(x.data(), want.data(), rows, dim);
  expectClose("chunked_swiglu_fwd", shape, downloadBf16(dY), want, tol::kBf16Rel);

  MT_ASSERT_OK(cuda::chunkedSwigluBackward(dX.get(), dDy.get(), dDx.get(), rows, dim, nullptr));
  std::vector<float> wantDx(2 * n);
  cpu::chunkedSwigluBackward(x.data(), dy.data(), wantDx.data(), rows, dim);
  expectClose("chunked_swiglu_bwd", shape, downloadBf16(dDx), wantDx, tol::kBf16Rel);

  // chunked_swiglu_recompute_grad: the same dx and the forward's y, bit for
  // bit (the down projection's weight gradient reads it in y's place).
  DeviceBuffer<bf16> dDx2(2 * n), dY2(n);
  MT_ASSERT_OK(cuda::chunkedSwigluBackward(dX.get(), dDy.get(), dDx2.get(), rows, dim, nullptr,
                                           dY2.get()));
  EXPECT_EQ(downloadBf16(dDx2), downloadBf16(dDx)) << "dx " << shape;
  EXPECT_EQ(downloadBf16(dY2), downloadBf16(dY)) << "y " << shape;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ChunkedSwigluTest,
                         ::testing::Values(std::pair<int64_t, int64_t>{7, 13},
                                           std::pair<int64_t, int64_t>{33, 64},
                                           std::pair<int64_t, int64_t>{1, 8192},
                                           std::pair<int64_t, int64_t>{4096, 2816}));

struct QkvCase {
  int64_t rows, qDim, kvDim;
};

void PrintTo(const QkvCase &c, std::ostream *os) {
  *os << c.rows << "x(" << c.qDim << "+2x" << c.kvDim << ")";
}

// The split of a packed [rows, q + 2 kv] linear_qkv output and the packing
// of its gradients: widths that are not whole 16-byte groups (the
// one-element kernel), whole groups, one row, Llama 3.2 1B's widths.
class QkvTest : public ::testing::TestWithParam<QkvCase> {};

TEST_P(QkvTest, BitExactWithCpu) {
  const auto [rows, qDim, kvDim] = GetParam();
  const int64_t dim = qDim + 2 * kvDim, n = rows * dim;
  std::mt19937 rng{uint32_t(n)};
  const auto x = randomBf16(rng, n, -8, 8);
  DeviceBuffer<bf16> dX(n), dQ(rows * qDim), dK(rows * kvDim), dV(rows * kvDim), dBack(n);
  uploadBf16(dX, x);
  MT_ASSERT_OK(cuda::splitQkv(dX.get(), dQ.get(), dK.get(), dV.get(), rows, qDim, kvDim,
                              nullptr));
  std::vector<float> q(rows * qDim), k(rows * kvDim), v(rows * kvDim);
  cpu::splitQkv(x.data(), q.data(), k.data(), v.data(), rows, qDim, kvDim);
  EXPECT_EQ(downloadBf16(dQ), q);
  EXPECT_EQ(downloadBf16(dK), k);
  EXPECT_EQ(downloadBf16(dV), v);

  // Packing the parts back gives x, as the CPU's does.
  MT_ASSERT_OK(cuda::concatQkv(dQ.get(), dK.get(), dV.get(), dBack.get(), rows, qDim, kvDim,
                               nullptr));
  std::vector<float> back(n);
  cpu::concatQkv(q.data(), k.data(), v.data(), back.data(), rows, qDim, kvDim);
  EXPECT_EQ(back, x);
  EXPECT_EQ(downloadBf16(dBack), x);
}

INSTANTIATE_TEST_SUITE_P(Shapes, QkvTest,
                         ::testing::Values(QkvCase{7, 13, 5}, QkvCase{33, 64, 16},
                                           QkvCase{1, 128, 64}, QkvCase{5, 24, 8},
                                           QkvCase{4096, 2048, 512}));

struct RotaryCase {
  int64_t batch, seq, heads, headDim;
  bool llama3;
};

void PrintTo(const RotaryCase &c, std::ostream *os) {
  *os << shapeText({c.batch, c.seq, c.heads, c.headDim}) << (c.llama3 ? "+llama3" : "");
}

class RotaryTest : public ::testing::TestWithParam<RotaryCase> {};

TEST_P(RotaryTest, BitExactWithCpu) {
  const auto [batch, seq, heads, headDim, llama3] = GetParam();
  const std::string shape =
      shapeText({batch, seq, heads, headDim}) + (llama3 ? "+llama3" : "");
  kernels::RotaryParams params;
  if (llama3)
    params = {500000.0, 32.0, 1.0, 4.0, 8192};
  const int64_t n = batch * seq * heads * headDim;
  std::mt19937 rng(uint32_t(n + llama3));
  const auto x = randomBf16(rng, n, -3, 3);
  DeviceBuffer<bf16> dX(n), dY(n), dDx(n);
  uploadBf16(dX, x);
  auto table = cuda::RotaryTable::create(params, seq + 5, headDim);
  ASSERT_TRUE(table) << table.message();

  // The CPU's fp32 result rounded once to bf16 is what the GPU must write.
  auto rounded = [](std::vector<float> v) {
    for (float &f : v)
      f = roundBf16(f);
    return v;
  };
  MT_ASSERT_OK(cuda::rotaryForward(dX.get(), dY.get(), batch, seq, heads, *table,
                                   nullptr));
  std::vector<float> want(n);
  cpu::rotaryForward(x.data(), want.data(), batch, seq, heads, headDim, params);
  expectClose("rotary_fwd", shape, downloadBf16(dY), rounded(want), tol::kBitExact);

  MT_ASSERT_OK(cuda::rotaryBackward(dX.get(), dDx.get(), batch, seq, heads,
                                    *table, nullptr));
  std::vector<float> wantDx(n, 0.0f);
  cpu::rotaryBackward(x.data(), wantDx.data(), batch, seq, heads, headDim, params);
  expectClose("rotary_bwd", shape, downloadBf16(dDx), rounded(wantDx),
              tol::kBitExact);

  // In place (y aliases x), as the executor rotates q and k.
  MT_ASSERT_OK(cuda::rotaryForward(dX.get(), dX.get(), batch, seq, heads, *table,
                                   nullptr));
  EXPECT_EQ(downloadBf16(dX), downloadBf16(dY));
  // A sequence longer than the table is an error, not a read past it.
  EXPECT_FALSE(cuda::rotaryForward(dX.get(), dY.get(), batch, seq + 6, heads,
                                   *table, nullptr)
                   .isOk());
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RotaryTest,
    ::testing::Values(RotaryCase{2, 7, 3, 64, false}, RotaryCase{1, 129, 4, 6, false},
                      RotaryCase{2, 9, 3, 12, true}, // half 6: two pairs per thread
                      RotaryCase{2, 129, 8, 64, true}, RotaryCase{1, 2048, 2, 128, true}),
    [](const auto &info) {
      const RotaryCase &c = info.param;
      return joined("b", c.batch, "_s", c.seq, "_h", c.heads, "_d", c.headDim,
                    c.llama3 ? "_llama3" : "");
    });

struct RotaryQkvCase {
  int64_t batch, seq, heads, kvHeads, headDim;
  bool positions;
};

void PrintTo(const RotaryQkvCase &c, std::ostream *os) {
  *os << shapeText({c.batch, c.seq, c.heads, c.kvHeads, c.headDim})
      << (c.positions ? "+positions" : "");
}

// split_qkv_rotary and rotary_concat_qkv as the CUDA lowering runs them
// (cuda::rotaryQkv): q and k rotated straight out of (into) their columns
// of the packed rows and v copied, against the CPU's split then rotary
// (rotary_grad into zeros, then the packing). head_dim 16, 32, 64 and 128
// (the one-launch kernel, 1 to 8 chunks per half) and 6 (the three-launch
// fallback, one pair per thread), GQA ratios 1, 2, 4 and 8 with odd head
// counts, llama3 scaling, packed-document positions.
class RotaryQkvTest : public ::testing::TestWithParam<RotaryQkvCase> {};

TEST_P(RotaryQkvTest, BitExactWithCpuSplitThenRotary) {
  const auto [batch, seq, heads, kvHeads, headDim, withPositions] = GetParam();
  const kernels::RotaryParams params{500000.0, 32.0, 1.0, 4.0, 8192};
  const int64_t rows = batch * seq, qDim = heads * headDim, kvDim = kvHeads * headDim;
  const int64_t dim = qDim + 2 * kvDim;
  std::mt19937 rng(uint32_t(rows * dim + withPositions));
  const auto x = randomBf16(rng, rows * dim, -3, 3);
  std::vector<int32_t> positions(static_cast<size_t>(rows));
  for (int64_t t = 0; t < rows; ++t)
    positions[size_t(t)] = int32_t(t % seq % 5); // documents of 5 tokens
  const int32_t *cpuPositions = withPositions ? positions.data() : nullptr;
  auto table = cuda::RotaryTable::create(params, seq, headDim);
  ASSERT_TRUE(table) << table.message();
  DeviceBuffer<bf16> dX(rows * dim), dQ(rows * qDim), dK(rows * kvDim), dV(rows * kvDim),
      dPacked(rows * dim);
  DeviceBuffer<int32_t> dPositions(rows);
  uploadBf16(dX, x);
  dPositions.upload(positions.data());
  const int32_t *pos = withPositions ? dPositions.get() : nullptr;
  const cuda::RowSpan q{dim, 0}, k{dim, qDim}, v{dim, qDim + kvDim};
  const cuda::QkvRotaryParts split{
      {dX.get(), dX.get(), dX.get()}, {dQ.get(), dK.get(), dV.get()}, {q, k, v}, {}};
  MT_ASSERT_OK(cuda::rotaryQkv(split, batch, seq, heads, kvHeads, *table, false, nullptr, pos));
  std::vector<float> wq(rows * qDim), wk(rows * kvDim), wv(rows * kvDim);
  cpu::splitQkv(x.data(), wq.data(), wk.data(), wv.data(), rows, qDim, kvDim);
  cpu::rotaryForward(wq.data(), wq.data(), batch, seq, heads, headDim, params, cpuPositions);
  cpu::rotaryForward(wk.data(), wk.data(), batch, seq, kvHeads, headDim, params, cpuPositions);
  auto rounded = [](std::vector<float> f) {
    for (float &e : f)
      e = roundBf16(e);
    return f;
  };
  EXPECT_EQ(downloadBf16(dQ), rounded(wq));
  EXPECT_EQ(downloadBf16(dK), rounded(wk));
  EXPECT_EQ(downloadBf16(dV), wv);

  // Backward: the rotated parts' gradients (here the parts themselves).
  const cuda::QkvRotaryParts concat{{dQ.get(), dK.get(), dV.get()},
                                    {dPacked.get(), dPacked.get(), dPacked.get()},
                                    {},
                                    {q, k, v}};
  MT_ASSERT_OK(cuda::rotaryQkv(concat, batch, seq, heads, kvHeads, *table, true, nullptr, pos));
  const std::vector<float> gq = downloadBf16(dQ), gk = downloadBf16(dK);
  std::vector<float> dq(rows * qDim, 0.0f), dk(rows * kvDim, 0.0f), want(rows * dim);
  cpu::rotaryBackward(gq.data(), dq.data(), batch, seq, heads, headDim, params, cpuPositions);
  cpu::rotaryBackward(gk.data(), dk.data(), batch, seq, kvHeads, headDim, params,
                      cpuPositions);
  cpu::concatQkv(rounded(dq).data(), rounded(dk).data(), wv.data(), want.data(), rows, qDim,
                 kvDim);
  EXPECT_EQ(downloadBf16(dPacked), want);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RotaryQkvTest,
    ::testing::Values(RotaryQkvCase{2, 7, 3, 1, 6, false}, RotaryQkvCase{2, 33, 4, 2, 64, true},
                      RotaryQkvCase{1, 129, 8, 2, 128, false},
                      RotaryQkvCase{4, 256, 32, 8, 64, true},
                      RotaryQkvCase{1, 5, 3, 3, 16, true},
                      RotaryQkvCase{2, 17, 6, 3, 32, false},
                      RotaryQkvCase{1, 9, 40, 5, 128, true}),
    [](const auto &info) {
      const RotaryQkvCase &c = info.param;
      return joined("b", c.batch, "_s", c.seq, "_h", c.heads, "_kv", c.kvHeads, "_d",
                    c.headDim, c.positions ? "_positions" : "");
    });

struct EmbeddingCase {
  int64_t tokens, vocab, hidden, distinctIds;
};

void PrintTo(const EmbeddingCase &c, std::ostream *os) {
  *os << shapeText({c.tokens, c.vocab, c.hidden}) << " ids<" << c.distinctIds;
}

class EmbeddingTest : public ::testing::TestWithParam<EmbeddingCase> {};

TEST_P(EmbeddingTest, BitExactWithCpu) {
  const auto [tokens, vocab, hidden, distinct] = GetParam();
  const std::string shape = shapeText({tokens, vocab, hidden});
  std::mt19937 rng(uint32_t(tokens + vocab + hidden));
  // Few distinct ids: many repeats, some across the 256-token windows.
  std::vector<int32_t> ids(tokens);
  for (int32_t &id : ids)
    id = int32_t((rng() % distinct) * (vocab / distinct));
  ids.back() = int32_t(vocab - 1);
  const auto table = randomBf16(rng, vocab * hidden, -1, 1);
  const auto dy = randomBf16(rng, tokens * hidden, -1, 1);
  const auto dtableOld = randomBf16(rng, vocab * hidden, -1, 1);
  DeviceBuffer<int32_t> dIds(tokens);
  DeviceBuffer<bf16> dTable(table.size()), dY(tokens * hidden), dDy(dy.size());
  DeviceBuffer<float> dDtable(table.size());
  DeviceBuffer<uint8_t> workspace(cuda::embeddingBackwardWorkspaceBytes(vocab));
  dIds.upload(ids.data());
  uploadBf16(dTable, table);
  uploadBf16(dDy, dy);
  dDtable.upload(dtableOld.data());

  MT_ASSERT_OK(cuda::embeddingForward(dIds.get(), dTable.get(), dY.get(), tokens,
                                      hidden, nullptr));
  std::vector<float> want(tokens * hidden);
  cpu::embeddingForward(ids.data(), table.data(), want.data(), tokens, hidden);
  expectClose("embedding_fwd", shape, downloadBf16(dY), want, tol::kBitExact);

  MT_ASSERT_OK(cuda::embeddingBackward(dIds.get(), dDy.get(), dDtable.get(),
                                       workspace.get(), tokens, vocab, hidden,
                                       nullptr));
  std::vector<float> wantDtable = dtableOld;
  cpu::embeddingBackward(ids.data(), dy.data(), wantDtable.data(), tokens, vocab,
                         hidden);
  expectClose("embedding_bwd+=", shape + " ids<" + std::to_string(distinct),
              download(dDtable), wantDtable, tol::kBitExact);
}

// The dp ranks' gathered ids and rows (rank-major) added into a reduced
// gradient times the mean's 1/dp (the sparse embedding gradient of
// runtime/cuda/NcclOverlap.cpp): each row's tokens in order, as the CPU
// reference adds them. For dp 2 the factor is exact (bit-exact); 1/3 rounds
// each product unless it is fused into its add, as the reference's fma: up
// to a rounding per term of the hundreds of rows of one id (kFp32AccumRel).
TEST_P(EmbeddingTest, GatheredRowsAddedScaled) {
  const auto [tokens, vocab, hidden, distinct] = GetParam();
  for (const int64_t dp : {2, 3}) {
    const std::string shape = shapeText({dp, tokens, vocab, hidden});
    std::mt19937 rng(uint32_t(dp * tokens + vocab + hidden));
    const int64_t rows = dp * tokens;
    std::vector<int32_t> ids(rows);
    for (int32_t &id : ids)
      id = int32_t((rng() % distinct) * (vocab / distinct));
    ids.back() = int32_t(vocab - 1);
    const auto dy = randomBf16(rng, rows * hidden, -1, 1);
    const auto reduced = randomBf16(rng, vocab * hidden, -1, 1);
    const float scale = 1.0f / float(dp);
    DeviceBuffer<int32_t> dIds(rows);
    DeviceBuffer<bf16> dDy(dy.size());
    DeviceBuffer<float> dDtable(reduced.size());
    DeviceBuffer<uint8_t> workspace(cuda::embeddingBackwardWorkspaceBytes(vocab));
    dIds.upload(ids.data());
    uploadBf16(dDy, dy);
    dDtable.upload(reduced.data());
    MT_ASSERT_OK(cuda::embeddingBackward(dIds.get(), dDy.get(), dDtable.get(), workspace.get(),
                                         rows, vocab, hidden, nullptr, 0, scale));
    std::vector<float> want = reduced;
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t c = 0; c < hidden; ++c) {
        float &w = want[size_t(ids[size_t(t)] * hidden + c)];
        w = std::fma(scale, dy[size_t(t * hidden + c)], w);
      }
    expectClose("embedding_bwd*scale+=", shape + " ids<" + std::to_string(distinct),
                download(dDtable), want, dp == 2 ? tol::kBitExact : tol::kFp32AccumRel);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, EmbeddingTest,
    ::testing::Values(EmbeddingCase{7, 1000, 13, 3}, EmbeddingCase{129, 1000, 64, 10},
                      EmbeddingCase{600, 8001, 2048, 5},
                      EmbeddingCase{300, 5000, 3000, 300},
                      EmbeddingCase{1000, 128256, 64, 1000}),
    [](const auto &info) {
      const EmbeddingCase &c = info.param;
      return joined("t", c.tokens, "_v", c.vocab, "_h", c.hidden);
    });

TEST(CastTest, EveryBf16PatternWidensExactly) {
  std::vector<uint16_t> bits(65536);
  for (size_t i = 0; i < bits.size(); ++i)
    bits[i] = uint16_t(i);
  DeviceBuffer<bf16> in(bits.size());
  DeviceBuffer<float> out(bits.size());
  in.upload(bits.data());
  MT_ASSERT_OK(cuda::castBf16ToFloat(in.get(), out.get(), int64_t(bits.size()),
                                     nullptr));
  std::vector<float> want(bits.size());
  for (size_t i = 0; i < bits.size(); ++i)
    want[i] = bf16Float(bits[i]);
  // The NaN patterns widen to NaN.
  expectClose("cast_bf16_to_f32", "65536 patterns", download(out), want,
              tol::kBitExact, Nan::MatchesWhereWanted);
}

TEST(CastTest, Fp32RoundsToNearestEven) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1e3f, 1e3f);
  std::vector<float> x(4099);
  for (float &v : x)
    v = dist(rng); // not bf16-exact: exercises the rounding
  const float inf = std::numeric_limits<float>::infinity();
  auto fromBits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  const std::vector<float> edges = {
      0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(),
      std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
      std::numeric_limits<float>::denorm_min(), 1e-40f,
      fromBits(0x3f808000u),  // tie, even below: rounds down
      fromBits(0x3f818000u),  // tie, odd below: rounds up
      fromBits(0x7f7f8000u)}; // rounds up past the largest bf16: inf
  std::copy(edges.begin(), edges.end(), x.begin());
  for (int64_t n : {int64_t(x.size()), int64_t(4096)}) {
    DeviceBuffer<float> in(x.size());
    DeviceBuffer<bf16> out(x.size());
    in.upload(x.data());
    MT_ASSERT_OK(cuda::castFloatToBf16(in.get(), out.get(), n, nullptr));
    std::vector<float> got = downloadBf16(out), want(n);
    got.resize(n);
    for (int64_t i = 0; i < n; ++i)
      want[i] = roundBf16(x[i]);
    // The NaN edge stays NaN.
    expectClose("cast_f32_to_bf16", shapeText({n}), got, want, tol::kBitExact,
                Nan::MatchesWhereWanted);
  }
}

TEST(FillTest, UniformInRangeAndReproducible) {
  const int64_t n = 100003;
  DeviceBuffer<float> a(n), b(n);
  MT_ASSERT_OK(cuda::fillUniform(a.get(), n, 42, -2.0f, 3.0f, nullptr));
  MT_ASSERT_OK(cuda::fillUniform(b.get(), n, 42, -2.0f, 3.0f, nullptr));
  const auto va = download(a);
  EXPECT_EQ(va, download(b));
  double sum = 0;
  for (float v : va) {
    ASSERT_GE(v, -2.0f);
    ASSERT_LT(v, 3.0f);
    sum += v;
  }
  // Mean 0.5, standard error 5 / sqrt(12 n) = 0.0046.
  EXPECT_NEAR(sum / n, 0.5, 0.03);
  MT_ASSERT_OK(cuda::fillUniform(b.get(), n, 43, -2.0f, 3.0f, nullptr));
  EXPECT_NE(va, download(b));
}

} // namespace
