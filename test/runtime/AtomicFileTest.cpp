// Tests of atomic file and directory replacement: the old content survives
// every failure, and no temporary file or directory is left behind.
#include "runtime/support/AtomicFile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

using mt::Status;
using namespace mt::io;
namespace fs = std::filesystem;

namespace {

std::string readAll(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeText(const fs::path &path, const std::string &text) {
  std::ofstream(path, std::ios::binary) << text;
}

class AtomicFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::path(::testing::TempDir()) /
           ("mt-atomic-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// Names of the entries directly in the test directory.
  std::set<std::string> entries() const {
    std::set<std::string> out;
    for (const fs::directory_entry &e : fs::directory_iterator(dir_))
      out.insert(e.path().filename().string());
    return out;
  }

  fs::path dir_;
};

Status writeString(std::ostream &os, const std::string &text) {
  os << text;
  return Status::ok();
}

//===-- Files -------------------------------------------------------------===//

TEST_F(AtomicFileTest, WritesNewFileWithoutLeftovers) {
  fs::path p = dir_ / "out.bin";
  Status s = writeFileAtomically(p.string(), [](std::ostream &os) {
    return writeString(os, "hello");
  });
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(readAll(p), "hello");
  EXPECT_EQ(entries(), (std::set<std::string>{"out.bin"}));
}

TEST_F(AtomicFileTest, ReplacesExistingFile) {
  fs::path p = dir_ / "out.bin";
  writeText(p, "old content that is longer than the new one");
  ASSERT_TRUE(writeFileAtomically(p.string(), [](std::ostream &os) {
                return writeString(os, "new");
              }).isOk());
  EXPECT_EQ(readAll(p), "new");
  EXPECT_EQ(entries(), (std::set<std::string>{"out.bin"}));
}

TEST_F(AtomicFileTest, WritesSmallAndLargeBlocksInOrder) {
  // Mixes buffered small writes with blocks larger than the stream buffer.
  std::string expected;
  fs::path p = dir_ / "big.bin";
  ASSERT_TRUE(writeFileAtomically(p.string(), [&](std::ostream &os) {
                for (int i = 0; i < 5; ++i) {
                  std::string small(100 + i, char('a' + i));
                  std::string large((1 << 17) + i, char('A' + i));
                  os << small;
                  os.write(large.data(), std::streamsize(large.size()));
                  expected += small + large;
                }
                return Status::ok();
              }).isOk());
  EXPECT_EQ(readAll(p), expected);
}

TEST_F(AtomicFileTest, FailingWriterKeepsOldFileAndRemovesTemp) {
  fs::path p = dir_ / "ckpt.bin";
  writeText(p, "previous");
  Status s = writeFileAtomically(p.string(), [](std::ostream &os) {
    os << std::string(1 << 20, 'x'); // reaches the temporary file on disk
    return Status::error("disk quota simulated");
  });
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "disk quota simulated");
  EXPECT_EQ(readAll(p), "previous");
  EXPECT_EQ(entries(), (std::set<std::string>{"ckpt.bin"}));
}

TEST_F(AtomicFileTest, ThrowingWriterKeepsOldFileAndRemovesTemp) {
  fs::path p = dir_ / "ckpt.bin";
  writeText(p, "previous");
  Status s = writeFileAtomically(p.string(), [](std::ostream &os) -> Status {
    os << "partial";
    throw std::runtime_error("serializer exploded");
  });
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("serializer exploded"), std::string::npos) << s.message();
  EXPECT_EQ(readAll(p), "previous");
  EXPECT_EQ(entries(), (std::set<std::string>{"ckpt.bin"}));
}

TEST_F(AtomicFileTest, ReportsUnwritableLocation) {
  fs::path p = dir_ / "no-such-dir" / "f.bin";
  Status s = writeFileAtomically(p.string(), [](std::ostream &os) {
    return writeString(os, "x");
  });
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("cannot create temporary file"), std::string::npos);
  EXPECT_NE(s.message().find("no-such-dir"), std::string::npos) << s.message();
}

//===-- Directories -------------------------------------------------------===//

TEST_F(AtomicFileTest, ReplacesDirectoryWithoutLeftovers) {
  fs::path ckpt = dir_ / "ckpt";
  fs::create_directories(ckpt / "sub");
  writeText(ckpt / "old.txt", "old");
  Status s = replaceDirectoryAtomically(ckpt.string(), [](const std::string &tmp) {
    fs::create_directories(fs::path(tmp) / "nested");
    writeText(fs::path(tmp) / "nested" / "new.txt", "new");
    return writeFileAtomically(tmp + "/meta.json", [](std::ostream &os) {
      return writeString(os, "{}");
    });
  });
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(readAll(ckpt / "nested" / "new.txt"), "new");
  EXPECT_EQ(readAll(ckpt / "meta.json"), "{}");
  EXPECT_FALSE(fs::exists(ckpt / "old.txt"));
  EXPECT_EQ(entries(), (std::set<std::string>{"ckpt"}));
}

