// runChild: fork and exec with the parent's stop signals forwarded.
#include "compiler/driver/ChildProcess.h"

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mt {
namespace {

// A signal handler can only talk to the waiting loop through a global; it
// is set only while runChild waits.
volatile std::sig_atomic_t gStopSignal = 0;

extern "C" void recordStopSignal(int signal) { gStopSignal = signal; }

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};

/// Records the stop signals while it lives, then restores the old handlers.
class StopSignals {
public:
  StopSignals() {
    gStopSignal = 0;
    struct sigaction action {};
    action.sa_handler = recordStopSignal;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < 3; ++i)
      sigaction(kStopSignals[i], &action, &old_[i]);
  }
  ~StopSignals() { restore(); }
  void restore() const {
    for (int i = 0; i < 3; ++i)
      sigaction(kStopSignals[i], &old_[i], nullptr);
  }

private:
  struct sigaction old_[3] {};
};

} // namespace

Expected<int> runChild(const std::vector<std::string> &argv, const std::string &stdoutPath) {
  std::vector<std::string> args = argv;
  std::vector<char *> pointers;
  for (std::string &a : args)
    pointers.push_back(a.data());
  pointers.push_back(nullptr);
  int out = -1;
  if (!stdoutPath.empty()) {
    out = ::open(stdoutPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
      return Status::error(stdoutPath + ": cannot write: " + std::strerror(errno));
  }
  StopSignals stopSignals;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) { // only async-signal-safe calls from here
    stopSignals.restore();
    sigset_t stop;
    sigemptyset(&stop);
    for (int signal : kStopSignals)
      sigaddset(&stop, signal);
    ::sigprocmask(SIG_UNBLOCK, &stop, nullptr); // the forking thread's mask is inherited
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) // the parent died before prctl
      ::_exit(128 + SIGTERM);
    if (out >= 0 && ::dup2(out, STDOUT_FILENO) < 0)
      ::_exit(127);
    ::execv(pointers[0], pointers.data());
    ::_exit(127);
  }
  const int forkError = errno;
  if (out >= 0)
    ::close(out);
  if (pid < 0)
    return Status::error("cannot start " + argv[0] + ": " + std::strerror(forkError));
  // Polled: a signal may be delivered to any thread (MLIR's pool too), so
  // waitpid need not return EINTR for it.
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid)
      break;
    if (done < 0 && errno != EINTR)
      return Status::error("waiting for " + argv[0] + ": " + std::strerror(errno));
    if (const int signal = gStopSignal) {
      gStopSignal = 0;
      ::kill(pid, signal);
    }
    ::usleep(20'000);
  }
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  const int code = WEXITSTATUS(status);
  if (code == 127 && ::access(pointers[0], X_OK) != 0)
    return Status::error("cannot run " + argv[0] + ": " + std::strerror(errno));
  return code;
}

std::string describeExit(int code) {
  if (code <= 128 || code > 128 + 64)
    return "exit " + std::to_string(code);
  const int signal = code - 128;
  const char *name = signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM"
                     : signal == SIGHUP ? "SIGHUP" : signal == SIGKILL ? "SIGKILL"
                                                                       : nullptr;
  return name ? std::string("stopped by ") + name : "stopped by signal " + std::to_string(signal);
}

} // namespace mt
