// Crash-safe replacement of a file or a whole directory: readers see either
// the old content or the complete new one, never a partial write.
#ifndef MT_RUNTIME_SUPPORT_ATOMICFILE_H
#define MT_RUNTIME_SUPPORT_ATOMICFILE_H

#include "runtime/support/Status.h"

#include <functional>
#include <ostream>
#include <string>

namespace mt::io {

/// Writes `path` by calling `write` on a stream over `path + ".tmp.<pid>"` (in
/// the same directory, so the rename cannot cross file systems), fsyncs it,
/// renames it over `path` and fsyncs the directory. If `write` fails, throws,
/// or leaves the stream bad, or any system call fails, the temporary file is
/// removed, an existing `path` is left untouched and the error is returned.
Status writeFileAtomically(const std::string &path,
                           const std::function<Status(std::ostream &)> &write);

/// Replaces the directory `dir` (e.g. a checkpoint) with one built by `fill`,
/// which is given a fresh empty directory `dir + ".tmp.<pid>"` to write into.
/// Once `fill` succeeds, every file in it is fsynced, the old `dir` is renamed
/// to `dir + ".old.<pid>"`, the new one renamed into place, and the old one
/// removed. If `fill` or any step before the final rename fails, `dir` is left
/// as it was and the temporary directory is removed. It replaces whatever
/// `dir` holds: the tools' outputs go through replaceOutputDirectory
/// (OutputPath.h), which refuses anything mtc did not write.
Status replaceDirectoryAtomically(
    const std::string &dir,
    const std::function<Status(const std::string &tmpDir)> &fill);

/// Repairs what a crash inside replaceDirectoryAtomically may have left: if
/// `dir` is missing but a `dir.old.<pid>` exists, the old directory is put
/// back; then stale `dir.tmp.<pid>` and `dir.old.<pid>` siblings are removed.
/// Only those of processes that are gone count: a running process's (not
/// this one's) may be a replace in progress, and stay untouched. Call it
/// before reading `dir` after a possible crash. A no-op when nothing was
/// left behind.
Status recoverInterruptedReplace(const std::string &dir);

/// For a missing `dir`: "; <dir>.old.<pid> holds what an interrupted
/// replace of it moved aside (mv ... restores it)" when such a sibling of a
/// process that is gone exists, else "" (for the errors of readers that
/// do not repair, such as --load).
std::string interruptedReplaceHint(const std::string &dir);

} // namespace mt::io

#endif // MT_RUNTIME_SUPPORT_ATOMICFILE_H
