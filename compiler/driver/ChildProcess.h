// Running a tool of mtc train (mt-prepare-sft, mtrun) as a child that stops
// when mtc train is stopped.
#ifndef MT_COMPILER_DRIVER_CHILDPROCESS_H
#define MT_COMPILER_DRIVER_CHILDPROCESS_H

#include "runtime/support/Status.h"

#include <string>
#include <vector>

namespace mt {

/// Runs `argv` (argv[0] the program's path) and waits for it, its standard
/// output into `stdoutPath` where that is not empty. The child runs in a
/// process group of its own; SIGINT, SIGTERM and SIGHUP sent to this
/// process while it waits are forwarded to it, once each (one ignored when
/// runChild starts stays ignored, in the child too), and the child gets
/// SIGTERM should this process die first (Linux's PR_SET_PDEATHSIG), so that
/// stopping mtc train stops what it started. SIGTSTP (Ctrl-Z, which the
/// terminal sends to this process's group only) stops the child's group and
/// then this process, and both go on at SIGCONT. Returns the child's exit code,
/// or 128 + the signal that ended it, or 128 + a stop signal this process
/// got while waiting even where the child then exited 0 (the stop stands)
/// unless `childHandlesStop` (mtrun --exit-signal-handler, whose exit 0
/// after a stop means it ended as asked); errors: the program cannot be
/// started, or the output file opened.
Expected<int> runChild(const std::vector<std::string> &argv, const std::string &stdoutPath = "",
                       bool childHandlesStop = false);

/// "exit 3", or "stopped by SIGTERM" for a code runChild made of a signal.
std::string describeExit(int code);

} // namespace mt

#endif // MT_COMPILER_DRIVER_CHILDPROCESS_H
