// runChild: fork and exec with the parent's stop signals forwarded, and
// Ctrl-Z suspending the child with it.
#include "compiler/driver/ChildProcess.h"

#include "runtime/support/StopSignals.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mt {
namespace {

// A signal handler can only talk to the waiting loop through a global; it
// is set only while runChild waits. Lock-free atomic: the handler may run
// on another thread than the loop.
std::atomic<int> gStopSignal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void recordStopSignal(int signal) { gStopSignal.store(signal); }

// SIGTSTP (Ctrl-Z) while runChild waits: the terminal stops this process's
// group, which the child left.
std::atomic<bool> gSuspend{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void recordSuspend(int) { gSuspend.store(true); }

/// The stop signals and SIGTSTP.
sigset_t stopSignalSet() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : kStopSignals)
    sigaddset(&set, signal);
  sigaddset(&set, SIGTSTP);
  return set;
}

/// Records the stop signals and SIGTSTP while it lives (one ignored at the
/// start stays ignored, here and, through exec, in the child), then
/// restores the old handlers.
class StopSignals {
public:
  void restore() const { handlers_.restore(); }

private:
  ScopedStopHandlers handlers_{recordStopSignal, recordSuspend, [] {
                                 gStopSignal.store(0);
                                 gSuspend.store(false);
                               }};
};

/// The child's side of fork: a process group of its own (a signal sent to
/// this process's group reaches it once, through this process), the
/// parent's handlers and signal mask (`mask`) back, `stop` (the stop signals
/// and SIGTSTP) unblocked, SIGTERM should the parent die, stdout to `out`,
/// then the program. Only async-signal-safe calls.
[[noreturn]] void execChild(const StopSignals &stopSignals, const sigset_t &mask,
                            const sigset_t &stop, pid_t parent, int out, char *const *argv) {
  ::setpgid(0, 0);
  stopSignals.restore();
  ::sigprocmask(SIG_SETMASK, &mask, nullptr);
  ::sigprocmask(SIG_UNBLOCK, &stop, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) // the parent died before prctl
    ::_exit(128 + SIGTERM);
  if (out >= 0 && ::dup2(out, STDOUT_FILENO) < 0)
    ::_exit(127);
  ::execv(argv[0], argv);
  ::_exit(127);
}

} // namespace

Expected<int> runChild(const std::vector<std::string> &argv, const std::string &stdoutPath,
                       bool childHandlesStop) {
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
  // Blocked across fork: a signal then waits for the parent's handler
  // instead of reaching the child before it has its own handlers back.
  const sigset_t stop = stopSignalSet();
  sigset_t mask;
  ::pthread_sigmask(SIG_BLOCK, &stop, &mask);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0)
    execChild(stopSignals, mask, stop, parent, out, pointers.data());
  const int forkError = errno;
  if (pid > 0)
    ::setpgid(pid, pid); // also here: a signal forwarded at once finds the group
  ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  if (out >= 0)
    ::close(out);
  if (pid < 0)
    return Status::error("cannot start " + argv[0] + ": " + std::strerror(forkError));
  // Polled: a signal may be delivered to any thread (MLIR's pool too), so
  // waitpid need not return EINTR for it. A signal that comes as the child
  // ends still counts: the child's success does not undo the stop.
  int status = 0, stoppedBy = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (const int signal = gStopSignal.exchange(0)) {
      stoppedBy = signal;
      if (done != pid)
        ::kill(pid, signal);
    }
    if (done == pid)
      break;
    // Ctrl-Z as job control means it: mtrun stops with this process (its
    // launcher passes SIGTSTP on to the ranks), and both go on at SIGCONT.
    if (gSuspend.exchange(false))
      suspendWith(std::array<pid_t, 1>{pid}, SIGTSTP);
    if (done < 0 && errno != EINTR)
      return Status::error("waiting for " + argv[0] + ": " + std::strerror(errno));
    ::usleep(20'000);
  }
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  const int code = WEXITSTATUS(status);
  if (code == 127 && ::access(pointers[0], X_OK) != 0)
    return Status::error("cannot run " + argv[0] + ": " + std::strerror(errno));
  return code == 0 && stoppedBy && !childHandlesStop ? 128 + stoppedBy : code;
}

std::string describeExit(int code) {
  if (code <= 128 || code > 128 + 64)
    return "exit " + std::to_string(code);
  return "stopped by " + signalText(code - 128);
}

} // namespace mt
