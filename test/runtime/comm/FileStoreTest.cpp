// The rendezvous key-value store that bootstraps NCCL groups.
#include "runtime/comm/FileStore.h"
#include "test/runtime/comm/CommTestSupport.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using mt::comm::FileStore;
using namespace std::chrono_literals;

namespace {

using mt::commtest::TempDir;

TEST(FileStore, AValueSetByOneRankReachesAWaitingOne) {
  TempDir dir;
  auto writer = FileStore::open(dir.path, 5s), reader = FileStore::open(dir.path, 5s);
  ASSERT_TRUE(writer.isOk()) << writer.message();
  ASSERT_TRUE(reader.isOk()) << reader.message();
  std::vector<char> id = {'\0', 'n', '\xff', '/', 'x'}; // binary, like an ncclUniqueId
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(writer->set("nccl/dp.0/0,1/0/id", id).isOk());
  });
  auto got = reader->get("nccl/dp.0/0,1/0/id");
  later.join();
  ASSERT_TRUE(got.isOk()) << got.message();
  EXPECT_EQ(*got, id);
  // Keys that differ only in characters a file name cannot hold stay apart.
  ASSERT_TRUE(writer->set("a/b", {'1'}).isOk());
  ASSERT_TRUE(writer->set("a%2Fb", {'2'}).isOk());
  EXPECT_EQ(*reader->get("a/b"), std::vector<char>{'1'});
  EXPECT_EQ(*reader->get("a%2Fb"), std::vector<char>{'2'});
}

TEST(FileStore, AKeyOfAnEarlierJobIsAnError) {
  TempDir dir;
  auto store = FileStore::open(dir.path, 1s);
  ASSERT_TRUE(store.isOk());
  ASSERT_TRUE(store->set("world/id", {'a'}).isOk());
  auto again = store->set("world/id", {'b'});
  ASSERT_FALSE(again.isOk());
  EXPECT_NE(again.message().find("rendezvous key 'world/id' already exists"), std::string::npos)
      << again.message();
  EXPECT_EQ(*store->get("world/id"), std::vector<char>{'a'});
}

TEST(FileStore, WaitNamesTheMissingKeysAfterTheTimeout) {
  TempDir dir;
  auto store = FileStore::open(dir.path, 200ms);
  ASSERT_TRUE(store.isOk());
  ASSERT_TRUE(store->set("arrived/0", {}).isOk());
  auto start = std::chrono::steady_clock::now();
  auto s = store->wait({"arrived/0", "arrived/1", "arrived/2"});
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("no rendezvous key 'arrived/1', 'arrived/2' in '" + dir.path +
                             "' within 200 ms"),
            std::string::npos)
      << s.message();
  EXPECT_GE(seconds, 0.2);
  EXPECT_LT(seconds, 2.0);
}

TEST(FileStore, AKeyThatIsAFifoIsAnErrorNotAWait) {
  // Not a file a rank wrote (set renames regular files in); opening it to
  // read would wait for a writer past every timeout.
  TempDir dir;
  auto store = FileStore::open(dir.path, 1s);
  ASSERT_TRUE(store.isOk());
  const std::string fifo = dir.path + "/mt-world%2Fid"; // the file of key "world/id"
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto got = std::async(std::launch::async, [&] { return store->get("world/id"); });
  if (got.wait_for(10s) != std::future_status::ready) {
    ::close(::open(fifo.c_str(), O_WRONLY)); // the reader's open returns: the test can end
    FAIL() << "get() of a key that is a FIFO waited for a writer";
  }
  auto value = got.get();
  ASSERT_FALSE(value.isOk());
  EXPECT_NE(value.message().find("rendezvous key 'world/id' in '" + dir.path +
                                 "' is a device or pipe, not a file a rank wrote"),
            std::string::npos)
      << value.message();
}

TEST(FileStore, OpenChecksTheDirectoryAndTimeout) {
  auto missing = FileStore::open("/nonexistent/mt-rendezvous", 1s);
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.message().find("'/nonexistent/mt-rendezvous' does not exist (MT_RENDEZVOUS)"),
            std::string::npos);
  auto unset = FileStore::open("", 1s);
  ASSERT_FALSE(unset.isOk());
  EXPECT_NE(unset.message().find("no rendezvous directory (MT_RENDEZVOUS)"), std::string::npos);
  TempDir dir;
  auto zero = FileStore::open(dir.path, 0ms);
  ASSERT_FALSE(zero.isOk());
  EXPECT_NE(zero.message().find("timeout must be positive"), std::string::npos);
}

} // namespace
