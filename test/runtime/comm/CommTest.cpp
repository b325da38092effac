// The collectives of mt::comm::Communicator over Gloo, with every rank a
// thread that has its own World (own Gloo device and connections). As in
// nccl-tests, each rank's data is a function of (rank, index), so any rank
// can compute the expected result of any collective.
#include "runtime/comm/Gloo.h"
#include "test/runtime/comm/CommTestSupport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <numeric>
#include <thread>

using namespace mt::comm;
using mt::Status;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

using mt::commtest::TempDir;

// Only a build configured with -DMT_REQUIRE_GLOO=OFF lacks Gloo (the full
// build refuses to configure without it); ctest lists these as skipped.
#define REQUIRE_GLOO()                                                                     \
  if (!World::multiRankSupported())                                                        \
  GTEST_SKIP() << "built without Gloo (-DMT_REQUIRE_GLOO=OFF)"

// Runs body(rank, world) on `n` threads, one rank each, after all connected.
void runRanks(int n, milliseconds timeout, const std::function<void(int, World &)> &body) {
  TempDir dir;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      RankInfo info;
      info.rank = r;
      info.worldSize = n;
      info.localRank = r;
      info.rendezvous = dir.path;
      info.host = "127.0.0.1";
      auto world = World::connect(info, timeout);
      ASSERT_TRUE(world.isOk()) << world.message();
      EXPECT_EQ((*world)->world().size(), n);
      EXPECT_EQ((*world)->world().rank(), r);
      body(r, **world);
    });
  for (auto &t : threads)
    t.join();
}

// Rank r's element i: signs and exponents vary so that the order of the
// additions changes the rounded float sum.
float value(int rank, size_t i) {
  float mantissa = 1.0f + float((rank * 7919 + i * 104729) % 1000) / 1000.0f;
  float v = std::ldexp(mantissa, int((rank * 5 + i * 3) % 24) - 12);
  return (rank + i) % 3 == 0 ? -v : v;
}

std::vector<float> rankData(int rank, size_t count) {
  std::vector<float> v(count);
  for (size_t i = 0; i < count; ++i)
    v[i] = value(rank, i);
  return v;
}

// The single-process reference: contributions added in rank order.
float rankOrderSum(const std::vector<int> &ranks, size_t i) {
  float acc = value(ranks[0], i);
  for (size_t k = 1; k < ranks.size(); ++k)
    acc += value(ranks[k], i);
  return acc;
}

std::vector<int> allRanks(int n) {
  std::vector<int> v(size_t(n), 0);
  for (int i = 0; i < n; ++i)
    v[size_t(i)] = i;
  return v;
}

bool sameBits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) {
           return std::bit_cast<uint32_t>(x) == std::bit_cast<uint32_t>(y);
         });
}

void checkAllReduceSum(int n, size_t count) {
  std::vector<std::vector<float>> results(static_cast<size_t>(n));
  runRanks(n, 20s, [&](int r, World &world) {
    auto data = rankData(r, count);
    Status s = world.world().allReduce(data.data(), count, DType::F32, ReduceOp::Sum);
    ASSERT_TRUE(s.isOk()) << s.message();
    results[size_t(r)] = std::move(data);
  });
  std::vector<float> expected(count);
  size_t orderMatters = 0;
  for (size_t i = 0; i < count; ++i) {
    expected[i] = rankOrderSum(allRanks(n), i);
    float reversed = value(n - 1, i);
    for (int k = n - 2; k >= 0; --k)
      reversed += value(k, i);
    orderMatters += reversed != expected[i];
  }
  for (int r = 0; r < n; ++r)
    EXPECT_TRUE(sameBits(results[size_t(r)], expected)) << "rank " << r << " of " << n;
  // With 3+ ranks the data must make the order visible, or the test proves nothing.
  if (n >= 3) {
    EXPECT_GT(orderMatters, count / 20);
  }
}

} // namespace

