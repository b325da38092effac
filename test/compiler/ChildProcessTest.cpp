// runChild: exit codes, standard output, and the stop signals of mtc train
// forwarded to the child.
#include "compiler/driver/ChildProcess.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <pthread.h>
#include <unistd.h>

namespace mt {
namespace {

TEST(ChildProcess, ReturnsTheExitCodeAndWritesStandardOutput) {
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("mt-child-" + std::to_string(::getpid()) + ".txt"))
                              .string();
  auto code = runChild({"/bin/sh", "-c", "echo written; exit 3"}, out);
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 3);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "written\n");
  std::filesystem::remove(out);
  EXPECT_EQ(describeExit(3), "exit 3");
}

TEST(ChildProcess, AProgramThatCannotRunIsAnError) {
  auto code = runChild({"/nonexistent/mtrun", "plan"});
  ASSERT_FALSE(code);
  EXPECT_NE(code.message().find("cannot run /nonexistent/mtrun"), std::string::npos)
      << code.message();
}

TEST(ChildProcess, AChildEndedBySignalReturns128PlusIt) {
  auto code = runChild({"/bin/sh", "-c", "kill -KILL $$"});
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 128 + SIGKILL);
  EXPECT_EQ(describeExit(*code), "stopped by SIGKILL");
}

// SIGTERM to this process while it waits reaches the child (a sleep of a
// minute, which it ends at once), and this process lives on: the handler
// recorded it instead of the default action. A process-directed signal goes
// to any thread that does not block it (in mtc train, MLIR's pool too):
// here the waiting thread blocks it, so that another thread takes it.
TEST(ChildProcess, ForwardsSigtermToTheChild) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  std::thread sender([term] {
    ::pthread_sigmask(SIG_UNBLOCK, &term, nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(::getpid(), SIGTERM);
  });
  const auto start = std::chrono::steady_clock::now();
  auto code = runChild({"/bin/sleep", "60"});
  sender.join();
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 128 + SIGTERM);
  EXPECT_EQ(describeExit(*code), "stopped by SIGTERM");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

// A stop that comes as the child ends is not lost to the child's success:
// here the child itself signals this process, then exits 0.
TEST(ChildProcess, AStopAsTheChildEndsStands) {
  auto code = runChild({"/bin/sh", "-c", "kill -TERM $PPID; exit 0"});
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 128 + SIGTERM);
}

// A child that handles the stop itself (mtrun --exit-signal-handler) and
// exits 0 ended as asked: its code is kept. The child stops this process
// and exits 0 only once the forwarded SIGTERM reaches it.
TEST(ChildProcess, AChildThatHandlesTheStopKeepsItsCode) {
  auto code = runChild(
      {"/bin/sh", "-c", "trap 'exit 0' TERM; kill -TERM $PPID; while :; do sleep 0.05; done"}, "",
      true);
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 0);
}

// The child leads a process group of its own, so that a signal sent to
// this process's group reaches it once, forwarded.
TEST(ChildProcess, TheChildLeadsItsOwnProcessGroup) {
  auto code = runChild(
      {"/bin/sh", "-c", "read -r pid name state ppid pgrp rest < /proc/$$/stat; [ $pgrp = $$ ]"});
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 0);
}

// A stop signal ignored when runChild starts (nohup, a background job's
// SIGINT) stays ignored: a SIGINT to this process is neither recorded nor
// forwarded, so the child's exit 0 stands (130 had it been taken as a stop).
TEST(ChildProcess, AnIgnoredSignalStaysIgnored) {
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ASSERT_EQ(::sigaction(SIGINT, &ignore, &old), 0);
  auto code = runChild({"/bin/sh", "-c", "kill -INT $PPID; sleep 0.2; exit 0"});
  ::sigaction(SIGINT, &old, nullptr);
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 0);
}

} // namespace
} // namespace mt
