// launchLocal: forks the ranks of a local job, forwards signals to them and
// stops them all as soon as one fails.
#include "runtime/comm/Launcher.h"

#include "runtime/support/StopSignals.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace mt::comm {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

// How long ranks get between SIGTERM and SIGKILL.
constexpr milliseconds kGracePeriod{3000};
constexpr milliseconds kPollInterval{10};

// The signal to forward. A signal handler can only talk to the waiting loop
// through a global; it is set only while launchLocal runs.
volatile std::sig_atomic_t gForwardSignal = 0;

extern "C" void recordSignal(int signal) { gForwardSignal = signal; }

// SIGTSTP (Ctrl-Z, or mtc train's suspension) while the ranks run.
volatile std::sig_atomic_t gSuspend = 0;

extern "C" void recordSuspend(int) { gSuspend = 1; }

// Installs the forwarding handlers for SIGINT, SIGTERM and SIGHUP (a closed
// terminal, or mtc train's forwarding) and SIGTSTP's, restores the previous
// ones at the end; one ignored at the start (nohup) stays ignored.
class SignalForwarding {
  ScopedStopHandlers handlers_{recordSignal, recordSuspend, [] {
                                 gForwardSignal = 0;
                                 gSuspend = 0;
                               }};
};

// The rendezvous directory, removed with everything the ranks put there.
class TempDir {
public:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }

private:
  std::string path_;
};

Expected<std::string> makeRendezvousDir() {
  std::error_code ec;
  auto base = std::filesystem::temp_directory_path(ec);
  if (ec)
    base = "/tmp";
  std::string pattern = (base / "mtrun-XXXXXX").string();
  if (!mkdtemp(pattern.data()))
    return Status::error("cannot create a rendezvous directory under " + base.string() + ": " +
                         std::strerror(errno));
  return pattern;
}

bool startsWith(const char *s, const std::string &prefix) {
  return std::strncmp(s, prefix.c_str(), prefix.size()) == 0;
}

// This process's environment with the rank's variables replacing any
// inherited ones (mtrun --nproc started from inside another job).
std::vector<std::string> rankEnvironment(int rank, int nproc, const std::string &dir,
                                         int threads) {
  std::vector<std::string> set = {
      "MT_RANK=" + std::to_string(rank), "MT_WORLD_SIZE=" + std::to_string(nproc),
      "MT_LOCAL_RANK=" + std::to_string(rank), "MT_RENDEZVOUS=" + dir,
      "MT_COMM_HOST=127.0.0.1"}; // all ranks are here: loopback always works
  if (threads > 0)
    for (const char *name : {"OMP_NUM_THREADS=", "OPENBLAS_NUM_THREADS="})
      set.push_back(name + std::to_string(threads));
  std::vector<std::string> env;
  for (char **e = environ; *e; ++e) {
    bool replaced = false;
    for (const auto &s : set)
      replaced |= startsWith(*e, s.substr(0, s.find('=') + 1));
    if (!replaced)
      env.emplace_back(*e);
  }
  env.insert(env.end(), set.begin(), set.end());
  return env;
}

std::vector<char *> pointers(std::vector<std::string> &strings) {
  std::vector<char *> result;
  for (auto &s : strings)
    result.push_back(s.data());
  result.push_back(nullptr);
  return result;
}