TEST(Communicator, AllReduceSumIsTheRankOrderSumOnEveryRank) {
  REQUIRE_GLOO();
  for (int n : {2, 3, 4})
    checkAllReduceSum(n, 1003);
}

TEST(Communicator, AllReduceSumSpansSeveralScratchPieces) {
  REQUIRE_GLOO();
  // 3 ranks gather at most 2^22 / 3 floats at a time: this takes two pieces.
  checkAllReduceSum(3, (size_t(1) << 22) / 3 + 5);
}

TEST(Communicator, AllReduceMaxPropagatesNaN) {
  REQUIRE_GLOO();
  const size_t count = 257;
  for (int n : {2, 3, 4}) {
    std::vector<std::vector<float>> results(static_cast<size_t>(n));
    runRanks(n, 20s, [&](int r, World &world) {
      auto data = rankData(r, count);
      if (r == n - 1)
        data[7] = std::nanf("");
      Status s = world.world().allReduce(data.data(), count, DType::F32, ReduceOp::Max);
      ASSERT_TRUE(s.isOk()) << s.message();
      results[size_t(r)] = std::move(data);
    });
    for (int r = 0; r < n; ++r) {
      ASSERT_EQ(results[size_t(r)].size(), count);
      EXPECT_TRUE(std::isnan(results[size_t(r)][7])) << "rank " << r;
      for (size_t i = 0; i < count; ++i) {
        if (i == 7)
          continue;
        float expected = value(0, i);
        for (int k = 1; k < n; ++k)
          expected = std::max(expected, value(k, i));
        EXPECT_EQ(results[size_t(r)][i], expected) << "rank " << r << " element " << i;
      }
    }
  }
}

TEST(Communicator, AllGatherConcatenatesInRankOrder) {
  REQUIRE_GLOO();
  const size_t count = 101;
  runRanks(4, 20s, [&](int r, World &world) {
    auto in = rankData(r, count);
    std::vector<float> out(count * 4, -1.0f);
    Status s = world.world().allGather(in.data(), out.data(), count, DType::F32);
    ASSERT_TRUE(s.isOk()) << s.message();
    // In place: this rank's slot of the output is the input.
    std::vector<float> inPlace(count * 4, 0.0f);
    std::copy(in.begin(), in.end(), inPlace.begin() + long(r * count));
    s = world.world().allGather(inPlace.data() + r * count, inPlace.data(), count, DType::F32);
    ASSERT_TRUE(s.isOk()) << s.message();
    for (int k = 0; k < 4; ++k)
      for (size_t i = 0; i < count; ++i) {
        ASSERT_EQ(out[k * count + i], value(k, i)) << "rank " << r << " slot " << k;
        ASSERT_EQ(inPlace[k * count + i], value(k, i)) << "rank " << r << " slot " << k;
      }
  });
}

TEST(Communicator, BroadcastCopiesTheRootEverywhere) {
  REQUIRE_GLOO();
  const size_t count = 77;
  runRanks(3, 20s, [&](int r, World &world) {
    for (int root = 0; root < 3; ++root) {
      auto data = r == root ? rankData(root, count) : std::vector<float>(count, -5.0f);
      Status s = world.world().broadcast(data.data(), count, DType::F32, root);
      ASSERT_TRUE(s.isOk()) << s.message();
      EXPECT_TRUE(sameBits(data, rankData(root, count))) << "rank " << r << " root " << root;
    }
    Status bad = world.world().broadcast(nullptr, 0, DType::F32, 3);
    ASSERT_FALSE(bad.isOk());
    EXPECT_NE(bad.message().find("root 3 is not a group rank (0..2)"), std::string::npos)
        << bad.message();
  });
}

