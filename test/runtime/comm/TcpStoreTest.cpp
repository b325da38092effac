// TcpStore and openStore over TCP: ranks as threads meet at 127.0.0.1 and a
// free port with no shared directory; the errors for nobody listening, a
// missing rank, a wrong world size and rank 0 going away come within the
// timeout and name the rank and the store's address.
#include "runtime/comm/TcpStore.h"
#include "test/runtime/comm/CommTestSupport.h"

#include <gtest/gtest.h>

#include <functional>
#include <latch>
#include <thread>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace mt::comm;
using mt::commtest::freeLoopbackPort;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

RankInfo rankAt(int rank, int worldSize, int port) {
  RankInfo info;
  info.rank = rank;
  info.worldSize = worldSize;
  info.localRank = rank;
  info.storeAddr = "127.0.0.1";
  info.storePort = port;
  info.storeSource = "MASTER_ADDR:MASTER_PORT";
  info.source = "torchrun";
  return info;
}

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

// Runs body(rank) on one thread per rank.
void onThreads(int n, const std::function<void(int)> &body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back(body, r);
  for (auto &t : threads)
    t.join();
}

} // namespace

TEST(TcpStore, RanksMeetAndExchangeValues) {
  const int port = freeLoopbackPort(), n = 3;
  std::latch done(n);
  onThreads(n, [&](int r) {
    auto store = openStore(rankAt(r, n, port), 20s);
    ASSERT_TRUE(store.isOk()) << store.message();
    EXPECT_NE((*store)->describe().find("127.0.0.1:" + std::to_string(port) +
                                        " (MASTER_ADDR:MASTER_PORT, served by rank 0)"),
              std::string::npos);
    std::string mine = "value of rank " + std::to_string(r);
    ASSERT_TRUE((*store)->set("id/" + std::to_string(r), {mine.begin(), mine.end()}).isOk());
    for (int k = 0; k < n; ++k) {
      auto value = (*store)->get("id/" + std::to_string(k));
      ASSERT_TRUE(value.isOk()) << value.message();
      EXPECT_EQ(std::string(value->begin(), value->end()), "value of rank " + std::to_string(k));
    }
    ASSERT_TRUE((*store)->wait({"id/0", "id/1", "id/2"}).isOk());
    // A key is written once.
    if (r == 0) {
      auto again = (*store)->set("id/0", {'x'});
      ASSERT_FALSE(again.isOk());
      EXPECT_TRUE(contains(again.message(), "key 'id/0' was set before")) << again.message();
    }
    done.arrive_and_wait(); // rank 0's server goes with its store
  });
}

TEST(TcpStore, NobodyListeningIsAnErrorWithinTheTimeout) {
  const int port = freeLoopbackPort();
  auto start = Clock::now();
  auto store = openStore(rankAt(1, 2, port), 500ms);
  ASSERT_FALSE(store.isOk());
  EXPECT_EQ(store.message(),
            "[rank 1/2] rendezvous store 127.0.0.1:" + std::to_string(port) +
                " (MASTER_ADDR:MASTER_PORT, served by rank 0): cannot connect within 500 ms: "
                "Connection refused (is rank 0 running, on that host, with the same port?)");
  EXPECT_LT(secondsSince(start), 3.0);
}

TEST(TcpStore, AMissingRankIsNamedAtTheTimeout) {
  const int port = freeLoopbackPort();
  auto start = Clock::now();
  auto store = openStore(rankAt(0, 3, port), 700ms);
  ASSERT_FALSE(store.isOk());
  EXPECT_TRUE(contains(store.message(), "[rank 0/3] not every rank joined")) << store.message();
  EXPECT_TRUE(contains(store.message(), "no key 'join/1', 'join/2' within 700 ms"))
      << store.message();
  EXPECT_LT(secondsSince(start), 4.0);
}

TEST(TcpStore, AWrongWorldSizeFailsEveryRankAtOnce) {
  const int port = freeLoopbackPort();
  std::vector<std::string> errors(2);
  auto start = Clock::now();
  onThreads(2, [&](int r) {
    // Rank 1 believes the job has 3 ranks, rank 0 that it has 2.
    auto store = openStore(rankAt(r, r == 0 ? 2 : 3, port), 20s);
    ASSERT_FALSE(store.isOk()) << "rank " << r;
    errors[size_t(r)] = store.message();
  });
  EXPECT_LT(secondsSince(start), 10.0) << "well before the 20 s timeout";
  for (const std::string &e : errors)
    EXPECT_TRUE(contains(e, "rank 1 was started with a world size of 3, rank 0 with 2: every "
                            "rank needs the same"))
        << e;
  EXPECT_TRUE(contains(errors[0], "[rank 0/2]")) << errors[0];
  EXPECT_TRUE(contains(errors[1], "[rank 1/3]")) << errors[1];
}

TEST(TcpStore, ARankStartedTwiceFailsTheStore) {
  const int port = freeLoopbackPort();
  std::vector<std::string> errors(3);
  std::latch done(3);
  onThreads(3, [&](int t) {
    auto store = openStore(rankAt(t == 2 ? 1 : t, 2, port), 20s);
    if (!store.isOk())
      errors[size_t(t)] = store.message();
    done.arrive_and_wait(); // rank 0 serves until every process has its answer
  });
  // Whichever rank-1 process joined second fails the store.
  EXPECT_TRUE(contains(errors[1] + errors[2], "two processes joined as rank 1"))
      << errors[1] << " | " << errors[2];
}

TEST(TcpStore, RankZeroGoingAwayEndsAWait) {
  const int port = freeLoopbackPort();
  std::string error;
  auto start = Clock::now();
  onThreads(2, [&](int r) {
    auto store = openStore(rankAt(r, 2, port), 20s);
    ASSERT_TRUE(store.isOk()) << store.message();
    if (r == 0) {
      std::this_thread::sleep_for(200ms);
      store->reset(); // rank 0 exits: its server and connections close
      return;
    }
    auto value = (*store)->get("never-set");
    ASSERT_FALSE(value.isOk());
    error = value.message();
  });
  EXPECT_TRUE(contains(error, "[rank 1/2] rendezvous store 127.0.0.1:")) << error;
  EXPECT_TRUE(contains(error, "rank 0 is exiting (see its error) with key 'never-set' still missing"))
      << error;
  EXPECT_LT(secondsSince(start), 10.0);
}

TEST(TcpStore, APortInUseIsNamed) {
  const int port = freeLoopbackPort();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  auto store = TcpStore::connect(rankAt(0, 2, port), 1s);
  ::close(fd);
  ASSERT_FALSE(store.isOk());
  EXPECT_TRUE(contains(store.message(), "[rank 0/2] rendezvous store 127.0.0.1:" +
                                            std::to_string(port)))
      << store.message();
  EXPECT_TRUE(contains(store.message(), "cannot listen on port " + std::to_string(port) +
                                            ": Address already in use"))
      << store.message();
}
