// The token dispatchers' CUDA kernels (runtime/cuda/ExpertDispatch.h)
// against their CPU references: moe_sort_chunks bit for bit with
// cpu::moeSortChunks (forward and inverse, empty chunks, rows past the
// chunks, odd widths and a misaligned pointer for the scalar path, twice on
// the same input: deterministic; the allgather dispatcher's blocks with
// offsets), and the exchanged and gathered counts' sums as the CPU
// backend's moe_exchange_counts and moe_gather_counts compute them.
#include "runtime/cuda/ExpertDispatch.h"

#include "runtime/cpu/MoEPermute.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <tuple>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct SortCase {
  int64_t parts, groups, hidden, spare; // spare: rows past the chunks
  int64_t offset;                       // elements the data starts past an aligned pointer
};

void PrintTo(const SortCase &c, std::ostream *os) {
  *os << shapeText({c.parts, c.groups, c.hidden, c.spare}) << (c.offset ? "+off1" : "");
}

class SortChunksTest : public ::testing::TestWithParam<SortCase> {};

/// Counts in [0, 9], about a third of them 0 (an expert a rank sends nothing).
std::vector<int32_t> randomCounts(std::mt19937 &rng, int64_t n) {
  std::uniform_int_distribution<int32_t> dist(-4, 9);
  std::vector<int32_t> counts(static_cast<size_t>(n));
  for (int32_t &c : counts)
    c = std::max(dist(rng), 0);
  return counts;
}

TEST_P(SortChunksTest, MatchesCpuBitForBitBothWays) {
  const SortCase c = GetParam();
  std::mt19937 rng{uint32_t(c.parts * 1000 + c.groups * 10 + c.hidden)};
  const std::vector<int32_t> counts = randomCounts(rng, c.parts * c.groups);
  const int64_t rows = std::accumulate(counts.begin(), counts.end(), int64_t(0)) + c.spare;
  const int64_t n = rows * c.hidden, off = c.offset;
  const std::vector<float> x = randomBf16(rng, size_t(n), -4, 4);
  const std::string shape = shapeText({c.parts, c.groups, rows, c.hidden}) + (off ? "+off1" : "");
  DeviceBuffer<int32_t> dCounts(counts.size());
  dCounts.upload(counts.data());
  DeviceBuffer<bf16> dX(size_t(n + off)), dY(size_t(n + off)), dBack(size_t(n + off));
  std::vector<float> padded(size_t(off), 0.0f);
  padded.insert(padded.end(), x.begin(), x.end());
  uploadBf16(dX, padded);
  for (bool inverse : {false, true}) {
    const cuda::SortChunksShape s{c.parts, c.groups, rows, c.hidden, inverse};
    std::vector<float> want(static_cast<size_t>(n));
    MT_ASSERT_OK(cpu::moeSortChunks(x.data(), counts.data(), nullptr, want.data(), c.parts,
                                    c.groups, rows, c.hidden, inverse));
    DeviceBuffer<std::byte> workspace(cuda::moeSortChunksWorkspaceBytes(s));
    std::vector<float> first;
    for (int run = 0; run < 2; ++run) { // the same bits twice
      dY.poison(); // NaN: rows the kernel leaves unwritten fail
      MT_ASSERT_OK(cuda::moeSortChunks(dX.get() + off, dCounts.get(), nullptr, dY.get() + off,
                                       workspace.get(), s, nullptr));
      std::vector<float> got = downloadBf16(dY);
      got.erase(got.begin(), got.begin() + off);
      expectClose(inverse ? "moe_sort_chunks(inverse)" : "moe_sort_chunks", shape, got, want,
                  tol::kBitExact);
      if (run == 0)
        first = got;
      else
        EXPECT_EQ(std::memcmp(first.data(), got.data(), got.size() * sizeof(float)), 0) << shape;
    }
    // The inverse undoes the sort: the chunks' rows come back, the rest is zero.
    const cuda::SortChunksShape back{c.parts, c.groups, rows, c.hidden, !inverse};
    MT_ASSERT_OK(cuda::moeSortChunks(dY.get() + off, dCounts.get(), nullptr, dBack.get() + off,
                                     workspace.get(), back, nullptr));
    std::vector<float> roundTrip = downloadBf16(dBack);
    roundTrip.erase(roundTrip.begin(), roundTrip.begin() + off);
    std::vector<float> wantBack = x;
    std::fill(wantBack.begin() + (rows - c.spare) * c.hidden, wantBack.end(), 0.0f);
    expectClose("moe_sort_chunks(round trip)", shape, roundTrip, wantBack, tol::kBitExact);
  }
}