TEST(Communicator, BarrierWaitsForEveryRank) {
  REQUIRE_GLOO();
  std::atomic<int> arrived{0};
  runRanks(3, 20s, [&](int r, World &world) {
    std::this_thread::sleep_for(milliseconds(100 * r));
    arrived++;
    Status s = world.world().barrier();
    ASSERT_TRUE(s.isOk()) << s.message();
    EXPECT_EQ(arrived.load(), 3) << "rank " << r << " left the barrier early";
  });
}

// Megatron-style groups of 4 ranks: tp {0,1},{2,3} and dp {0,2},{1,3}, all
// used at the same time, interleaved with the world group.
TEST(Communicator, SubgroupsWorkSideBySide) {
  REQUIRE_GLOO();
  const size_t count = 513;
  runRanks(4, 20s, [&](int r, World &world) {
    std::vector<int> tpRanks = {r / 2 * 2, r / 2 * 2 + 1}, dpRanks = {r % 2, r % 2 + 2};
    auto tp = world.group("tp", tpRanks);
    ASSERT_TRUE(tp.isOk()) << tp.message();
    auto dp = world.group("dp", dpRanks);
    ASSERT_TRUE(dp.isOk()) << dp.message();
    EXPECT_EQ((*tp)->rank(), r % 2);
    EXPECT_EQ((*dp)->rank(), r / 2);
    EXPECT_EQ((*dp)->worldRanks(), dpRanks);
    for (int round = 0; round < 3; ++round) {
      auto a = rankData(r, count), b = rankData(r, count), c = rankData(r, count);
      ASSERT_TRUE((*tp)->allReduce(a.data(), count, DType::F32, ReduceOp::Sum).isOk());
      ASSERT_TRUE((*dp)->allReduce(b.data(), count, DType::F32, ReduceOp::Sum).isOk());
      ASSERT_TRUE(world.world().allReduce(c.data(), count, DType::F32, ReduceOp::Sum).isOk());
      for (size_t i = 0; i < count; ++i) {
        ASSERT_EQ(a[i], rankOrderSum(tpRanks, i)) << "tp, rank " << r;
        ASSERT_EQ(b[i], rankOrderSum(dpRanks, i)) << "dp, rank " << r;
        ASSERT_EQ(c[i], rankOrderSum(allRanks(4), i)) << "world, rank " << r;
      }
      std::vector<float> gathered(2 * count);
      auto mine = rankData(r, count);
      ASSERT_TRUE((*dp)->allGather(mine.data(), gathered.data(), count, DType::F32).isOk());
      EXPECT_EQ(gathered[count], value(dpRanks[1], 0));
    }
  });
}

TEST(Communicator, GroupsOfOneAndBadGroups) {
  REQUIRE_GLOO();
  runRanks(2, 20s, [&](int r, World &world) {
    auto solo = world.group("solo", {r});
    ASSERT_TRUE(solo.isOk()) << solo.message();
    auto data = rankData(r, 9);
    ASSERT_TRUE((*solo)->allReduce(data.data(), 9, DType::F32, ReduceOp::Sum).isOk());
    EXPECT_TRUE(sameBits(data, rankData(r, 9)));

    auto other = world.group("other", {1 - r});
    ASSERT_FALSE(other.isOk());
    EXPECT_NE(other.message().find("[rank " + std::to_string(r) + "/2] group 'other' (ranks " +
                                   std::to_string(1 - r) + "): rank " + std::to_string(r) +
                                   " is not a member"),
              std::string::npos)
        << other.message();
    auto twice = world.group("twice", {0, 1, 1});
    ASSERT_FALSE(twice.isOk());
    EXPECT_NE(twice.message().find("rank 1 is listed twice"), std::string::npos);
    auto outside = world.group("outside", {0, 1, 2});
    ASSERT_FALSE(outside.isOk());
    EXPECT_NE(outside.message().find("ranks must be in [0, 2)"), std::string::npos);
    // The same group made again gets fresh connections.
    auto again = world.group("world", {0, 1});
    ASSERT_TRUE(again.isOk()) << again.message();
    ASSERT_TRUE((*again)->barrier().isOk());
  });
}

