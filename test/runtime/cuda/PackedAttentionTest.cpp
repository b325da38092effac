// The CUDA attention and rotary kernels over documents packed in a row
// (position ids restarting at each document) against cpu::attention* and
// cpu::rotary* with the same ids: odd lengths and document layouts that
// start, end and skip whole 64-token tiles, head dims 64 and 128, GQA ratios
// 1, 4 and 8.
#include "runtime/cuda/Attention.h"
#include "runtime/cuda/Elementwise.h"

#include "runtime/cpu/Attention.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct PackedCase {
  int64_t heads, kvHeads, headDim;
  std::vector<std::vector<int32_t>> rows; // document lengths per row, equal sums
};

void PrintTo(const PackedCase &c, std::ostream *os) {
  *os << "heads " << c.heads << "/" << c.kvHeads << " d" << c.headDim << " rows";
  for (const auto &r : c.rows) {
    *os << " [";
    for (int32_t n : r)
      *os << n << ",";
    *os << "]";
  }
}

std::vector<int32_t> positionIds(const PackedCase &c) {
  std::vector<int32_t> ids;
  for (const auto &row : c.rows)
    for (int32_t n : row)
      for (int32_t p = 0; p < n; ++p)
        ids.push_back(p);
  return ids;
}

class PackedAttentionTest : public ::testing::TestWithParam<PackedCase> {};

