// launchLocal: mtrun --nproc N, the ranks of one job as processes on this
// machine, started, watched and stopped together.
#ifndef MT_RUNTIME_COMM_LAUNCHER_H
#define MT_RUNTIME_COMM_LAUNCHER_H

#include "runtime/support/Status.h"

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

namespace mt::comm {

/// Runs `nproc` copies of the program argv[0] (a path, not searched in
/// PATH) with argv, each with MT_RANK, MT_WORLD_SIZE, MT_LOCAL_RANK,
/// MT_RENDEZVOUS (a fresh directory under the system temp dir, removed at
/// the end) and MT_COMM_HOST=127.0.0.1 in its environment. Each rank runs in
/// its own process group, which is what gets signalled (so the terminal's
/// Ctrl-C reaches the ranks once, through this process; ranks must not read
/// the terminal). One launch at a time per process: the handlers are global.
///
/// SIGINT/SIGTERM sent to this process are forwarded to the ranks. When a
/// rank exits non-zero or by a signal, the others get SIGTERM, then SIGKILL
/// after a few seconds; `log` gets "rank R exited with status S" (or "was
/// killed by signal N (name)"). `timeout` > 0 limits the whole job's wall
/// time (exit code 124 when it runs out); 0 means no limit.
///
/// Returns the exit code for the caller: 0 when all ranks succeed, else the
/// first failing rank's status (128 + signal when killed). An error Status
/// means the job could not be started.
Expected<int> launchLocal(int nproc, const std::vector<std::string> &argv,
                          std::chrono::milliseconds timeout, std::ostream &log = std::cerr);

/// The path of the running program (/proc/self/exe), for argv[0].
Expected<std::string> currentExecutable();

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_LAUNCHER_H
