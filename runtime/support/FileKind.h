// What is at a path an input names, checked before it is opened: opening a
// FIFO for reading waits for a writer (a run would hang), and reading a
// directory through a stream throws or reads nothing.
#pragma once

#include <filesystem>
#include <string>

#include <sys/stat.h>

namespace mt {

enum class FileKind { Missing, Regular, Directory, Special };

/// The kind of `path`, symbolic links followed; one that cannot be stat'ed
/// (missing, or a directory on the way not searchable) is Missing.
inline FileKind fileKindOf(const std::string &path) {
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))
    return FileKind::Missing;
  if (std::filesystem::is_regular_file(status))
    return FileKind::Regular;
  return std::filesystem::is_directory(status) ? FileKind::Directory : FileKind::Special;
}

/// "a directory" or "a device or pipe" where something other than a regular
/// file is at `path`, for the error that refuses it ("PATH: a directory, not
/// a ..."); "" for a regular file or nothing (whose open then fails).
inline std::string notARegularFile(const std::string &path) {
  switch (fileKindOf(path)) {
  case FileKind::Directory:
    return "a directory";
  case FileKind::Special:
    return "a device or pipe";
  default:
    return "";
  }
}

/// The same for a descriptor's st_mode (fstat after an O_NONBLOCK open: no
/// race between the check and the read).
inline std::string notARegularFile(mode_t mode) {
  return S_ISREG(mode) ? "" : S_ISDIR(mode) ? "a directory" : "a device or pipe";
}

} // namespace mt
