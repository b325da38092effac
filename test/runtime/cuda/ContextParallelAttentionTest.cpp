// Context parallelism's attention on the GPU against the CPU reference on
// the same bf16-exact data: ring attention's blocks (every cp rank against
// every source rank's keys, cpu::attentionBlockForward/Backward, with the
// lse gradient, written and added), the gathered keys of cp_comm_type
// all_gather (cpu::attentionForward/Backward with a cp shape), and the
// log-sum-exp merge (cpu::attentionMergeForward/Backward), including rows
// that see no key; and rotary at a slice's places in the whole sequence,
// and at its packed documents' position ids, with the lowering's table.
// The blocks and the gathered keys also with packed documents (the queries'
// position ids, sliced as the data loader slices them: each query sees its
// document's keys alone). Local lengths whose chunks are not multiples of
// the 64-row tile, grouped queries, head_dim 64 and 128.
#include "runtime/cuda/Attention.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/RingAttention.h"

#include "runtime/cpu/Attention.h"
#include "runtime/cpu/RingAttention.h"
#include "test/Tolerances.h"
#include "runtime/kernels/ContextParallel.h"
#include "runtime/kernels/Rotary.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct CpCase {
  int64_t batch, seq, heads, kvHeads, headDim, cpSize; // seq: a rank's slice, even
};

void PrintTo(const CpCase &c, std::ostream *os) {
  *os << shapeText({c.batch, c.seq, c.heads, c.kvHeads, c.headDim}) << " cp" << c.cpSize;
}

std::string caseText(const CpCase &c, int64_t rank, int64_t source) {
  return joined(shapeText({c.batch, c.seq, c.heads, c.kvHeads, c.headDim}), " cp", c.cpSize,
                " rank ", rank, source < 0 ? std::string(" gathered")
                                           : joined(" keys of rank ", source));
}

/// One attention problem on both sides: inputs, the CPU's results, and the
/// GPU buffers. kvSeq rows of keys (seq, or seq x cp gathered).
struct Problem {
  size_t nQ, nKv, nLse;
  std::vector<float> q, k, v, dout, dlse, dqInit, dkInit, dvInit;
  DeviceBuffer<bf16> dQ, dK, dV, dOut, dDout, dDq, dDk, dDv;
  DeviceBuffer<float> dLse, dDlse;

  Problem(const CpCase &c, int64_t kvSeq, std::mt19937 &rng)
      : nQ(size_t(c.batch * c.seq * c.heads * c.headDim)),
        nKv(size_t(c.batch * kvSeq * c.kvHeads * c.headDim)),
        nLse(size_t(c.batch * c.heads * c.seq)), q(randomBf16(rng, nQ, -1, 1)),
        k(randomBf16(rng, nKv, -1, 1)), v(randomBf16(rng, nKv, -1, 1)),
        dout(randomBf16(rng, nQ, -1, 1)), dlse(randomBf16(rng, nLse, -1, 1)),
        dqInit(randomBf16(rng, nQ, -1, 1)), dkInit(randomBf16(rng, nKv, -1, 1)),
        dvInit(randomBf16(rng, nKv, -1, 1)), dQ(nQ), dK(nKv), dV(nKv), dOut(nQ), dDout(nQ),
        dDq(nQ), dDk(nKv), dDv(nKv), dLse(nLse), dDlse(nLse) {
    uploadBf16(dQ, q);
    uploadBf16(dK, k);
    uploadBf16(dV, v);
    uploadBf16(dDout, dout);
    dDlse.upload(dlse.data());
  }
};