// Forks and execs one rank. Only async-signal-safe calls run in the child;
// an exec failure comes back as errno through a close-on-exec pipe.
Expected<pid_t> spawn(std::vector<std::string> argv, std::vector<std::string> env) {
  auto args = pointers(argv), envp = pointers(env);
  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0)
    return Status::error(std::string("pipe: ") + std::strerror(errno));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(pipeFds[0]);
    close(pipeFds[1]);
    return Status::error(std::string("fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    close(pipeFds[0]);
    setpgid(0, 0); // its own group: signals reach the rank and its children
    prctl(PR_SET_PDEATHSIG, SIGKILL); // no orphan ranks if the launcher dies
    if (getppid() != parent)
      _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args[0], args.data(), envp.data());
    int err = errno;
    (void)!write(pipeFds[1], &err, sizeof err);
    _exit(127);
  }
  setpgid(pid, pid); // also here, so that signals sent right away find the group
  close(pipeFds[1]);
  int err = 0;
  ssize_t n;
  do
    n = read(pipeFds[0], &err, sizeof err);
  while (n < 0 && errno == EINTR);
  close(pipeFds[0]);
  if (n == ssize_t(sizeof err)) {
    waitpid(pid, nullptr, 0);
    return Status::error("cannot execute '" + argv[0] + "': " + std::strerror(err));
  }
  return pid;
}

std::string describe(int rank, int status) {
  if (WIFSIGNALED(status))
    return "rank " + std::to_string(rank) + " was killed by signal " +
           std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "rank " + std::to_string(rank) + " exited with status " +
         std::to_string(WEXITSTATUS(status));
}

bool succeeded(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

int exitCode(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

// Watches the running ranks (pid -1 once reaped) until all are gone.
class Supervisor {
public:
  Supervisor(std::vector<pid_t> pids, milliseconds timeout, std::ostream &log, bool graceful)
      : pids_(std::move(pids)), timeout_(timeout), log_(log), start_(Clock::now()),
        graceful_(graceful) {}

  int run() {
    while (reap()) {
      if (gSuspend) { // the ranks (groups of their own) stop with the launcher
        gSuspend = 0;
        suspendWith(pids_, SIGSTOP);
      }
      if (int signal = gForwardSignal) {
        gForwardSignal = 0;
        // A copy of a graceful stop (the group's and a forwarder's) is not
        // forwarded, so that it cannot reach a rank past the rank's window.
        const bool copy = graceful_ && gracefulAt_ && Clock::now() - *gracefulAt_ < kSameStopWindow;
        if (!copy)
          log_ << "mtrun: forwarding signal " << signal << " (" << strsignal(signal)
               << ") to the ranks\n";
        if (graceful_ && !gracefulAt_) { // the ranks end after their step
          gracefulAt_ = Clock::now();
          signalAll(signal);
        } else if (!copy) {
          stop(128 + signal, signal);
        }
      }
      if (!code_ && timeout_.count() > 0 && Clock::now() - start_ >= timeout_) {
        log_ << "mtrun: the job ran out of its time limit; stopping the ranks\n";
        stop(124, SIGTERM);
      }
      if (killAt_ && Clock::now() >= *killAt_) {
        log_ << "mtrun: ranks still running " << kGracePeriod.count() / 1000
             << " s after SIGTERM; sending SIGKILL\n";
        signalAll(SIGKILL);
        killAt_.reset();
      }
      std::this_thread::sleep_for(kPollInterval);
    }
    return code_.value_or(0);
  }

private:
  // Collects the ranks that ended; returns whether any still runs.
  bool reap() {
    bool running = false;
    for (size_t r = 0; r < pids_.size(); ++r) {
      if (pids_[r] < 0)
        continue;
      int status = 0;
      pid_t done = waitpid(pids_[r], &status, WNOHANG);
      if (done == 0 || (done < 0 && errno == EINTR)) {
        running = true;
        continue;
      }
      pids_[r] = -1;
      if (done > 0 && !succeeded(status) && !code_) {
        log_ << "mtrun: " << describe(int(r), status) << "; stopping the other ranks\n";
        // Ranks that end gracefully on SIGTERM would wait in a collective
        // for the one that is gone: they cannot save, so they are killed.
        stop(exitCode(status), graceful_ ? SIGKILL : SIGTERM);
      }
    }
    return running;
  }

  void stop(int code, int signal) {
    if (!code_)
      code_ = code;
    signalAll(signal);
    if (!killAt_)
      killAt_ = Clock::now() + kGracePeriod;
  }

  void signalAll(int signal) {
    for (pid_t pid : pids_)
      if (pid > 0)
        kill(-pid, signal);
  }

  std::vector<pid_t> pids_;
  milliseconds timeout_;
  std::ostream &log_;
  Clock::time_point start_;
  std::optional<int> code_;
  std::optional<Clock::time_point> killAt_;
  bool graceful_; // the ranks end themselves after a stop signal
  std::optional<Clock::time_point> gracefulAt_; // when that signal came
};

} // namespace

Expected<RankThreads> chooseRankThreads(int localRanks, int cores, std::optional<int> flag,
                                        const char *ompNumThreads) {
  if (localRanks < 1 || cores < 1)
    return Status::error("chooseRankThreads: " + std::to_string(localRanks) + " ranks on " +
                         std::to_string(cores) + " cores");
  const std::string ranks = std::to_string(localRanks) + " local rank" +
                            (localRanks == 1 ? "" : "s") + " on " + std::to_string(cores) +
                            " core" + (cores == 1 ? "" : "s") + ": ";
  auto perRank = [](int n) {
    return std::to_string(n) + (n == 1 ? " thread" : " threads") + " per rank";
  };
  if (flag) {
    if (*flag < 1)
      return Status::error("--threads-per-rank must be at least 1 (got " +
                           std::to_string(*flag) + ")");
    // More than the cores one rank may use cannot run at once: OpenMP's
    // threads would wait on one another (1000 made no progress at all).
    if (*flag > cores)
      return Status::error("--threads-per-rank " + std::to_string(*flag) + " is more than the " +
                           std::to_string(cores) + " core" + (cores == 1 ? "" : "s") +
                           " mtrun may use: give at most " + std::to_string(cores) +
                           " (without it, the cores are divided among the ranks)");
    bool over = int64_t(*flag) * localRanks > cores;
    return RankThreads{*flag, ranks + perRank(*flag) + " (--threads-per-rank" +
                                  (over ? ", more threads than cores" : "") + ")"};
  }
  if (ompNumThreads && *ompNumThreads)
    return RankThreads{0, ranks + "OMP_NUM_THREADS=" + ompNumThreads +
                              " from the environment for every rank"};
  const int threads = std::max(1, cores / localRanks);
  return RankThreads{threads, ranks + perRank(threads) +
                                  " (the cores divided among the ranks; "
                                  "--threads-per-rank or OMP_NUM_THREADS to change)"};
}

int availableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  return std::max(1u, std::thread::hardware_concurrency());
}

