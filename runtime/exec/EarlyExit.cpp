// The stop-signal handler of a rank (async-signal-safe: lock-free atomics,
// write, clock_gettime, raise) and the per-step decision to end a run early.
#include "runtime/exec/EarlyExit.h"

#include "runtime/support/StopSignals.h"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace mt::exec {

namespace {

// What the handler reads: set by the running thread, read in a signal
// handler, so lock-free atomics only.
static_assert(std::atomic<int64_t>::is_always_lock_free);
std::atomic<int> gPending{0};
std::atomic<int64_t> gStep{0}, gLast{0}, gSaved{-1}, gSaving{-1};
std::atomic<bool> gGraceful{false}, gReporter{false};
std::atomic<bool> gInstalled{false}; // one StopSignals at a time
// When the graceful stop's signal came (CLOCK_MONOTONIC, ns; 0: being
// recorded): copies of it within kSameStopWindow are the same stop.
std::atomic<int64_t> gPendingAt{0};
constexpr int64_t kSameStopNs =
    std::chrono::duration_cast<std::chrono::nanoseconds>(kSameStopWindow).count();

int64_t monotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

std::array<struct sigaction, 3> gOld;

/// A line built without allocation (async-signal-safe), written at once.
class SignalLine {
public:
  SignalLine &operator<<(const char *text) {
    while (*text && size_ < sizeof(buffer_) - 1)
      buffer_[size_++] = *text++;
    return *this;
  }
  SignalLine &operator<<(int64_t value) {
    char digits[24];
    int n = 0;
    uint64_t v = value < 0 ? uint64_t(-value) : uint64_t(value);
    do {
      digits[n++] = char('0' + v % 10);
      v /= 10;
    } while (v);
    if (value < 0)
      *this << "-";
    while (n > 0) {
      const char digit[2] = {digits[--n], 0};
      *this << digit;
    }
    return *this;
  }
  void write() {
    buffer_[size_++] = '\n';
    ssize_t ignored = ::write(STDERR_FILENO, buffer_, size_);
    (void)ignored;
  }

private:
  char buffer_[256];
  size_t size_ = 0;
};

const char *shortName(int signal) {
  const char *name = stopSignalName(signal);
  return name ? name : "a stop signal";
}

/// "during step 7 of 20" or "before the first step".
SignalLine &wherePart(SignalLine &line) {
  const int64_t step = gStep.load();
  if (step <= 0)
    return line << "before the first step";
  return line << "during step " << step << " of " << gLast.load();
}

extern "C" void onStopSignal(int signal) {
  int none = 0;
  if (gGraceful.load() && gPending.compare_exchange_strong(none, signal)) {
    gPendingAt = monotonicNs();
    if (gReporter.load()) {
      SignalLine line;
      line << "mtrun: " << shortName(signal) << " ";
      wherePart(line) << ": the run ends after this step (--exit-signal-handler); another "
                         "signal, a second or more later, stops it at once";
      line.write();
    }
    return;
  }
  // A copy of the stop signal, not a second one (0: the first is still
  // being recorded, on another thread).
  if (const int64_t at = gPendingAt.load();
      gGraceful.load() && (at == 0 || monotonicNs() - at < kSameStopNs))
    return;
  if (gReporter.load()) {
    SignalLine line;
    line << "mtrun: " << shortName(signal) << " ";
    wherePart(line) << ": stopping now; ";
    const int64_t saved = gSaved.load();
    if (saved >= 0)
      line << "the newest checkpoint this run saved is of step " << saved;
    else
      line << "this run saved no checkpoint";
    // Stopped inside a save: it may have completed (--resume takes it then).
    if (const int64_t saving = gSaving.load(); saving > saved)
      line << ", and the save of step " << saving << " was under way";
    if (!gGraceful.load())
      line << " (--exit-signal-handler would end after the step and save)";
    line.write();
  }
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

} // namespace

StopSignals::StopSignals(bool graceful, bool reporter) {
  // The handler's state is global: a second instance while one lives (two
  // runs in one process) leaves the first's handlers and state alone.
  owner_ = !gInstalled.exchange(true);
  if (!owner_)
    return;
  gPending = 0;
  gPendingAt = 0;
  gStep = 0;
  gLast = 0;
  gSaved = -1;
  gSaving = -1;
  gGraceful = graceful;
  gReporter = reporter;
  // SA_RESTART: reads and writes go on after a graceful signal (poll and
  // connect still return EINTR; their callers retry or report it).
  installStopHandlers(onStopSignal, SA_RESTART, gOld);
}

StopSignals::~StopSignals() {
  if (!owner_)
    return;
  restoreStopHandlers(gOld);
  gInstalled = false;
}

void StopSignals::stepStarted(int64_t step, int64_t last) {
  if (!owner_)
    return;
  gLast = last;
  gStep = step;
}

void StopSignals::saving(int64_t step) {
  if (owner_)
    gSaving = step;
}

void StopSignals::saved(int64_t step) {
  if (owner_)
    gSaved = step;
}

int StopSignals::pending() const { return gPending.load(); }

Expected<ExitReason> ExitWatch::check(int64_t step, comm::Communicator *world) const {
  using Minutes = std::chrono::duration<double, std::ratio<60>>;
  float flags[2] = {float(signals_.pending()), 0.0f};
  if (options_.durationMinutes > 0 &&
      Minutes(std::chrono::steady_clock::now() - started_).count() >= options_.durationMinutes)
    flags[1] = 1.0f;
  // Only where a flag can differ between ranks; the interval cannot.
  if (world && (options_.signalHandler || options_.durationMinutes > 0))
    if (Status s = world->allReduceHost(flags, 2, comm::ReduceOp::Max); !s)
      return s;
  if (flags[0] > 0)
    return ExitReason{signalText(int(flags[0]))};
  if (flags[1] > 0) {
    char minutes[32];
    std::snprintf(minutes, sizeof minutes, "%g", options_.durationMinutes);
    return ExitReason{std::string("exit_duration_in_mins ") + minutes + " reached"};
  }
  if (options_.interval > 0 && step % options_.interval == 0)
    return ExitReason{"exit_interval " + std::to_string(options_.interval)};
  return ExitReason{};
}

} // namespace mt::exec