/// The GPU's forward against `wantOut`/`wantLse`, then its backward (from
/// the reference's out rounded to bf16) against the CPU's, computed by
/// `cpuBackward(out, lse, dq, dk, dv)` which adds: written over poison, and
/// added (extras' flags) into random values. With `dlse` the block's lse
/// gradient takes part; `pos`: the queries' position ids on the device, or
/// null.
template <typename CpuBackward>
void checkBothWays(Problem &p, const cuda::AttentionShape &shape, const std::string &what,
                   const std::vector<float> &wantOut, const std::vector<float> &wantLse,
                   bool withDlse, CpuBackward cpuBackward, const int32_t *pos = nullptr) {
  DeviceBuffer<uint8_t> workspace(cuda::attentionBackwardWorkspaceBytes(shape) + 1);
  MT_ASSERT_OK(cuda::mtcAttentionForward(p.dQ.get(), p.dK.get(), p.dV.get(), p.dOut.get(),
                                         p.dLse.get(), shape, nullptr, pos));
  expectClose("cp_attention_fwd.out", what, downloadBf16(p.dOut), wantOut,
              tol::kBf16AttentionRel);
  expectClose("cp_attention_fwd.lse", what, download(p.dLse), wantLse, tol::kFp32AccumRel);

  std::vector<float> outBf16(p.nQ);
  for (size_t i = 0; i < p.nQ; ++i)
    outBf16[i] = roundBf16(wantOut[i]);
  uploadBf16(p.dOut, outBf16);
  p.dLse.upload(wantLse.data());
  for (bool add : {false, true}) {
    std::vector<float> wantDq(p.nQ, 0.0f), wantDk(p.nKv, 0.0f), wantDv(p.nKv, 0.0f);
    if (add) {
      wantDq = p.dqInit, wantDk = p.dkInit, wantDv = p.dvInit;
      uploadBf16(p.dDq, p.dqInit);
      uploadBf16(p.dDk, p.dkInit);
      uploadBf16(p.dDv, p.dvInit);
    } else {
      p.dDq.poison(), p.dDk.poison(), p.dDv.poison();
    }
    cpuBackward(outBf16, wantLse, wantDq, wantDk, wantDv);
    const cuda::AttentionGradExtras extras{withDlse ? p.dDlse.get() : nullptr, add, add, add};
    MT_ASSERT_OK(cuda::mtcAttentionBackward(p.dQ.get(), p.dK.get(), p.dV.get(), p.dOut.get(),
                                            p.dLse.get(), p.dDout.get(), p.dDq.get(),
                                            p.dDk.get(), p.dDv.get(), workspace.get(), shape,
                                            nullptr, pos, extras));
    const std::string bwd = add ? "cp_attention_bwd_add" : "cp_attention_bwd";
    expectClose(bwd + ".dq", what, downloadBf16(p.dDq), wantDq, tol::kBf16AttentionRel);
    expectClose(bwd + ".dk", what, downloadBf16(p.dDk), wantDk, tol::kBf16AttentionRel);
    expectClose(bwd + ".dv", what, downloadBf16(p.dDv), wantDv, tol::kBf16AttentionRel);
  }
}

/// Packed documents' position ids, [batch, seq x cpSize] (whole rows):
/// lengths 3, 70, 1, 29, 130, 8, 64 in turn (row b starting b places into
/// the cycle), the last cut by the row's end, so that documents start and
/// end inside chunks and tiles, span chunks and whole tiles, and hold one
/// token.
std::vector<int32_t> packedPositions(const CpCase &c) {
  const int32_t lengths[] = {3, 70, 1, 29, 130, 8, 64};
  const int64_t whole = c.seq * c.cpSize;
  std::vector<int32_t> pos(size_t(c.batch * whole));
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t s = 0, doc = b, at = 0; s < whole; ++s, ++at) {
      if (at == lengths[doc % 7])
        at = 0, ++doc;
      pos[size_t(b * whole + s)] = int32_t(at);
    }
  return pos;
}

/// The position ids of cp rank `rank`'s tokens, [batch, seq], by their
/// places in the whole rows (as exec::fillContextParallelBatch slices them).
std::vector<int32_t> rankPositions(const std::vector<int32_t> &whole, const CpCase &c,
                                   int64_t rank) {
  std::vector<int32_t> mine(size_t(c.batch * c.seq));
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.seq; ++i)
      mine[size_t(b * c.seq + i)] = whole[size_t(
          b * c.seq * c.cpSize + kernels::contextParallelPosition(i, c.seq, rank, c.cpSize))];
  return mine;
}

/// The queries' position ids of one rank on both sides (none without
/// documents).
struct RankPositions {
  std::vector<int32_t> host;
  DeviceBuffer<int32_t> device;
  RankPositions(const CpCase &c, int64_t rank, bool documents)
      : host(documents ? rankPositions(packedPositions(c), c, rank) : std::vector<int32_t>{}),
        device(host.size()) {
    if (documents)
      device.upload(host.data());
  }
  const int32_t *cpu() const { return host.empty() ? nullptr : host.data(); }
  const int32_t *gpu() const { return host.empty() ? nullptr : device.get(); }
};