TEST(Communicator, RanksThatDisagreeGetAnErrorNamingBothCalls) {
  REQUIRE_GLOO();
  std::vector<std::string> counts(2), ops(2);
  runRanks(2, 20s, [&](int r, World &world) {
    std::vector<float> data(1000, 1.0f);
    Status s = world.world().allReduce(data.data(), r == 0 ? 100 : 1000, DType::F32, ReduceOp::Sum);
    ASSERT_FALSE(s.isOk());
    counts[size_t(r)] = s.message();
    auto fresh = world.group("fresh", {0, 1});
    ASSERT_TRUE(fresh.isOk()) << fresh.message();
    s = r == 0 ? (*fresh)->barrier() : (*fresh)->broadcast(data.data(), 4, DType::F32, 1);
    ASSERT_FALSE(s.isOk());
    ops[size_t(r)] = s.message();
  });
  EXPECT_EQ(counts[0], "[rank 0/2] all_reduce over group 'world' (ranks 0,1): the ranks "
                       "disagree: rank 0 makes all_reduce(sum) of 100 floats as its call #0, "
                       "rank 1 makes all_reduce(sum) of 1000 floats as its call #0");
  EXPECT_EQ(counts[1], "[rank 1/2] all_reduce over group 'world' (ranks 0,1): the ranks "
                       "disagree: rank 1 makes all_reduce(sum) of 1000 floats as its call #0, "
                       "rank 0 makes all_reduce(sum) of 100 floats as its call #0");
  EXPECT_EQ(ops[0], "[rank 0/2] barrier over group 'fresh' (ranks 0,1): the ranks disagree: "
                    "rank 0 makes barrier as its call #0, rank 1 makes broadcast of 4 floats "
                    "from group rank 1 as its call #0");
  EXPECT_NE(ops[1].find("[rank 1/2] broadcast over group 'fresh'"), std::string::npos)
      << ops[1];
}

TEST(Communicator, PeerThatNeverJoinsTimesOut) {
  REQUIRE_GLOO();
  std::atomic<int> done{0};
  std::vector<std::string> errors(3);
  std::vector<double> seconds(3, 0.0);
  runRanks(3, 1s, [&](int r, World &world) {
    if (r == 2) { // connected, alive, but never calls all_reduce
      auto giveUp = Clock::now() + 20s;
      while (done.load() < 2 && Clock::now() < giveUp)
        std::this_thread::sleep_for(10ms);
      return;
    }
    auto data = rankData(r, 64);
    auto start = Clock::now();
    Status s = world.world().allReduce(data.data(), data.size(), DType::F32, ReduceOp::Sum);
    seconds[size_t(r)] = std::chrono::duration<double>(Clock::now() - start).count();
    done++;
    ASSERT_FALSE(s.isOk());
    errors[size_t(r)] = s.message();
    // A failed communicator refuses further calls at once.
    Status again = world.world().barrier();
    ASSERT_FALSE(again.isOk());
    EXPECT_NE(again.message().find("failed earlier"), std::string::npos) << again.message();
  });
  bool someoneTimedOut = false;
  for (int r = 0; r < 2; ++r) {
    std::string head = "[rank " + std::to_string(r) +
                       "/3] all_reduce over group 'world' (ranks 0,1,2): ";
    EXPECT_EQ(errors[size_t(r)].rfind(head, 0), 0u) << errors[size_t(r)];
    EXPECT_NE(errors[size_t(r)].find("1 s"), std::string::npos) << errors[size_t(r)];
    someoneTimedOut |= errors[size_t(r)].find("no answer from a peer within 1 s") !=
                       std::string::npos;
    EXPECT_LT(seconds[size_t(r)], 4.0) << "rank " << r;
  }
  EXPECT_TRUE(someoneTimedOut) << errors[0] << "\n" << errors[1];
}

