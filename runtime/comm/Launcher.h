// launchLocal: mtrun --nproc N, the ranks of one job as processes on this
// machine, started, watched and stopped together.
#ifndef MT_RUNTIME_COMM_LAUNCHER_H
#define MT_RUNTIME_COMM_LAUNCHER_H

#include "runtime/support/Status.h"

#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace mt::comm {

/// The CPU threads of each local rank: OMP_NUM_THREADS and
/// OPENBLAS_NUM_THREADS in its environment (0: inherited unchanged), and
/// the sentence mtrun logs about them.
struct RankThreads {
  int threads = 0;
  std::string note;
};

/// How `localRanks` ranks on a machine of `cores` cores share them. By
/// default each gets max(1, cores / localRanks) threads, so that the ranks'
/// OpenMP teams do not oversubscribe the cores (measured: 4 ranks of 2
/// threads each on 2 cores trained 3.3x slower than with 1 each). An OMP_NUM_THREADS
/// in the environment (`ompNumThreads`, null when unset) is kept as it is;
/// `flag` (--threads-per-rank, at least 1) overrides both.
Expected<RankThreads> chooseRankThreads(int localRanks, int cores, std::optional<int> flag,
                                        const char *ompNumThreads);

/// The cores this process may run on (its CPU affinity), at least 1.
int availableCores();

/// Runs `nproc` copies of the program argv[0] (a path, not searched in
/// PATH) with argv, each with MT_RANK, MT_WORLD_SIZE, MT_LOCAL_RANK,
/// MT_RENDEZVOUS (a fresh directory under the system temp dir, removed at
/// the end), MT_COMM_HOST=127.0.0.1 and, with `threadsPerRank` > 0,
/// OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to it in its environment.
/// Each rank runs in its own process group, which is what gets signalled
/// (so the terminal's Ctrl-C reaches the ranks once, through this process;
/// ranks must not read the terminal). One launch at a time per process: the
/// handlers are global.
///
/// SIGINT/SIGTERM/SIGHUP sent to this process are forwarded to the ranks. When a
/// rank exits non-zero or by a signal, the others get SIGTERM, then SIGKILL
/// after a few seconds; `log` gets "rank R exited with status S" (or "was
/// killed by signal N (name)"). `timeout` > 0 limits the whole job's wall
/// time (exit code 124 when it runs out); 0 means no limit. With
/// `gracefulStop` (the ranks end themselves after a stop signal, mtrun
/// --exit-signal-handler) the first signal is forwarded with no SIGKILL to
/// follow and the job's code stays the ranks' (copies of it within a
/// second are forwarded alike); a later one is forwarded as without it.
///
/// Returns the exit code for the caller: 0 when all ranks succeed, else the
/// first failing rank's status (128 + signal when killed). An error Status
/// means the job could not be started.
Expected<int> launchLocal(int nproc, const std::vector<std::string> &argv,
                          std::chrono::milliseconds timeout, std::ostream &log = std::cerr,
                          int threadsPerRank = 0, bool gracefulStop = false);

/// The path of the running program (/proc/self/exe), for argv[0].
Expected<std::string> currentExecutable();

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_LAUNCHER_H