TEST_F(AtomicFileTest, CreatesMissingDirectoryAndAcceptsTrailingSlash) {
  fs::path ckpt = dir_ / "fresh";
  Status s = replaceDirectoryAtomically(ckpt.string() + "/", [](const std::string &tmp) {
    writeText(fs::path(tmp) / "a.txt", "a");
    return Status::ok();
  });
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(readAll(ckpt / "a.txt"), "a");
  EXPECT_EQ(entries(), (std::set<std::string>{"fresh"}));
}

TEST_F(AtomicFileTest, FailingFillKeepsOldDirectory) {
  fs::path ckpt = dir_ / "ckpt";
  fs::create_directories(ckpt);
  writeText(ckpt / "weights.bin", "step 100");
  for (bool throws : {false, true}) {
    Status s = replaceDirectoryAtomically(ckpt.string(), [&](const std::string &tmp) {
      writeText(fs::path(tmp) / "weights.bin", "step 200, half written");
      if (throws)
        throw std::runtime_error("crash in fill");
      return Status::error("out of disk");
    });
    ASSERT_FALSE(s.isOk());
    EXPECT_NE(s.message().find(throws ? "crash in fill" : "out of disk"), std::string::npos);
    EXPECT_EQ(readAll(ckpt / "weights.bin"), "step 100");
    EXPECT_EQ(entries(), (std::set<std::string>{"ckpt"}));
  }
}

TEST_F(AtomicFileTest, RecoveryRestoresOldDirectoryAfterCrashBetweenRenames) {
  // What a crash after `ckpt` was moved away, before the new one moved in,
  // leaves (999999991: past any pid_max, so no process of this machine's).
  fs::create_directories(dir_ / "ckpt.old.999999991");
  writeText(dir_ / "ckpt.old.999999991" / "weights.bin", "step 100");
  fs::create_directories(dir_ / "ckpt.tmp.999999991");
  writeText(dir_ / "ckpt.tmp.999999991" / "weights.bin", "step 200");
  Status s = recoverInterruptedReplace((dir_ / "ckpt").string());
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(readAll(dir_ / "ckpt" / "weights.bin"), "step 100");
  EXPECT_EQ(entries(), (std::set<std::string>{"ckpt"}));
}

TEST_F(AtomicFileTest, RecoveryRemovesOnlyOurLeftovers) {
  fs::create_directories(dir_ / "ckpt");
  writeText(dir_ / "ckpt" / "weights.bin", "current");
  fs::create_directories(dir_ / "ckpt.tmp.999999992"); // processes that are gone
  fs::create_directories(dir_ / "ckpt.old.999999993");
  fs::create_directories(dir_ / "ckpt.tmp.backup"); // not a pid: someone else's
  fs::create_directories(dir_ / "ckpt2.tmp.19");    // another directory's
  Status s = recoverInterruptedReplace((dir_ / "ckpt").string());
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(readAll(dir_ / "ckpt" / "weights.bin"), "current");
  EXPECT_EQ(entries(), (std::set<std::string>{"ckpt", "ckpt.tmp.backup", "ckpt2.tmp.19"}));
  // Nothing to do the second time.
  ASSERT_TRUE(recoverInterruptedReplace((dir_ / "ckpt").string()).isOk());
  EXPECT_EQ(entries().size(), 3u);
}

// A save in progress in another process (its pid runs: here this test's
// parent) is not a leftover: another process's recovery, such as mtrun
// --check's, leaves it alone. This process's own pid is no save of its own
// in progress (recovery runs before one), so that one goes.
TEST_F(AtomicFileTest, RecoveryLeavesARunningProcesssReplaceAlone) {
  const std::string live = std::to_string(long(::getppid()));
  const std::string self = std::to_string(long(::getpid()));
  fs::create_directories(dir_ / "ckpt");
  fs::create_directories(dir_ / ("ckpt.tmp." + live));
  fs::create_directories(dir_ / ("ckpt.old." + live));
  fs::create_directories(dir_ / ("ckpt.tmp." + self));
  ASSERT_TRUE(recoverInterruptedReplace((dir_ / "ckpt").string()).isOk());
  EXPECT_EQ(entries(), (std::set<std::string>{"ckpt", "ckpt.tmp." + live, "ckpt.old." + live}));
  // Between its two renames: `ckpt` missing, the running process's
  // .old.<pid> is not restored under it.
  fs::remove_all(dir_ / "ckpt");
  ASSERT_TRUE(recoverInterruptedReplace((dir_ / "ckpt").string()).isOk());
  EXPECT_FALSE(fs::exists(dir_ / "ckpt"));
}

} // namespace