// Odd widths and the misaligned pointer take the 2-byte path, widths of 8k
// at aligned pointers the 16-byte one; Qwen3-30B-A3B's 16 local experts
// over 8 ranks, and one rank holding every expert.
INSTANTIATE_TEST_SUITE_P(Shapes, SortChunksTest,
                         ::testing::Values(SortCase{2, 3, 64, 0, 0}, SortCase{2, 3, 64, 5, 0},
                                           SortCase{2, 3, 64, 5, 1}, SortCase{3, 2, 7, 3, 0},
                                           SortCase{4, 1, 33, 0, 0}, SortCase{1, 4, 16, 2, 0},
                                           SortCase{8, 16, 2048, 11, 0},
                                           SortCase{2, 64, 24, 1, 1}),
                         [](const auto &info) {
                           const SortCase &c = info.param;
                           return joined("p", c.parts, "_g", c.groups, "_h", c.hidden, "_s",
                                         c.spare, c.offset ? "_off1" : "");
                         });

TEST(SortChunksLimitsTest, RefusesTooManyChunksAndAliasing) {
  const cuda::SortChunksShape tooMany{cuda::kMaxSortChunks + 1, 1, 4, 8, false};
  Status s = cuda::moeSortChunks(nullptr, nullptr, nullptr, nullptr, nullptr, tooMany, nullptr);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("expected 1 to 4000"), std::string::npos) << s.message();
  DeviceBuffer<bf16> rows(32);
  DeviceBuffer<int32_t> counts(2);
  s = cuda::moeSortChunks(rows.get(), counts.get(), nullptr, rows.get(), nullptr,
                          {2, 1, 4, 8, false}, nullptr);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("aliases"), std::string::npos) << s.message();
}

// The allgather dispatcher's layout: parts blocks of rows / parts rows,
// each source's chunks from a random offset in its block (rows before and
// after them belong to other experts), sorted by local expert and back,
// bit for bit as cpu::moeSortChunks.
TEST(SortChunksTest, BlocksWithOffsetsMatchCpu) {
  for (auto [parts, groups, hidden] : {std::tuple<int64_t, int64_t, int64_t>{2, 3, 64},
                                       {4, 2, 7}, {8, 16, 256}, {1, 5, 16}}) {
    std::mt19937 rng{uint32_t(parts * 100 + groups * 10 + hidden)};
    const std::vector<int32_t> counts = randomCounts(rng, parts * groups);
    int64_t most = 0;
    for (int64_t p = 0; p < parts; ++p)
      most = std::max<int64_t>(most, std::accumulate(counts.begin() + p * groups,
                                                     counts.begin() + (p + 1) * groups, 0));
    const int64_t block = most + 5, rows = parts * block, n = rows * hidden;
    std::vector<int32_t> offsets(static_cast<size_t>(parts));
    for (int64_t p = 0; p < parts; ++p) {
      const int32_t mine = std::accumulate(counts.begin() + p * groups,
                                           counts.begin() + (p + 1) * groups, 0);
      offsets[size_t(p)] = std::uniform_int_distribution<int32_t>(0, int32_t(block) - mine)(rng);
    }
    const std::vector<float> x = randomBf16(rng, size_t(n), -4, 4);
    const std::string shape = shapeText({parts, groups, rows, hidden}) + " blocked";
    DeviceBuffer<int32_t> dCounts(counts.size()), dOffsets(offsets.size());
    dCounts.upload(counts.data());
    dOffsets.upload(offsets.data());
    DeviceBuffer<bf16> dX(static_cast<size_t>(n)), dY(static_cast<size_t>(n));
    uploadBf16(dX, x);
    for (bool inverse : {false, true}) {
      const cuda::SortChunksShape s{parts, groups, rows, hidden, inverse, true};
      std::vector<float> want(static_cast<size_t>(n));
      MT_ASSERT_OK(cpu::moeSortChunks(x.data(), counts.data(), offsets.data(), want.data(),
                                      parts, groups, rows, hidden, inverse));
      DeviceBuffer<std::byte> workspace(cuda::moeSortChunksWorkspaceBytes(s));
      dY.poison();
      MT_ASSERT_OK(cuda::moeSortChunks(dX.get(), dCounts.get(), dOffsets.get(), dY.get(),
                                       workspace.get(), s, nullptr));
      expectClose(inverse ? "moe_sort_chunks(blocked, inverse)" : "moe_sort_chunks(blocked)",
                  shape, downloadBf16(dY), want, tol::kBitExact);
    }
  }
}