Expected<std::string> currentExecutable() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec)
    return Status::error("cannot read /proc/self/exe: " + ec.message());
  return path.string();
}

Expected<int> launchLocal(int nproc, const std::vector<std::string> &argv,
                          milliseconds timeout, std::ostream &log, int threadsPerRank,
                          bool gracefulStop) {
  if (nproc < 1)
    return Status::error("--nproc must be at least 1 (got " + std::to_string(nproc) + ")");
  if (argv.empty() || argv[0].empty())
    return Status::error("launchLocal: no program to run");
  if (timeout.count() < 0)
    return Status::error("launchLocal: negative time limit");
  auto dir = makeRendezvousDir();
  if (!dir)
    return dir.status();
  TempDir rendezvous(*dir);
  SignalForwarding forwarding;
  std::vector<pid_t> pids;
  for (int rank = 0; rank < nproc; ++rank) {
    auto pid = spawn(argv, rankEnvironment(rank, nproc, rendezvous.path(), threadsPerRank));
    if (!pid) {
      // Stop the ranks already started; they would wait for this one.
      for (pid_t p : pids)
        kill(-p, SIGKILL);
      for (pid_t p : pids)
        waitpid(p, nullptr, 0);
      return Status::error("rank " + std::to_string(rank) + ": " + pid.message());
    }
    pids.push_back(*pid);
  }
  return Supervisor(std::move(pids), timeout, log, gracefulStop).run();
}

} // namespace mt::comm
