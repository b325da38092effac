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

} // namespace mt

#endif // MT_RUNTIME_SUPPORT_STOPSIGNALS_H
