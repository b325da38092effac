// The stop signals (SIGINT, SIGTERM, SIGHUP) as mtc's processes handle
// them: mtc train's child runner, mtrun's launcher and each rank install
// their handlers through this, so that all keep a signal ignored at their
// start (nohup, a background job's SIGINT) ignored and name signals alike.
#ifndef MT_RUNTIME_SUPPORT_STOPSIGNALS_H
#define MT_RUNTIME_SUPPORT_STOPSIGNALS_H

#include <array>
#include <chrono>
#include <csignal>
#include <string>

#include <sys/types.h>

namespace mt {

inline constexpr std::array<int, 3> kStopSignals = {SIGINT, SIGTERM, SIGHUP};

/// Stop signals this close together are copies of one (a process group's
/// and a forwarder's): a launcher and the ranks count them once.
inline constexpr std::chrono::milliseconds kSameStopWindow{1000};

/// Installs `handler` for each stop signal not ignored now, saving the old
/// actions in `old` (sa_flags: e.g. SA_RESTART). Async-signal-safe calls only.
inline void installStopHandlers(void (*handler)(int), int flags,
                                std::array<struct sigaction, 3> &old) {
  struct sigaction action {};
  action.sa_handler = handler;
  action.sa_flags = flags;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < kStopSignals.size(); ++i) {
    sigaction(kStopSignals[i], nullptr, &old[i]);
    if (old[i].sa_handler != SIG_IGN)
      sigaction(kStopSignals[i], &action, nullptr);
  }
}

/// Puts back what installStopHandlers saved. Async-signal-safe.
inline void restoreStopHandlers(const std::array<struct sigaction, 3> &old) {
  for (size_t i = 0; i < kStopSignals.size(); ++i)
    sigaction(kStopSignals[i], &old[i], nullptr);
}

/// "SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", or nullptr for another signal.
/// Async-signal-safe.
inline const char *stopSignalName(int signal) {
  switch (signal) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  case SIGHUP:
    return "SIGHUP";
  case SIGKILL:
    return "SIGKILL";
  default:
    return nullptr;
  }
}

/// stopSignalName, or "signal N".
inline std::string signalText(int signal) {
  const char *name = stopSignalName(signal);
  return name ? name : "signal " + std::to_string(signal);
}

/// Ctrl-Z for a process that waits on children in process groups of their
/// own (the terminal's SIGTSTP reaches only the waiter's group): installs
/// `handler` for SIGTSTP unless it is ignored now, saving the old action in
/// `old` (restore it with sigaction). Async-signal-safe calls only.
inline void installSuspendHandler(void (*handler)(int), struct sigaction &old) {
  sigaction(SIGTSTP, nullptr, &old);
  if (old.sa_handler == SIG_IGN)
    return;
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTSTP, &action, nullptr);
}

/// While it lives, `stop` handles the stop signals and `suspend` SIGTSTP
/// (each one not ignored at the start); then the old actions are back.
/// `clear` first resets what the handlers record (a flag set in an earlier
/// scope must not read as a signal in this one).
class ScopedStopHandlers {
public:
  ScopedStopHandlers(void (*stop)(int), void (*suspend)(int), void (*clear)()) {
    clear();
    installStopHandlers(stop, 0, old_);
    installSuspendHandler(suspend, oldSuspend_);
  }
  ~ScopedStopHandlers() { restore(); }
  ScopedStopHandlers(const ScopedStopHandlers &) = delete;
  ScopedStopHandlers &operator=(const ScopedStopHandlers &) = delete;
  /// The old actions back now (also in a forked child). Async-signal-safe.
  void restore() const {
    restoreStopHandlers(old_);
    sigaction(SIGTSTP, &oldSuspend_, nullptr);
  }

private:
  std::array<struct sigaction, 3> old_{};
  struct sigaction oldSuspend_ {};
};

/// Suspends the process groups led by `leaders` (sending them `signal`:
/// SIGTSTP where a leader passes it on to groups of its own, else SIGSTOP)
/// and then this process; once this process is continued (fg, bg), sends
/// them SIGCONT. Leaders <= 0 are skipped.
template <typename Pids> void suspendWith(const Pids &leaders, int signal) {
  for (pid_t pid : leaders)
    if (pid > 0)
      kill(-pid, signal);
  raise(SIGSTOP); // returns once this process is continued
  for (pid_t pid : leaders)
    if (pid > 0)
      kill(-pid, SIGCONT);
}

} // namespace mt

#endif // MT_RUNTIME_SUPPORT_STOPSIGNALS_H