/// Every (rank, source) pair of the ring: the rank's own keys (causal), an
/// earlier rank's (their first chunk seen by every query, their second by
/// none) and a later one's (seen by the slice's second half only; the first
/// half sees no key: out 0, lse -inf); with documents, within each query's
/// document only (more queries see no key).
void checkRingBlocks(const CpCase &c, bool documents) {
  const float scale = 1.0f / std::sqrt(float(c.headDim));
  for (int64_t rank = 0; rank < c.cpSize; ++rank) {
    const RankPositions pos(c, rank, documents);
    for (int64_t source = 0; source < c.cpSize; ++source) {
      std::mt19937 rng(uint32_t(c.seq * 131 + c.headDim + rank * 7 + source));
      Problem p(c, c.seq, rng);
      const int64_t step = (rank - source + c.cpSize) % c.cpSize;
      cpu::AttentionShape cpuShape{c.batch, c.seq, c.heads, c.kvHeads, c.headDim, scale};
      cpuShape.cpRank = rank, cpuShape.cpSize = c.cpSize;
      cuda::AttentionShape gpuShape{c.batch, c.seq, c.heads, c.kvHeads, c.headDim, scale};
      gpuShape.cpRank = rank, gpuShape.cpSize = c.cpSize, gpuShape.kvSource = source;
      std::vector<float> wantOut(p.nQ), wantLse(p.nLse);
      cpu::attentionBlockForward(p.q.data(), p.k.data(), p.v.data(), wantOut.data(),
                                 wantLse.data(), cpuShape, step, pos.cpu());
      auto cpuBackward = [&](auto &out, auto &lse, auto &dq, auto &dk, auto &dv) {
        cpu::attentionBlockBackward(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(),
                                    p.dout.data(), p.dlse.data(), dq.data(), dk.data(),
                                    dv.data(), cpuShape, step, pos.cpu());
      };
      const std::string what = caseText(c, rank, source) + (documents ? " documents" : "");
      checkBothWays(p, gpuShape, what, wantOut, wantLse, true, cpuBackward, pos.gpu());
      // The rank's own keys without documents: plain causal attention, as
      // the lowering runs it (with documents it keeps the cp shape above).
      if (step == 0 && !documents)
        checkBothWays(p, {c.batch, c.seq, c.heads, c.kvHeads, c.headDim, scale},
                      what + " causal", wantOut, wantLse, true, cpuBackward);
    }
  }
}

/// cp_comm_type all_gather: every rank's queries against the keys of all.
void checkGatheredKeys(const CpCase &c, bool documents) {
  const float scale = 1.0f / std::sqrt(float(c.headDim));
  for (int64_t rank = 0; rank < c.cpSize; ++rank) {
    const RankPositions pos(c, rank, documents);
    std::mt19937 rng(uint32_t(c.seq * 17 + c.headDim + rank));
    Problem p(c, c.seq * c.cpSize, rng);
    cpu::AttentionShape cpuShape{c.batch, c.seq, c.heads, c.kvHeads, c.headDim, scale};
    cpuShape.cpRank = rank, cpuShape.cpSize = c.cpSize;
    cuda::AttentionShape gpuShape{c.batch, c.seq, c.heads, c.kvHeads, c.headDim, scale};
    gpuShape.cpRank = rank, gpuShape.cpSize = c.cpSize;
    std::vector<float> wantOut(p.nQ), wantLse(p.nLse);
    cpu::attentionForward(p.q.data(), p.k.data(), p.v.data(), wantOut.data(), wantLse.data(),
                          cpuShape, pos.cpu());
    checkBothWays(p, gpuShape, caseText(c, rank, -1) + (documents ? " documents" : ""),
                  wantOut, wantLse, false,
                  [&](auto &out, auto &lse, auto &dq, auto &dk, auto &dv) {
                    cpu::attentionBackward(p.q.data(), p.k.data(), p.v.data(), out.data(),
                                           lse.data(), p.dout.data(), dq.data(), dk.data(),
                                           dv.data(), cpuShape, pos.cpu());
                  },
                  pos.gpu());
  }
}

class ContextParallelAttentionTest : public ::testing::TestWithParam<CpCase> {};

TEST_P(ContextParallelAttentionTest, RingBlockMatchesCpu) { checkRingBlocks(GetParam(), false); }