TEST(Communicator, PeerThatLeavesFailsTheOthersBeforeTheTimeout) {
  REQUIRE_GLOO();
  std::vector<std::string> errors(3);
  std::vector<double> seconds(3, 0.0);
  runRanks(3, 30s, [&](int r, World &world) {
    // Everyone is connected once the barrier passes.
    ASSERT_TRUE(world.world().barrier().isOk());
    if (r == 2) // returns: its World closes its connections
      return;
    auto data = rankData(r, 64);
    auto start = Clock::now();
    Status s = world.world().allReduce(data.data(), data.size(), DType::F32, ReduceOp::Sum);
    seconds[size_t(r)] = std::chrono::duration<double>(Clock::now() - start).count();
    ASSERT_FALSE(s.isOk());
    errors[size_t(r)] = s.message();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[size_t(r)].find("all_reduce over group 'world'"), std::string::npos)
        << errors[size_t(r)];
    EXPECT_LT(seconds[size_t(r)], 10.0) << "rank " << r << ": " << errors[size_t(r)];
  }
}

TEST(Communicator, SingleRankWorldNeedsNoGloo) {
  RankInfo info; // rank 0 of 1, no rendezvous
  auto world = World::connect(info, 1s);
  ASSERT_TRUE(world.isOk()) << world.message();
  Communicator &comm = (*world)->world();
  EXPECT_EQ(comm.size(), 1);
  EXPECT_EQ(comm.name(), "world");
  std::vector<float> data = {1.5f, -2.0f}, out(2);
  ASSERT_TRUE(comm.allReduce(data.data(), 2, DType::F32, ReduceOp::Sum).isOk());
  EXPECT_EQ(data, (std::vector<float>{1.5f, -2.0f}));
  ASSERT_TRUE(comm.allGather(data.data(), out.data(), 2, DType::F32).isOk());
  EXPECT_EQ(out, data);
  ASSERT_TRUE(comm.broadcast(data.data(), 2, DType::F32, 0).isOk());
  ASSERT_TRUE(comm.barrier().isOk());
}

TEST(Communicator, ConnectRejectsBadArguments) {
  RankInfo info;
  info.rank = 1;
  info.worldSize = 2;
  auto noTimeout = World::connect(info, 0ms);
  ASSERT_FALSE(noTimeout.isOk());
  EXPECT_NE(noTimeout.message().find("timeout must be positive"), std::string::npos);
  if (!World::multiRankSupported()) {
    auto noGloo = World::connect(info, 1s);
    ASSERT_FALSE(noGloo.isOk());
    EXPECT_NE(noGloo.message().find("this build has no Gloo"), std::string::npos);
    return;
  }
  auto noDir = World::connect(info, 1s);
  ASSERT_FALSE(noDir.isOk());
  EXPECT_NE(noDir.message().find("[rank 1/2] no place to meet the other ranks: set MASTER_ADDR "
                                 "and MASTER_PORT"),
            std::string::npos)
      << noDir.message();
  info.rendezvous = "/nonexistent/mt-rendezvous";
  auto missingDir = World::connect(info, 1s);
  ASSERT_FALSE(missingDir.isOk());
  EXPECT_NE(missingDir.message().find("'/nonexistent/mt-rendezvous' does not exist"),
            std::string::npos);
}

TEST(Communicator, RendezvousWithoutPeersTimesOut) {
  REQUIRE_GLOO();
  TempDir dir;
  RankInfo info;
  info.rank = 0;
  info.worldSize = 2;
  info.rendezvous = dir.path;
  info.host = "127.0.0.1";
  auto start = Clock::now();
  auto world = World::connect(info, 500ms);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_FALSE(world.isOk());
  EXPECT_NE(world.message().find("[rank 0/2] not every rank joined (are all 2 ranks running, "
                                 "with the same settings?): no rendezvous key 'join/1' in '" +
                                 dir.path + "' within 500 ms"),
            std::string::npos)
      << world.message();
  EXPECT_LT(seconds, 3.0);
}