// The sums of moe_gather_counts, as runtime/cpu/CpuExecutor.cpp's
// gatherCounts computes them from every rank's gathered counts.
TEST(CountSumsTest, GatheredCountsMatchTheCpuBackends) {
  for (auto [parts, groups, rank] : {std::tuple<int64_t, int64_t, int64_t>{2, 3, 1}, {1, 6, 0},
                                     {8, 16, 5}, {4, 1, 0}}) {
    std::mt19937 rng{uint32_t(parts * 100 + groups + rank)};
    const int64_t experts = parts * groups, first = rank * groups;
    const std::vector<int32_t> all = randomCounts(rng, parts * experts);
    std::vector<int32_t> global(size_t(parts * groups)), offsets(size_t(parts), 0),
        local(size_t(groups), 0);
    for (int64_t p = 0; p < parts; ++p) {
      for (int64_t e = 0; e < first; ++e)
        offsets[size_t(p)] += all[size_t(p * experts + e)];
      for (int64_t g = 0; g < groups; ++g) {
        global[size_t(p * groups + g)] = all[size_t(p * experts + first + g)];
        local[size_t(g)] += all[size_t(p * experts + first + g)];
      }
    }
    DeviceBuffer<int32_t> dAll(all.size()), dGlobal(global.size()), dOffsets(offsets.size()),
        dLocal(local.size());
    dAll.upload(all.data());
    MT_ASSERT_OK(cuda::moeGatherCountSums(dAll.get(), parts, experts, first, groups,
                                          dGlobal.get(), dOffsets.get(), dLocal.get(), nullptr));
    const std::string shape = shapeText({parts, groups, rank});
    EXPECT_EQ(download(dGlobal), global) << shape;
    EXPECT_EQ(download(dOffsets), offsets) << shape;
    EXPECT_EQ(download(dLocal), local) << shape;
  }
}

// The sums of moe_exchange_counts, as runtime/cpu/CpuExecutor.cpp's
// exchangeCounts computes them from this rank's and the received counts.
TEST(CountSumsTest, MatchesTheCpuBackendsSums) {
  for (auto [parts, groups] : {std::pair<int64_t, int64_t>{2, 3}, {1, 6}, {8, 16}, {5, 1}}) {
    std::mt19937 rng{uint32_t(parts * 100 + groups)};
    const std::vector<int32_t> mine = randomCounts(rng, parts * groups),
                               global = randomCounts(rng, parts * groups);
    std::vector<int32_t> send(size_t(parts), 0), recv(size_t(parts), 0), local(size_t(groups), 0);
    for (int64_t p = 0; p < parts; ++p)
      for (int64_t g = 0; g < groups; ++g) {
        send[size_t(p)] += mine[size_t(p * groups + g)];
        recv[size_t(p)] += global[size_t(p * groups + g)];
        local[size_t(g)] += global[size_t(p * groups + g)];
      }
    std::vector<int32_t> splits = send;
    splits.insert(splits.end(), recv.begin(), recv.end());
    const auto p = static_cast<size_t>(parts), g = static_cast<size_t>(groups);
    DeviceBuffer<int32_t> dMine(mine.size()), dGlobal(global.size()), dSend(p), dRecv(p),
        dLocal(g), dSplits(2 * p);
    dMine.upload(mine.data());
    dGlobal.upload(global.data());
    MT_ASSERT_OK(cuda::moeCountSums(dMine.get(), dGlobal.get(), parts, groups, dSend.get(),
                                    dRecv.get(), dLocal.get(), dSplits.get(), nullptr));
    const std::string shape = shapeText({parts, groups});
    EXPECT_EQ(download(dSend), send) << shape;
    EXPECT_EQ(download(dRecv), recv) << shape;
    EXPECT_EQ(download(dLocal), local) << shape;
    EXPECT_EQ(download(dSplits), splits) << shape;
  }
}

} // namespace