// Packed documents under cp_comm_type p2p (neat_packing).
TEST_P(ContextParallelAttentionTest, RingBlockWithDocumentsMatchesCpu) {
  checkRingBlocks(GetParam(), true);
}

TEST_P(ContextParallelAttentionTest, GatheredKeysMatchCpu) {
  checkGatheredKeys(GetParam(), false);
}

// Packed documents under cp_comm_type all_gather.
TEST_P(ContextParallelAttentionTest, GatheredKeysWithDocumentsMatchCpu) {
  checkGatheredKeys(GetParam(), true);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ContextParallelAttentionTest,
    ::testing::Values(CpCase{1, 2, 2, 1, 64, 2},    // chunks of one token
                      CpCase{2, 74, 4, 2, 64, 2},   // chunks of 37: tiles straddle them
                      CpCase{1, 130, 6, 1, 128, 2}, // chunks of 65
                      CpCase{2, 42, 8, 2, 64, 3},   // an odd ring
                      CpCase{1, 256, 4, 4, 128, 2}, // whole tiles
                      // whole tiles, chunks of two: ring blocks where whole
                      // query tiles see no key and whole key tiles no query
                      CpCase{2, 256, 8, 2, 64, 4},
                      CpCase{1, 384, 4, 2, 64, 2},  // documents skip and span whole tiles
                      CpCase{1, 66, 8, 2, 128, 4}),
    [](const auto &info) {
      const CpCase &c = info.param;
      return joined("b", c.batch, "_s", c.seq, "_h", c.heads, "_kv", c.kvHeads, "_d",
                    c.headDim, "_cp", c.cpSize);
    });

// The context-parallel mask (with documents or without) is the mtc
// kernels' alone: auto picks them, a forced cudnn is refused by name.
TEST(ContextParallelAttentionBackendTest, ResolvesToTheMtcKernels) {
  cuda::AttentionShape shape{1, 64, 4, 2, 64, 0.125f};
  shape.cpRank = 1, shape.cpSize = 2;
  auto plan = cuda::planAttention(shape, false, {cuda::AttentionBackend::Auto});
  ASSERT_TRUE(plan.isOk()) << plan.message();
  EXPECT_EQ(plan->backend, cuda::AttentionBackend::Mtc);
  auto packed = cuda::planAttention(shape, true, {cuda::AttentionBackend::Auto});
  ASSERT_TRUE(packed.isOk()) << packed.message();
  EXPECT_EQ(packed->backend, cuda::AttentionBackend::Mtc); // documents under cp too
  auto forced = cuda::planAttention(shape, false, {cuda::AttentionBackend::Cudnn});
  ASSERT_FALSE(forced.isOk());
  EXPECT_NE(forced.message().find("cannot mask a context-parallel slice"), std::string::npos)
      << forced.message();
  shape.seq = 63; // the load-balanced layout cuts a slice in two
  DeviceBuffer<bf16> t(64 * 4 * 64);
  DeviceBuffer<float> lse(64 * 4);
  const Status odd = cuda::mtcAttentionForward(t.get(), t.get(), t.get(), t.get(), lse.get(),
                                               shape, nullptr, nullptr);
  ASSERT_FALSE(odd.isOk());
  EXPECT_NE(odd.message().find("context parallelism expects an even seq"), std::string::npos)
      << odd.message();
}