// The rank-order sum divided by the group size: what the CPU backend's dp
// gradient averaging computed before Avg existed (sum, then / size).
TEST(Communicator, AllReduceAvgIsTheRankOrderSumOverTheSize) {
  REQUIRE_GLOO();
  const size_t count = 301;
  runRanks(3, 20s, [&](int r, World &world) {
    auto data = rankData(r, count);
    Status s = world.world().allReduce(data.data(), count, DType::F32, ReduceOp::Avg);
    ASSERT_TRUE(s.isOk()) << s.message();
    for (size_t i = 0; i < count; ++i)
      ASSERT_EQ(data[i], rankOrderSum(allRanks(3), i) / 3.0f) << "rank " << r << " element " << i;
  });
}

TEST(Communicator, ReduceScatterKeepsThisRanksBlockOfTheSum) {
  REQUIRE_GLOO();
  const size_t count = 57; // per rank
  runRanks(3, 20s, [&](int r, World &world) {
    auto in = rankData(r, count * 3);
    std::vector<float> out(count, -1.0f);
    Status s = world.world().reduceScatter(in.data(), out.data(), count, DType::F32,
                                           ReduceOp::Sum);
    ASSERT_TRUE(s.isOk()) << s.message();
    for (size_t i = 0; i < count; ++i)
      ASSERT_EQ(out[i], rankOrderSum(allRanks(3), size_t(r) * count + i))
          << "rank " << r << " element " << i;
  });
}

// bf16 travels as bytes (gathers, broadcasts, messages); reductions refuse it.
TEST(Communicator, Bf16MovesButDoesNotReduce) {
  REQUIRE_GLOO();
  runRanks(2, 20s, [&](int r, World &world) {
    std::vector<uint16_t> mine = {uint16_t(0x3f80 + r), uint16_t(0xbf00 + r), uint16_t(r)};
    std::vector<uint16_t> all(6, 0);
    Status s = world.world().allGather(mine.data(), all.data(), 3, DType::BF16);
    ASSERT_TRUE(s.isOk()) << s.message();
    EXPECT_EQ(all, (std::vector<uint16_t>{0x3f80, 0xbf00, 0, 0x3f81, 0xbf01, 1}));
    std::vector<uint16_t> root = r == 1 ? mine : std::vector<uint16_t>(3, 7);
    ASSERT_TRUE(world.world().broadcast(root.data(), 3, DType::BF16, 1).isOk());
    EXPECT_EQ(root, (std::vector<uint16_t>{0x3f81, 0xbf01, 1}));
    Status sum = world.world().allReduce(mine.data(), 3, DType::BF16, ReduceOp::Sum);
    ASSERT_FALSE(sum.isOk());
    EXPECT_NE(sum.message().find("all_reduce over group 'world' (ranks 0,1): the CPU backend "
                                 "reduces fp32 only, got bf16"),
              std::string::npos)
        << sum.message();
  });
}

// Messages between two members of a larger group, in both directions and
// in order; the third member takes no part.
TEST(Communicator, SendRecvPairsTheKthMessages) {
  REQUIRE_GLOO();
  const size_t count = 1000;
  runRanks(3, 20s, [&](int r, World &world) {
    Communicator &comm = world.world();
    // The bystander stays connected until the pair is done: a member that
    // leaves early closes its connections, which its peers may see as a
    // failure.
    if (r == 2) {
      EXPECT_TRUE(comm.barrier().isOk());
      return;
    }
    const int peer = 1 - r;
    for (int round = 0; round < 3; ++round) {
      auto mine = rankData(r + 10 * round, count);
      std::vector<float> theirs(count, 0.0f);
      // Rank 0 sends first, rank 1 receives first: no deadlock either way.
      Status a = r == 0 ? comm.send(mine.data(), count, DType::F32, peer)
                        : comm.recv(theirs.data(), count, DType::F32, peer);
      Status b = r == 0 ? comm.recv(theirs.data(), count, DType::F32, peer)
                        : comm.send(mine.data(), count, DType::F32, peer);
      ASSERT_TRUE(a.isOk()) << a.message();
      ASSERT_TRUE(b.isOk()) << b.message();
      EXPECT_TRUE(sameBits(theirs, rankData(peer + 10 * round, count))) << "rank " << r;
    }
    Status self = comm.send(nullptr, 0, DType::F32, r);
    ASSERT_FALSE(self.isOk());
    EXPECT_NE(self.message().find("peer " + std::to_string(r) +
                                  " is not a group rank (0..2) other than this rank's"),
              std::string::npos)
        << self.message();
    EXPECT_TRUE(comm.barrier().isOk());
  });
}

