// The rendezvous directory as a key-value store: one file per key.
#include "runtime/comm/FileStore.h"

#include "runtime/support/FileKind.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <unistd.h>

namespace mt::comm {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

Expected<FileStore> FileStore::open(const std::string &dir, milliseconds timeout) {
  if (timeout.count() <= 0)
    return Status::error("the rendezvous timeout must be positive (got " +
                         std::to_string(timeout.count()) + " ms)");
  if (dir.empty())
    return Status::error("no rendezvous directory (MT_RENDEZVOUS)");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return Status::error("rendezvous directory '" + dir + "' does not exist (MT_RENDEZVOUS)");
  return FileStore(dir, timeout);
}

// "mt-" and the key with every character outside [A-Za-z0-9._-] written as
// %XX, so that distinct keys are distinct file names.
std::string FileStore::path(const std::string &key) const {
  static const char *hex = "0123456789ABCDEF";
  std::string name = "mt-";
  for (unsigned char c : key) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-') {
      name += char(c);
    } else {
      name += '%';
      name += hex[c >> 4];
      name += hex[c & 15];
    }
  }
  return dir_ + "/" + name;
}

std::string FileStore::describe() const {
  return "rendezvous directory '" + dir_ + "' (MT_RENDEZVOUS)";
}

Status FileStore::set(const std::string &key, const std::vector<char> &value) {
  const std::string target = path(key);
  std::error_code ec;
  if (std::filesystem::exists(target, ec))
    return Status::error("rendezvous key '" + key + "' already exists in '" + dir_ +
                         "': the directory holds the keys of an earlier job; give every "
                         "job a fresh directory (MT_RENDEZVOUS)");
  const std::string aside = target + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(aside, std::ios::binary | std::ios::trunc);
    out.write(value.data(), std::streamsize(value.size()));
    if (!out.flush())
      return Status::error("cannot write rendezvous key '" + key + "' in '" + dir_ + "'");
  }
  std::filesystem::rename(aside, target, ec);
  if (ec)
    return Status::error("cannot publish rendezvous key '" + key + "' in '" + dir_ +
                         "': " + ec.message());
  return Status::ok();
}

Status FileStore::wait(const std::vector<std::string> &keys) {
  const auto deadline = Clock::now() + timeout_;
  for (;;) {
    std::string missing;
    for (const std::string &key : keys) {
      std::error_code ec;
      if (!std::filesystem::exists(path(key), ec))
        missing += (missing.empty() ? "'" : ", '") + key + "'";
    }
    if (missing.empty())
      return Status::ok();
    if (Clock::now() >= deadline)
      return Status::error("no rendezvous key " + missing + " in '" + dir_ + "' within " +
                           formatDuration(timeout_));
    std::this_thread::sleep_for(milliseconds(5));
  }
}

Expected<std::vector<char>> FileStore::get(const std::string &key) {
  if (Status s = wait({key}); !s)
    return s;
  // Ranks publish regular files only (set's rename); anything else is not a
  // key, and a FIFO's open would wait for a writer past every timeout.
  if (std::string what = notARegularFile(path(key)); !what.empty())
    return Status::error("rendezvous key '" + key + "' in '" + dir_ + "' is " + what +
                         ", not a file a rank wrote: give every job a fresh directory "
                         "(MT_RENDEZVOUS)");
  std::ifstream in(path(key), std::ios::binary);
  std::vector<char> value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    return Status::error("cannot read rendezvous key '" + key + "' in '" + dir_ + "'");
  return value;
}

} // namespace mt::comm