/// Rotary of [batch, seq, heads, headDim] at `positions` on the GPU, with
/// the table the lowering makes for a rotary of that slice
/// (kernels::rotaryTableRows: `cpSize` of its context_parallel_axis, rows
/// of seq x `wholeCp` tokens), bit-exact with the CPU at the same
/// positions, forward and backward.
void expectRotaryAt(const std::vector<int32_t> &positions, int64_t batch, int64_t seq,
                    int64_t cpSize, int64_t wholeCp, const std::string &what) {
  const int64_t heads = 3, headDim = 64;
  const kernels::RotaryParams params{500000.0, 32.0, 1.0, 4.0, 64};
  const size_t n = size_t(batch * seq * heads * headDim);
  std::mt19937 rng(7);
  const auto x = randomBf16(rng, n, -3, 3);
  DeviceBuffer<bf16> dX(n), dY(n);
  DeviceBuffer<int32_t> dPositions(positions.size());
  uploadBf16(dX, x);
  dPositions.upload(positions.data());
  auto table = cuda::RotaryTable::create(
      params, kernels::rotaryTableRows(seq, cpSize, seq * wholeCp), headDim);
  ASSERT_TRUE(table) << table.message();
  std::vector<float> want(n), wantGrad(n, 0.0f);
  cpu::rotaryForward(x.data(), want.data(), batch, seq, heads, headDim, params,
                     positions.data());
  cpu::rotaryBackward(x.data(), wantGrad.data(), batch, seq, heads, headDim, params,
                      positions.data());
  for (auto *v : {&want, &wantGrad})
    for (float &f : *v)
      f = roundBf16(f);
  MT_ASSERT_OK(cuda::rotaryForward(dX.get(), dY.get(), batch, seq, heads, *table, nullptr,
                                   dPositions.get()));
  expectClose("rotary_fwd_cp", what, downloadBf16(dY), want, tol::kBitExact);
  MT_ASSERT_OK(cuda::rotaryBackward(dX.get(), dY.get(), batch, seq, heads, *table, nullptr,
                                    dPositions.get()));
  expectClose("rotary_bwd_cp", what, downloadBf16(dY), wantGrad, tol::kBitExact);
}

// A cp rank's tokens sit at places up to cp x seq - 1 of the whole sequence:
// the rotary table has that many rows and position ids past the slice's
// length are looked up, not clamped to it (the lowering's positions).
TEST(ContextParallelRotaryTest, RotatesAtTheSlicesPlaces) {
  const int64_t batch = 2, seq = 74, cpSize = 2, cpRank = 1;
  std::vector<int32_t> places(size_t(batch * seq));
  for (int64_t i = 0; i < batch * seq; ++i)
    places[size_t(i)] = int32_t(kernels::contextParallelPosition(i % seq, seq, cpRank, cpSize));
  expectRotaryAt(places, batch, seq, cpSize, cpSize,
                 shapeText({batch, seq, 3, 64}) + " cp rank 1 of 2");
}

// Packed documents under cp: a rank's rotary takes its tokens' position ids
// (no context_parallel_axis), up to the whole row's length where a
// document began in an earlier chunk; the table covers the row, so none is
// clamped to the slice's length (the packed cp2 training drift on two GPUs).
TEST(ContextParallelRotaryTest, RotatesPackedDocumentsAtTheirPositionIds) {
  const CpCase c{3, 74, 3, 1, 64, 2};
  const std::vector<int32_t> whole = packedPositions(c);
  for (int64_t rank = 0; rank < c.cpSize; ++rank) {
    const std::vector<int32_t> mine = rankPositions(whole, c, rank);
    EXPECT_GE(*std::max_element(mine.begin(), mine.end()), c.seq)
        << "rank " << rank << " holds a position id past its slice's length";
    expectRotaryAt(mine, c.batch, c.seq, 1, c.cpSize,
                   joined(shapeText({c.batch, c.seq, 3, 64}), " documents, cp rank ", rank,
                          " of ", c.cpSize));
  }
}

struct MergeCase {
  int64_t batch, seq, heads, headDim;
};

class AttentionMergeTest : public ::testing::TestWithParam<MergeCase> {};

