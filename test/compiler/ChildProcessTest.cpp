// runChild: exit codes, standard output, and the stop signals of mtc train
// forwarded to the child.
#include "compiler/driver/ChildProcess.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iterator>
#include <thread>

#include <pthread.h>
#include <sys/wait.h>
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

/// The one-letter state of process `pid` (R, S, T, ...) from /proc, or '?'.
char processState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const size_t close = text.rfind(')'); // the name may hold spaces
  return close == std::string::npos || close + 2 >= text.size() ? '?' : text[close + 2];
}

// Ctrl-Z: SIGTSTP to this process (the terminal's foreground group, which
// the child left) stops the child's group and this process; at SIGCONT both
// go on and the child ends as it would have. This process cannot wake
// itself: a forked watcher waits until it is stopped, records the state of
// the child (whose pid the child wrote), and sends SIGCONT.
TEST(ChildProcess, CtrlZSuspendsTheChildWithThisProcess) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("mt-child-tstp-" + std::to_string(::getpid())))
                              .string();
  std::filesystem::create_directories(dir);
  const std::string childPid = dir + "/child.pid", seen = dir + "/seen";
  const pid_t self = ::getpid();
  const pid_t watcher = ::fork();
  ASSERT_GE(watcher, 0);
  if (watcher == 0) {
    // Up to 60 s for both to be stopped (a loaded machine), then SIGCONT.
    char state = '?';
    for (int i = 0; i < 1200; ++i) {
      ::usleep(50'000);
      std::ifstream in(childPid);
      pid_t child = 0;
      if (processState(self) == 'T' && (in >> child) && child > 0) {
        state = processState(child);
        if (state == 'T')
          break;
      }
    }
    std::ofstream(seen) << state;
    ::kill(self, SIGCONT);
    ::_exit(0);
  }
  // One process (exec, no fork): a shell waiting in vfork for a child that
  // the stop caught before its exec would show as D, not T.
  auto code = runChild({"/bin/sh", "-c",
                        "echo $$ > " + childPid + "; kill -TSTP $PPID; exec sleep 0.3"});
  int status = 0;
  ::waitpid(watcher, &status, 0);
  std::ifstream in(seen);
  char state = '?';
  in >> state;
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(code) << code.message();
  EXPECT_EQ(*code, 0); // a suspension is no stop (128 + SIGTSTP)
  EXPECT_EQ(state, 'T') << "the child was not stopped with this process";
}

} // namespace
} // namespace mt
