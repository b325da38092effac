// The key-value store through which the ranks of a job exchange what their
// backend needs to connect (Gloo's addresses, NCCL's unique ids): the Store
// interface, and openStore, which picks the job's store from its RankInfo.
#ifndef MT_RUNTIME_COMM_STORE_H
#define MT_RUNTIME_COMM_STORE_H

#include "runtime/comm/RankEnvironment.h"
#include "runtime/support/Status.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace mt::comm {

/// Keys are written once (a second set() of a key is an error) and read by
/// any rank; every wait is bounded by the store's timeout. Errors name the
/// store (its directory, or its address and the variables it came from).
class Store {
public:
  virtual ~Store() = default;
  /// Publishes `value` under `key` (any characters).
  virtual Status set(const std::string &key, const std::vector<char> &value) = 0;
  /// Waits up to the timeout for `key`'s value.
  virtual Expected<std::vector<char>> get(const std::string &key) = 0;
  /// Waits up to the timeout for all `keys`; the error lists those missing.
  virtual Status wait(const std::vector<std::string> &keys) = 0;
  /// "rendezvous directory '/shared/x' (MT_RENDEZVOUS)" or
  /// "rendezvous store 10.0.0.1:29500 (MASTER_ADDR:MASTER_PORT)", for messages.
  virtual std::string describe() const = 0;
};

/// "2 s", "1.5 s" or "700 ms": a timeout as messages give it.
std::string formatDuration(std::chrono::milliseconds d);

/// The store of a job of info.worldSize > 1 ranks: the FileStore in
/// info.rendezvous when it is set (mtrun --nproc sets it), otherwise the
/// TcpStore at info.storeAddr:info.storePort, served by rank 0. Every rank
/// joins before this returns, so a rank that is missing, or was started
/// with another world size, is an error here, within `timeout` (> 0).
Expected<std::unique_ptr<Store>> openStore(const RankInfo &info,
                                           std::chrono::milliseconds timeout);

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_STORE_H
