// Ending a run before its last step, as Megatron-LM's exit arguments do:
// on a stop signal (--exit-signal-handler), after a wall-clock budget
// (--exit-duration-in-mins) or at a step interval (--exit-interval). Every
// rank ends after the same step and a checkpoint is saved there. Without
// --exit-signal-handler a stop signal ends the rank at once, saying which
// step it interrupted and which checkpoint is the newest.
#ifndef MT_RUNTIME_EXEC_EARLYEXIT_H
#define MT_RUNTIME_EXEC_EARLYEXIT_H

#include "runtime/comm/Communicator.h"
#include "runtime/support/Status.h"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <string>

namespace mt::exec {

/// Megatron-LM's exit arguments (megatron/training/arguments.py).
struct ExitOptions {
  /// SIGTERM, SIGINT or SIGHUP ends the run after the step it arrives in
  /// (another, a second or more later, ends it at once).
  bool signalHandler = false;
  /// The run ends after the first step that finishes this many minutes
  /// after training started (0: no limit).
  double durationMinutes = 0;
  /// The run ends after the first step divisible by this (0: none).
  int64_t interval = 0;
};

/// Why a run ends early: a signal's name ("SIGTERM"), "exit_duration_in_mins
/// 30 reached" or "exit_interval 100"; empty: it goes on.
struct ExitReason {
  std::string text;
  explicit operator bool() const { return !text.empty(); }
};

/// The handlers of SIGINT, SIGTERM and SIGHUP for one run, restored at
/// destruction (one instance at a time). With `graceful` the first signal
/// is only recorded, for ExitWatch to act on at the end of the step (and
/// copies of it within a second, as a signal sent to a process group that
/// a launcher also forwards arrives, are the same stop); a later signal,
/// or any without `graceful`, ends the process by the
/// signal's default action after `reporter` has printed one line to
/// standard error: the signal, the step it interrupted and the newest
/// checkpoint this run saved. A signal ignored when it is constructed
/// (nohup) stays ignored. The handlers' state is global: while one
/// instance lives, another does nothing.
class StopSignals {
public:
  StopSignals(bool graceful, bool reporter);
  ~StopSignals();
  StopSignals(const StopSignals &) = delete;
  StopSignals &operator=(const StopSignals &) = delete;

  /// What an abrupt stop reports: the step running (of `last`).
  void stepStarted(int64_t step, int64_t last);
  /// A checkpoint of `step` is being written (an abrupt stop says so).
  void saving(int64_t step);
  /// A checkpoint of `step` is complete on disk.
  void saved(int64_t step);
  /// The first signal received since construction (graceful only), or 0.
  int pending() const;

private:
  bool owner_ = false; // installed the handlers (the first live instance)
};

/// Decides, after each step, whether the run ends there; all ranks decide
/// alike. Polls the signals and the clock on every rank and takes the
/// maximum over `world` (null for a single rank), so that a signal seen by
/// one rank, or a clock past the limit on one, stops every rank after the
/// same step.
class ExitWatch {
public:
  ExitWatch(const ExitOptions &options, const StopSignals &signals)
      : options_(options), signals_(signals), started_(std::chrono::steady_clock::now()) {}

  /// After step `step`: the reason to end there, or none. Errors: the
  /// all-reduce over `world` failed.
  Expected<ExitReason> check(int64_t step, comm::Communicator *world) const;

private:
  ExitOptions options_;
  const StopSignals &signals_;
  std::chrono::steady_clock::time_point started_;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_EARLYEXIT_H
