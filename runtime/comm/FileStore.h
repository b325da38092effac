// A key-value store in the job's rendezvous directory (MT_RENDEZVOUS): how
// the ranks of a group exchange what their backend needs to connect (NCCL's
// unique ids) on machines with or without Gloo.
#ifndef MT_RUNTIME_COMM_FILESTORE_H
#define MT_RUNTIME_COMM_FILESTORE_H

#include "runtime/comm/Store.h"
#include "runtime/support/Status.h"

#include <chrono>
#include <string>
#include <vector>

namespace mt::comm {

/// Each key is one file of the directory, written aside and renamed into
/// place, so a reader sees a whole value or none. Keys are never rewritten:
/// a job needs a fresh directory, as Gloo's FileStore does.
class FileStore final : public Store {
public:
  /// `dir` must exist; `timeout` (> 0) bounds every wait.
  static Expected<FileStore> open(const std::string &dir, std::chrono::milliseconds timeout);

  /// Publishes `value` under `key` (any characters); an error when the key
  /// exists (the directory holds an earlier job's keys) or on I/O failure.
  Status set(const std::string &key, const std::vector<char> &value) override;
  /// Waits up to the timeout for `key`'s value.
  Expected<std::vector<char>> get(const std::string &key) override;
  /// Waits up to the timeout for all `keys`; the error lists those missing.
  Status wait(const std::vector<std::string> &keys) override;
  std::string describe() const override;
  const std::string &dir() const { return dir_; }

private:
  FileStore(std::string dir, std::chrono::milliseconds timeout)
      : dir_(std::move(dir)), timeout_(timeout) {}
  std::string path(const std::string &key) const;

  std::string dir_;
  std::chrono::milliseconds timeout_;
};

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_FILESTORE_H
