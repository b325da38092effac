#include "runtime/exec/EarlyExit.h"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <cstring>
#include <unistd.h>

namespace mt::exec {

namespace {

// What the handler reads: set by the running thread, read in a signal
// handler, so lock-free atomics only.
static_assert(std::atomic<int64_t>::is_always_lock_free);
std::atomic<int> gPending{0};
std::atomic<int64_t> gStep{0}, gLast{0}, gSaved{-1};
std::atomic<bool> gGraceful{false}, gReporter{false};
// When the graceful stop's signal came (CLOCK_MONOTONIC, ns): copies of it
// within kSameStop (one signal sent to a process group and also forwarded
// by a launcher or mtc train) are the same stop.
std::atomic<int64_t> gPendingAt{0};
constexpr int64_t kSameStopNs = 1'000'000'000;

int64_t monotonicNs() { // clock_gettime is async-signal-safe
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction gOld[3];

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
  switch (signal) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  case SIGHUP:
    return "SIGHUP";
  default:
    return "a stop signal";
  }
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
  if (gGraceful.load() && monotonicNs() - gPendingAt.load() < kSameStopNs)
    return; // a copy of the stop signal, not a second one
  if (gReporter.load()) {
    SignalLine line;
    line << "mtrun: " << shortName(signal) << " ";
    wherePart(line) << ": stopping now; ";
    const int64_t saved = gSaved.load();
    if (saved >= 0)
      line << "the newest checkpoint this run saved is of step " << saved;
    else
      line << "this run saved no checkpoint";
    if (!gGraceful.load())
      line << " (--exit-signal-handler would end after the step and save)";
    line.write();
  }
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

} // namespace

StopSignals::StopSignals(bool graceful, bool reporter) {
  gPending = 0;
  gStep = 0;
  gLast = 0;
  gSaved = -1;
  gGraceful = graceful;
  gReporter = reporter;
  struct sigaction action {};
  action.sa_handler = onStopSignal;
  action.sa_flags = SA_RESTART; // collectives and file writes go on
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < 3; ++i) {
    sigaction(kSignals[i], nullptr, &gOld[i]);
    // A signal ignored from the start (nohup, a background job's SIGINT)
    // stays ignored.
    if (gOld[i].sa_handler != SIG_IGN)
      sigaction(kSignals[i], &action, nullptr);
  }
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 3; ++i)
    sigaction(kSignals[i], &gOld[i], nullptr);
}

void StopSignals::stepStarted(int64_t step, int64_t last) {
  gLast = last;
  gStep = step;
}

void StopSignals::saved(int64_t step) { gSaved = step; }

int StopSignals::pending() const { return gPending.load(); }

std::string signalName(int signal) {
  const char *name = shortName(signal);
  return std::strcmp(name, "a stop signal") ? name : "signal " + std::to_string(signal);
}

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
    return ExitReason{signalName(int(flags[0]))};
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
