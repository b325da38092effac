// Pipeline channels (runtime/exec/PipelineChannels.h) between two stages,
// each a thread with its own RankContext: messages keyed by (micro-batch,
// buffer) in any order, and every misuse or peer failure an error, never a
// hang.
#include "runtime/exec/PipelineChannels.h"

#include "runtime/comm/Gloo.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <thread>
#include <vector>

namespace mt::exec {
namespace {

using namespace std::chrono_literals;

/// Runs body(stage, context) for the two stages of a pp = 2 mesh, one
/// thread each, and joins them.
void runStages(const std::function<void(int64_t, RankContext &)> &body) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "mtpipe-XXXXXX").string();
  const std::string dir = mkdtemp(pattern.data());
  plan::Mesh mesh;
  mesh.set_pp(2), mesh.set_dp(1), mesh.set_cp(1), mesh.set_ep(1), mesh.set_tp(1);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      comm::RankInfo info;
      info.rank = r, info.worldSize = 2, info.localRank = r;
      info.rendezvous = dir;
      info.host = "127.0.0.1";
      auto rank = RankContext::create(mesh, info, 20s);
      ASSERT_TRUE(rank.isOk()) << rank.message();
      body(r, **rank);
    });
  for (auto &t : threads)
    t.join();
  std::filesystem::remove_all(dir);
}

#define REQUIRE_GLOO()                                                                   \
  if (!comm::World::multiRankSupported())                                                \
  GTEST_SKIP() << "built without Gloo"

TEST(PipelineChannels, DeliversMessagesByMicroBatchAndBufferInAnyOrder) {
  REQUIRE_GLOO();
  runStages([](int64_t stage, RankContext &rank) {
    HostPipelineChannels channels(rank);
    if (stage == 0) {
      for (int64_t m : {0, 1, 2}) {
        const std::vector<float> data = {float(m), float(10 * m), -1.5f};
        ASSERT_TRUE(channels.send(1, m, 7, data.data(), 3).isOk());
      }
      EXPECT_TRUE(channels.flush().isOk());
    } else {
      for (int64_t m : {2, 0, 1}) { // not the order they were sent in
        std::vector<float> got(3);
        Status s = channels.receive(0, m, 7, got.data(), 3);
        ASSERT_TRUE(s.isOk()) << s.message();
        EXPECT_EQ(got, (std::vector<float>{float(m), float(10 * m), -1.5f}));
      }
    }
  });
}

TEST(PipelineChannels, NamesAStageWithoutAChannel) {
  REQUIRE_GLOO();
  runStages([](int64_t stage, RankContext &rank) {
    HostPipelineChannels channels(rank);
    const float x = 1;
    Status s = channels.send(stage, 0, 1, &x, 1); // to itself: no channel
    ASSERT_FALSE(s.isOk());
    EXPECT_EQ(s.message(), "no pipeline channel to stage " + std::to_string(stage));
  });
}

TEST(PipelineChannels, NamesAMessageOfTheWrongSize) {
  REQUIRE_GLOO();
  runStages([](int64_t stage, RankContext &rank) {
    HostPipelineChannels channels(rank);
    if (stage == 0) {
      const std::vector<float> data(4, 1.0f);
      ASSERT_TRUE(channels.send(1, 3, 9, data.data(), 4).isOk());
      EXPECT_TRUE(channels.flush().isOk());
    } else {
      std::vector<float> got(3);
      Status s = channels.receive(0, 3, 9, got.data(), 3);
      ASSERT_FALSE(s.isOk());
      EXPECT_EQ(s.message(), "pipeline message from stage 0 has 4 values, expected 3");
    }
  });
}

TEST(PipelineChannels, APeerThatEndsItsRunFailsTheReceiveThatWaitsOnIt) {
  REQUIRE_GLOO();
  runStages([](int64_t stage, RankContext &rank) {
    if (stage == 0) {
      HostPipelineChannels channels(rank); // stops at once: the peer's run ended
      return;
    }
    HostPipelineChannels channels(rank);
    std::vector<float> got(3);
    auto wait = std::async(std::launch::async,
                           [&] { return channels.receive(0, 5, 2, got.data(), 3); });
    // Far longer than a local stop message takes. A receive that hangs
    // cannot be joined: the test process fails at once.
    if (wait.wait_for(20s) != std::future_status::ready) {
      ADD_FAILURE() << "receive still waits for a stage that has stopped";
      std::_Exit(1);
    }
    Status s = wait.get();
    ASSERT_FALSE(s.isOk());
    EXPECT_EQ(s.message(), "pipeline stage 0 stopped sending before micro-batch 5, buffer %2 "
                           "(its run ended or failed)");
  });
}

} // namespace
} // namespace mt::exec