TEST_P(PackedAttentionTest, MatchesCpu) {
  const PackedCase &c = GetParam();
  const int64_t batch = int64_t(c.rows.size());
  const int64_t seq = std::accumulate(c.rows[0].begin(), c.rows[0].end(), int64_t(0));
  const std::string shape = shapeText({batch, seq, c.heads, c.kvHeads, c.headDim}) + " packed";
  const float scale = 1.0f / std::sqrt(float(c.headDim));
  const cpu::AttentionShape cpuShape{batch, seq, c.heads, c.kvHeads, c.headDim, scale};
  const cuda::AttentionShape gpuShape{batch, seq, c.heads, c.kvHeads, c.headDim, scale};
  const std::vector<int32_t> pos = positionIds(c);
  ASSERT_EQ(int64_t(pos.size()), batch * seq) << "rows of unequal lengths";
  const size_t nQ = size_t(batch * seq * c.heads * c.headDim);
  const size_t nKv = size_t(batch * seq * c.kvHeads * c.headDim);
  const size_t nLse = size_t(batch * c.heads * seq);
  std::mt19937 rng(uint32_t(seq * 31 + c.heads * 7 + c.headDim));
  const auto q = randomBf16(rng, nQ, -2, 2), k = randomBf16(rng, nKv, -2, 2);
  const auto v = randomBf16(rng, nKv, -1, 1), dout = randomBf16(rng, nQ, -1, 1);

  std::vector<float> wantOut(nQ), wantLse(nLse);
  cpu::attentionForward(q.data(), k.data(), v.data(), wantOut.data(), wantLse.data(),
                        cpuShape, pos.data());
  DeviceBuffer<bf16> dQ(nQ), dK(nKv), dV(nKv), dOut(nQ), dDout(nQ);
  DeviceBuffer<bf16> dDq(nQ), dDk(nKv), dDv(nKv);
  DeviceBuffer<float> dLse(nLse);
  DeviceBuffer<int32_t> dPos(pos.size());
  DeviceBuffer<uint8_t> workspace(cuda::attentionBackwardWorkspaceBytes(gpuShape));
  uploadBf16(dQ, q);
  uploadBf16(dK, k);
  uploadBf16(dV, v);
  uploadBf16(dDout, dout);
  dPos.upload(pos.data());
  MT_ASSERT_OK(cuda::attentionForward(dQ.get(), dK.get(), dV.get(), dOut.get(), dLse.get(),
                                      gpuShape, nullptr, dPos.get()));
  expectClose("attention_fwd.out", shape, downloadBf16(dOut), wantOut, tol::kBf16AttentionRel);
  expectClose("attention_fwd.lse", shape, download(dLse), wantLse, tol::kFp32AccumRel);

  // The backward from the reference's out (bf16) and lse, as AttentionTest.
  std::vector<float> outBf16(nQ);
  for (size_t i = 0; i < nQ; ++i)
    outBf16[i] = roundBf16(wantOut[i]);
  uploadBf16(dOut, outBf16);
  dLse.upload(wantLse.data());
  std::vector<float> wantDq(nQ, 0.0f), wantDk(nKv, 0.0f), wantDv(nKv, 0.0f);
  cpu::attentionBackward(q.data(), k.data(), v.data(), outBf16.data(), wantLse.data(),
                         dout.data(), wantDq.data(), wantDk.data(), wantDv.data(), cpuShape,
                         pos.data());
  dDq.poison();
  dDk.poison();
  dDv.poison();
  MT_ASSERT_OK(cuda::attentionBackward(dQ.get(), dK.get(), dV.get(), dOut.get(), dLse.get(),
                                       dDout.get(), dDq.get(), dDk.get(), dDv.get(),
                                       workspace.get(), gpuShape, nullptr, dPos.get()));
  expectClose("attention_bwd.dq", shape, downloadBf16(dDq), wantDq, tol::kBf16AttentionRel);
  expectClose("attention_bwd.dk", shape, downloadBf16(dDk), wantDk, tol::kBf16AttentionRel);
  expectClose("attention_bwd.dv", shape, downloadBf16(dDv), wantDv, tol::kBf16AttentionRel);

  // Rotary at the packed positions: bit-exact with the CPU, as unpacked.
  const size_t nRot = nQ;
  kernels::RotaryParams params;
  auto table = cuda::RotaryTable::create(params, seq, c.headDim);
  ASSERT_TRUE(table) << table.message();
  DeviceBuffer<bf16> dY(nRot), dDx(nRot);
  MT_ASSERT_OK(cuda::rotaryForward(dQ.get(), dY.get(), batch, seq, c.heads, *table, nullptr,
                                   dPos.get()));
  MT_ASSERT_OK(cuda::rotaryBackward(dQ.get(), dDx.get(), batch, seq, c.heads, *table, nullptr,
                                    dPos.get()));
  std::vector<float> wantY(nRot), wantDx(nRot, 0.0f);
  cpu::rotaryForward(q.data(), wantY.data(), batch, seq, c.heads, c.headDim, params, pos.data());
  cpu::rotaryBackward(q.data(), wantDx.data(), batch, seq, c.heads, c.headDim, params,
                      pos.data());
  for (auto *w : {&wantY, &wantDx})
    for (float &f : *w)
      f = roundBf16(f);
  expectClose("rotary_fwd", shape, downloadBf16(dY), wantY, tol::kBitExact);
  expectClose("rotary_bwd", shape, downloadBf16(dDx), wantDx, tol::kBitExact);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PackedAttentionTest,
    ::testing::Values(
        // GQA ratio 1, 4, 8 at head dims 64 and 128; documents inside one
        // tile, across tiles, of one token, and ones that skip whole tiles.
        PackedCase{4, 4, 64, {{5, 1, 7}, {13}}},
        PackedCase{8, 2, 64, {{70, 1, 130, 99}, {300}}},
        PackedCase{8, 1, 128, {{64, 65, 64}, {1, 191, 1}}},
        PackedCase{4, 4, 128, {{129, 128, 2}, {3, 250, 6}}},
        PackedCase{8, 2, 128, {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}}},
        PackedCase{8, 1, 64, {{200, 57}, {57, 200}}}),
    [](const auto &info) {
      const PackedCase &c = info.param;
      return joined("case", info.index, "_h", c.heads, "_kv", c.kvHeads, "_d", c.headDim);
    });

} // namespace