// The host calls of a host communicator are its data calls on fp32.
TEST(Communicator, HostCallsOfAHostCommunicator) {
  REQUIRE_GLOO();
  runRanks(2, 20s, [&](int r, World &world) {
    Communicator &comm = world.world();
    EXPECT_EQ(comm.memory(), Memory::Host);
    float loss = float(r + 1);
    ASSERT_TRUE(comm.allReduceHost(&loss, 1, ReduceOp::Avg).isOk());
    EXPECT_EQ(loss, 1.5f);
    float both[2] = {0, 0}, mine = float(10 * r);
    ASSERT_TRUE(comm.allGatherHost(&mine, both, 1).isOk());
    EXPECT_EQ(both[1], 10.0f);
    ASSERT_TRUE(comm.broadcastHost(&mine, 1, 1).isOk());
    EXPECT_EQ(mine, 10.0f);
  });
}

// Rank r sends (r + 2p) % 4 elements to rank p (zero counts included);
// element i of that block is 1000 r + 100 p + i.
TEST(Communicator, AllToAllVDeliversEachBlockToItsPeer) {
  REQUIRE_GLOO();
  const int n = 3;
  auto count = [](int from, int to) { return size_t((from + 2 * to) % 4); };
  auto element = [](int from, int to, size_t i) { return float(1000 * from + 100 * to + int(i)); };
  runRanks(n, 20s, [&](int r, World &world) {
    std::vector<size_t> send(n), recv(n);
    std::vector<float> in, out;
    for (int p = 0; p < n; ++p) {
      send[size_t(p)] = count(r, p);
      recv[size_t(p)] = count(p, r);
      for (size_t i = 0; i < count(r, p); ++i)
        in.push_back(element(r, p, i));
    }
    out.assign(size_t(std::accumulate(recv.begin(), recv.end(), size_t(0))), -1.0f);
    Status s = world.world().allToAllV(in.data(), send, out.data(), recv, DType::F32);
    ASSERT_TRUE(s.isOk()) << s.message();
    size_t at = 0;
    for (int from = 0; from < n; ++from)
      for (size_t i = 0; i < count(from, r); ++i, ++at)
        ASSERT_EQ(out[at], element(from, r, i)) << "rank " << r << " from " << from << " i " << i;
  });
}

// Rank 1 expects one element too many from rank 0: every rank fails, naming
// the pair, and nobody waits for a timeout.
TEST(Communicator, AllToAllVCountsThatDoNotPairUpFailEverywhere) {
  REQUIRE_GLOO();
  auto start = Clock::now();
  runRanks(2, 20s, [&](int r, World &world) {
    std::vector<size_t> send = {1, 1}, recv = {r == 1 ? size_t(2) : size_t(1), 1};
    std::vector<float> in(2, 1.0f), out(3);
    Status s = world.world().allToAllV(in.data(), send, out.data(), recv, DType::F32);
    ASSERT_FALSE(s.isOk());
    EXPECT_NE(s.message().find("group rank 0 sends 1 elements to group rank 1, which expects 2"),
              std::string::npos)
        << s.message();
  });
  EXPECT_LT(Clock::now() - start, 10s);
}
