// Crash-safe replacement of files and directories: write beside the target,
// fsync, rename over it, fsync the parent directory.
#include "runtime/support/AtomicFile.h"

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <streambuf>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mt::io {
namespace {

namespace fs = std::filesystem;

std::string pidSuffix() { return std::to_string(static_cast<long>(::getpid())); }

Status sysError(const std::string &what, const std::string &path, int err) {
  return Status::error(path + ": " + what + ": " + std::strerror(err));
}

/// A streambuf over a POSIX descriptor: std::ofstream cannot be fsynced, and
/// the descriptor is what we need to make the data durable before the rename.
class FdStreamBuf : public std::streambuf {
public:
  explicit FdStreamBuf(int fd) : fd_(fd), buffer_(1 << 16) {
    setp(buffer_.data(), buffer_.data() + buffer_.size());
  }
  /// errno of the first failed write(), 0 if none failed.
  int error() const { return error_; }

protected:
  int_type overflow(int_type ch) override {
    if (!flushBuffer())
      return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  std::streamsize xsputn(const char *s, std::streamsize n) override {
    // Large blocks (tensor data) skip the copy into the buffer.
    if (n < static_cast<std::streamsize>(buffer_.size()))
      return std::streambuf::xsputn(s, n);
    if (!flushBuffer() || !writeAll(s, static_cast<size_t>(n)))
      return 0;
    return n;
  }
  int sync() override { return flushBuffer() ? 0 : -1; }

private:
  bool flushBuffer() {
    size_t n = static_cast<size_t>(pptr() - pbase());
    if (n && !writeAll(pbase(), n))
      return false;
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return true;
  }
  bool writeAll(const char *p, size_t n) {
    if (error_)
      return false;
    while (n) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0) {
        error_ = errno;
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  int fd_;
  int error_ = 0;
  std::vector<char> buffer_;
};

/// Runs a caller's callback; an exception from it becomes an error, so that
/// the temporary output is still cleaned up.
template <typename Fn> Status runCallback(const std::string &path, Fn &&fn) {
  try {
    return fn();
  } catch (const std::exception &e) {
    return Status::error(path + ": writer threw: " + e.what());
  } catch (...) {
    return Status::error(path + ": writer threw a non-standard exception");
  }
}

Status syncPath(const std::string &path, bool isDir) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (isDir ? O_DIRECTORY : 0));
  if (fd < 0)
    return sysError("cannot open to fsync", path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems cannot fsync a directory (EINVAL); nothing more to do.
  if (rc != 0 && !(isDir && err == EINVAL))
    return sysError("fsync failed", path, err);
  return Status::ok();
}

std::string parentDir(const std::string &path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

/// "a/b/" and "a/b" name the same directory; suffixes must go after "b".
std::string withoutTrailingSlash(const std::string &dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/')
    d.pop_back();
  return d;
}

Status writeAndSync(int fd, const std::string &tmp,
                    const std::function<Status(std::ostream &)> &write) {
  FdStreamBuf buf(fd);
  std::ostream os(&buf);
  Status s = runCallback(tmp, [&] { return write(os); });
  if (s) {
    os.flush();
    if (!os)
      s = sysError("write failed", tmp, buf.error() ? buf.error() : EIO);
  }
  if (s && ::fsync(fd) != 0)
    s = sysError("fsync failed", tmp, errno);
  // close() can report a deferred write error (e.g. on NFS).
  if (::close(fd) != 0 && s)
    s = sysError("close failed", tmp, errno);
  return s;
}

/// fsyncs every file and directory below `root`, then `root` itself, so that
/// the rename that publishes `root` cannot become durable before its content.
Status syncTree(const std::string &root) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    bool isDir = it->is_directory(ec);
    if (!isDir && !it->is_regular_file(ec))
      continue;
    if (Status s = syncPath(it->path().string(), isDir); !s)
      return s;
  }
  if (ec)
    return Status::error(root + ": cannot list: " + ec.message());
  return syncPath(root, /*isDir=*/true);
}

/// Whether `name` is `base + marker + <digits>`, i.e. one of our leftovers.
/// Whether process `pid` runs: it exists and is no zombie (killed, not yet
/// reaped: a killed run's ranks until their reaper waits for them).
bool processRuns(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH)
    return false;
  std::ifstream stat("/proc/" + std::to_string(long(pid)) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t end = text.rfind(')'); // "pid (comm) S ...": comm may hold ')'
  return end == std::string::npos || end + 2 >= text.size() ||
         (text[end + 2] != 'Z' && text[end + 2] != 'X');
}

/// Whether `name` is base + marker + a pid whose process is gone: a live
/// one (not this process) may be replacing the directory right now, and
/// its files are not leftovers.
bool isLeftover(const std::string &name, const std::string &base,
                const std::string &marker) {
  std::string prefix = base + marker;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0)
    return false;
  for (size_t i = prefix.size(); i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9')
      return false;
  if (name.size() - prefix.size() > 9) // no pid of Linux's (at most 2^22)
    return true;
  const pid_t pid = static_cast<pid_t>(std::stol(name.substr(prefix.size())));
  return pid == ::getpid() || !processRuns(pid);
}

} // namespace

Status writeFileAtomically(const std::string &path,
                           const std::function<Status(std::ostream &)> &write) {
  std::string tmp = path + ".tmp." + pidSuffix();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return sysError("cannot create temporary file", tmp, errno);
  Status s = writeAndSync(fd, tmp, write);
  if (s && ::rename(tmp.c_str(), path.c_str()) != 0)
    s = sysError("cannot rename " + tmp + " over it", path, errno);
  if (!s) {
    ::unlink(tmp.c_str());
    return s;
  }
  return syncPath(parentDir(path), /*isDir=*/true);
}

Status replaceDirectoryAtomically(
    const std::string &dirIn,
    const std::function<Status(const std::string &tmpDir)> &fill) {
  std::string dir = withoutTrailingSlash(dirIn);
  std::string tmp = dir + ".tmp." + pidSuffix();
  std::string old = dir + ".old." + pidSuffix();
  std::error_code ec;
  // Leftovers of an earlier process that had the same pid.
  fs::remove_all(tmp, ec);
  fs::remove_all(old, ec);
  fs::create_directories(tmp, ec);
  if (ec)
    return Status::error(tmp + ": cannot create directory: " + ec.message());

  Status s = runCallback(tmp, [&] { return fill(tmp); });
  if (s)
    s = syncTree(tmp);
  bool hadOld = s && fs::exists(dir, ec);
  if (s && hadOld && ::rename(dir.c_str(), old.c_str()) != 0)
    s = sysError("cannot move the old directory to " + old, dir, errno);
  if (s && ::rename(tmp.c_str(), dir.c_str()) != 0) {
    s = sysError("cannot move " + tmp + " into place", dir, errno);
    if (hadOld)
      (void)::rename(old.c_str(), dir.c_str());
  }
  if (!s) {
    fs::remove_all(tmp, ec);
    return s;
  }
  s = syncPath(parentDir(dir), /*isDir=*/true);
  // The new directory is in place; an old one that cannot be removed only
  // wastes space, and recoverInterruptedReplace clears it later.
  if (hadOld)
    fs::remove_all(old, ec);
  return s;
}

Status recoverInterruptedReplace(const std::string &dirIn) {
  std::string dir = withoutTrailingSlash(dirIn);
  std::string parent = parentDir(dir);
  std::string base = fs::path(dir).filename().string();
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    return Status::ok();

  std::vector<fs::path> temps, olds;
  for (const fs::directory_entry &e : fs::directory_iterator(parent, ec)) {
    std::string name = e.path().filename().string();
    if (isLeftover(name, base, ".tmp."))
      temps.push_back(e.path());
    else if (isLeftover(name, base, ".old."))
      olds.push_back(e.path());
  }
  if (ec)
    return Status::error(parent + ": cannot list: " + ec.message());

  // A crash between the two renames leaves `dir` missing and the previous
  // content under .old.<pid>; if several exist, the newest is the latest save.
  if (!fs::exists(dir, ec) && !olds.empty()) {
    auto newest = olds.begin();
    for (auto it = olds.begin(); it != olds.end(); ++it)
      if (fs::last_write_time(*it, ec) > fs::last_write_time(*newest, ec))
        newest = it;
    if (::rename(newest->c_str(), dir.c_str()) != 0)
      return sysError("cannot restore " + newest->string(), dir, errno);
    olds.erase(newest);
  }
  for (const std::vector<fs::path> *list : {&temps, &olds})
    for (const fs::path &p : *list) {
      fs::remove_all(p, ec);
      if (ec)
        return Status::error(p.string() + ": cannot remove: " + ec.message());
    }
  return syncPath(parent, /*isDir=*/true);
}

std::string interruptedReplaceHint(const std::string &dirIn) {
  const std::string dir = withoutTrailingSlash(dirIn);
  const std::string base = fs::path(dir).filename().string();
  std::error_code ec;
  if (fs::exists(dir, ec))
    return "";
  for (const fs::directory_entry &e : fs::directory_iterator(parentDir(dir), ec))
    if (isLeftover(e.path().filename().string(), base, ".old.")) {
      const std::string old = (fs::path(dir).parent_path() / e.path().filename()).string();
      return "; " + old + " holds what an interrupted replace of it moved aside (mv " + old +
             " " + dir + " restores it)";
    }
  return "";
}

} // namespace mt::io