// Rows where one block or both saw no key (lse -inf) among finite ones.
TEST_P(AttentionMergeTest, MatchesCpu) {
  const MergeCase c = GetParam();
  const std::string what = shapeText({c.batch, c.seq, c.heads, c.headDim});
  const size_t nOut = size_t(c.batch * c.seq * c.heads * c.headDim);
  const size_t nLse = size_t(c.batch * c.heads * c.seq);
  std::mt19937 rng(uint32_t(c.seq * 31 + c.headDim));
  const auto outA = randomBf16(rng, nOut, -1, 1), outB = randomBf16(rng, nOut, -1, 1);
  auto lseA = randomBf16(rng, nLse, -4, 4), lseB = randomBf16(rng, nLse, -4, 4);
  const float none = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < nLse; i += 3)
    lseB[i] = none; // block B saw no key for these rows
  for (size_t i = 0; i < nLse; i += 7)
    lseA[i] = none; // both, where i is a multiple of 21
  const auto dout = randomBf16(rng, nOut, -1, 1), dlse = randomBf16(rng, nLse, -1, 1);
  DeviceBuffer<bf16> dOutA(nOut), dOutB(nOut), dOut(nOut), dDout(nOut), dDoutA(nOut),
      dDoutB(nOut);
  DeviceBuffer<float> dLseA(nLse), dLseB(nLse), dLse(nLse), dDlse(nLse), dDlseA(nLse),
      dDlseB(nLse);
  uploadBf16(dOutA, outA);
  uploadBf16(dOutB, outB);
  uploadBf16(dDout, dout);
  dLseA.upload(lseA.data());
  dLseB.upload(lseB.data());
  dDlse.upload(dlse.data());
  const cuda::MergeShape shape{c.batch, c.seq, c.heads, c.headDim};

  std::vector<float> wantOut(nOut), wantLse(nLse);
  cpu::attentionMergeForward(outA.data(), lseA.data(), outB.data(), lseB.data(),
                             wantOut.data(), wantLse.data(), c.batch, c.seq, c.heads,
                             c.headDim);
  MT_ASSERT_OK(cuda::attentionMergeForward(dOutA.get(), dLseA.get(), dOutB.get(), dLseB.get(),
                                           dOut.get(), dLse.get(), shape, nullptr));
  expectClose("attention_merge.out", what, downloadBf16(dOut), wantOut, tol::kBf16Rel);
  expectClose("attention_merge.lse", what, download(dLse), wantLse, tol::kFp32AccumRel);

  // The backward from the reference's merged out (bf16) and lse.
  std::vector<float> outBf16(nOut);
  for (size_t i = 0; i < nOut; ++i)
    outBf16[i] = roundBf16(wantOut[i]);
  uploadBf16(dOut, outBf16);
  dLse.upload(wantLse.data());
  for (bool add : {false, true}) {
    std::vector<float> wantDoutA(nOut, 0.0f), wantDoutB(nOut, 0.0f), wantDlseA(nLse, 0.0f),
        wantDlseB(nLse, 0.0f);
    if (add) {
      wantDoutA = randomBf16(rng, nOut, -1, 1), wantDoutB = randomBf16(rng, nOut, -1, 1);
      wantDlseA = randomBf16(rng, nLse, -1, 1), wantDlseB = randomBf16(rng, nLse, -1, 1);
      uploadBf16(dDoutA, wantDoutA);
      uploadBf16(dDoutB, wantDoutB);
      dDlseA.upload(wantDlseA.data());
      dDlseB.upload(wantDlseB.data());
    } else {
      dDoutA.poison(), dDoutB.poison(), dDlseA.poison(), dDlseB.poison();
    }
    cpu::attentionMergeBackward(outA.data(), lseA.data(), outB.data(), lseB.data(),
                                outBf16.data(), wantLse.data(), dout.data(), dlse.data(),
                                wantDoutA.data(), wantDlseA.data(), wantDoutB.data(),
                                wantDlseB.data(), c.batch, c.seq, c.heads, c.headDim);
    MT_ASSERT_OK(cuda::attentionMergeBackward(
        dOutA.get(), dLseA.get(), dOutB.get(), dLseB.get(), dOut.get(), dLse.get(),
        dDout.get(), dDlse.get(), dDoutA.get(), dDlseA.get(), dDoutB.get(), dDlseB.get(),
        shape, {add, add, add, add}, nullptr));
    const std::string bwd = add ? "attention_merge_bwd_add" : "attention_merge_bwd";
    expectClose(bwd + ".dout_a", what, downloadBf16(dDoutA), wantDoutA, tol::kBf16Rel);
    expectClose(bwd + ".dout_b", what, downloadBf16(dDoutB), wantDoutB, tol::kBf16Rel);
    expectClose(bwd + ".dlse_a", what, download(dDlseA), wantDlseA, tol::kFp32AccumRel);
    expectClose(bwd + ".dlse_b", what, download(dDlseB), wantDlseB, tol::kFp32AccumRel);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionMergeTest,
                         ::testing::Values(MergeCase{1, 1, 1, 64}, MergeCase{2, 37, 4, 64},
                                           MergeCase{1, 65, 6, 128}, MergeCase{3, 33, 2, 96}),
                         [](const auto &info) {
                           const MergeCase &c = info.param;
                           return joined("b", c.batch, "_s", c.seq, "_h", c.heads, "_d",
                                         c.headDim);
                         });

} // namespace
