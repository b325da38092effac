// The rendezvous store over TCP: rank 0 serves it at MASTER_ADDR:MASTER_PORT
// and every rank (rank 0 too) is a client, so several nodes meet without a
// shared file system. Debian's Gloo has no TCP store and the GPU machines
// have no Gloo, so both backends share this small one.
#ifndef MT_RUNTIME_COMM_TCPSTORE_H
#define MT_RUNTIME_COMM_TCPSTORE_H

#include "runtime/comm/Store.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace mt::comm {

class TcpStoreServer;

/// A Store whose keys live in rank 0's process. One connection per rank,
/// one request at a time: a request is an operation byte and its
/// length-prefixed fields, the answer a status byte and a length-prefixed
/// value or error message (integers little-endian). The server answers
/// waits itself when the keys arrive or its deadline passes, so a timeout
/// lists the keys still missing; the client waits a little longer for the
/// answer, and says so if the server does not give one (rank 0 died).
///
/// Joining checks the rank and the world size against rank 0's: a rank
/// started with another WORLD_SIZE, or a rank started twice, fails the
/// store for every rank at once, with a message naming both.
class TcpStore final : public Store {
public:
  /// Rank 0 of info first listens on info.storePort (on the loopback
  /// interface when info.storeAddr is a loopback address, else on all);
  /// every rank then connects to info.storeAddr:info.storePort, retrying a
  /// refused connection until `timeout` (> 0), and joins.
  static Expected<std::unique_ptr<TcpStore>> connect(const RankInfo &info,
                                                     std::chrono::milliseconds timeout);
  ~TcpStore() override;

  Status set(const std::string &key, const std::vector<char> &value) override;
  Expected<std::vector<char>> get(const std::string &key) override;
  Status wait(const std::vector<std::string> &keys) override;
  std::string describe() const override;

  /// A request's answer: a value, or the server's error message.
  struct Reply;

private:
  TcpStore(const RankInfo &info, std::chrono::milliseconds timeout);
  Status open();
  Expected<Reply> request(const std::vector<char> &message, std::chrono::milliseconds wait);
  /// "[rank 1/4] rendezvous store 10.0.0.1:29500 (MASTER_ADDR:MASTER_PORT): ".
  std::string head() const;

  int rank_, worldSize_;
  std::string addr_, source_;
  int port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::unique_ptr<TcpStoreServer> server_; // rank 0 only
};

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_TCPSTORE_H
