// TcpStore: the server thread of rank 0 and the client of every rank.
#include "runtime/comm/TcpStore.h"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mt::comm {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

enum Op : uint8_t { kJoin = 1, kSet, kGet, kWait };
enum Answer : uint8_t { kOk = 0, kError = 1 };
constexpr uint32_t kMagic = 0x4d545331; // "MTS1": not another program's store
// How long a client waits for an answer beyond the server's own deadline.
constexpr milliseconds kAnswerGrace{5000};

// Length-prefixed little-endian fields.
struct Writer {
  std::vector<char> bytes;
  void u8(uint8_t v) { bytes.push_back(char(v)); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i)
      bytes.push_back(char(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i)
      bytes.push_back(char(v >> (8 * i)));
  }
  void str(const std::string &s) {
    u32(uint32_t(s.size()));
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void blob(const std::vector<char> &v) {
    u64(v.size());
    bytes.insert(bytes.end(), v.begin(), v.end());
  }
};

bool sendAll(int fd, const char *data, size_t n) {
  while (n > 0) {
    ssize_t k = ::send(fd, data, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    data += k, n -= size_t(k);
  }
  return true;
}

// poll until `p` is ready or `deadline` passes (once at least): poll's
// count, 0 at the deadline, -1 with errno on failure. EINTR (a signal the
// stop handlers took) is no timeout: it polls again for the time left.
int pollUntil(pollfd &p, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    int ready = ::poll(&p, 1, int(std::clamp<int64_t>(left, 0, 1 << 30)));
    if (ready >= 0 || errno != EINTR)
      return ready;
  }
}

// Reads exactly n bytes; `deadline` bounds the wait (none: the server,
// whose reads end when the peer or the server's shutdown closes the socket).
enum class Read { Ok, Closed, TimedOut };
Read readAll(int fd, char *data, size_t n, std::optional<Clock::time_point> deadline) {
  while (n > 0) {
    if (pollfd p{fd, POLLIN, 0}; deadline && pollUntil(p, *deadline) == 0)
      return Read::TimedOut;
    ssize_t k = ::recv(fd, data, n, 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return Read::Closed;
    data += k, n -= size_t(k);
  }
  return Read::Ok;
}

uint64_t littleEndian(const char *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}

// Blocking field reads of the server; false when the client went away.
struct Reader {
  int fd;
  bool u32(uint32_t &v) {
    char b[4];
    if (readAll(fd, b, 4, std::nullopt) != Read::Ok)
      return false;
    v = uint32_t(littleEndian(b, 4));
    return true;
  }
  bool u64(uint64_t &v) {
    char b[8];
    if (readAll(fd, b, 8, std::nullopt) != Read::Ok)
      return false;
    v = littleEndian(b, 8);
    return true;
  }
  bool str(std::string &s) {
    uint32_t n;
    if (!u32(n))
      return false;
    s.resize(n);
    return n == 0 || readAll(fd, s.data(), n, std::nullopt) == Read::Ok;
  }
  bool blob(std::vector<char> &v) {
    uint64_t n;
    if (!u64(n) || n > (uint64_t(1) << 32))
      return false;
    v.resize(size_t(n));
    return n == 0 || readAll(fd, v.data(), size_t(n), std::nullopt) == Read::Ok;
  }
};

std::string quoteKeys(const std::vector<std::string> &keys) {
  std::string s;
  for (size_t i = 0; i < keys.size() && i < 8; ++i)
    s += (i ? ", '" : "'") + keys[i] + "'";
  if (keys.size() > 8)
    s += " and " + std::to_string(keys.size() - 8) + " more";
  return s;
}

} // namespace

//===----------------------------------------------------------------------===//
// The server: a thread accepting connections, a thread per connection.
//===----------------------------------------------------------------------===//

class TcpStoreServer {
public:
  TcpStoreServer(int listenFd, int worldSize) : listen_(listenFd), worldSize_(worldSize) {
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  // Answers the requests under way first (waits: with "rank 0 is exiting"),
  // so that a rank that caused rank 0's error gets the message, not a
  // closed connection.
  ~TcpStoreServer() {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      stopping_ = true;
      changed_.notify_all();
      changed_.wait_for(lock, std::chrono::seconds(1), [&] { return busy_ == 0; });
      for (int fd : connections_)
        ::shutdown(fd, SHUT_RDWR); // wakes the threads blocked reading
    }
    acceptor_.join();
    for (std::thread &t : handlers_)
      t.join();
    ::close(listen_);
  }

private:
  void acceptLoop() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_)
          return;
      }
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0)
        continue;
      int fd = ::accept(listen_, nullptr, nullptr);
      if (fd < 0)
        continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      connections_.push_back(fd);
      handlers_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    Reader in{fd};
    for (;;) {
      char op;
      if (readAll(fd, &op, 1, std::nullopt) != Read::Ok)
        break;
      Busy busy(*this);
      std::optional<std::pair<Answer, std::vector<char>>> answer;
      switch (Op(op)) {
      case kJoin:
        answer = join(in);
        break;
      case kSet:
        answer = set(in);
        break;
      case kGet:
      case kWait:
        answer = wait(in, Op(op) == kGet);
        break;
      }
      if (!answer)
        break; // a malformed request or a closed connection
      Writer out;
      out.u8(answer->first);
      out.blob(answer->second);
      if (!sendAll(fd, out.bytes.data(), out.bytes.size()))
        break;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    connections_.erase(std::find(connections_.begin(), connections_.end(), fd));
    ::close(fd);
  }

  // Counts a request from its first byte to its answer.
  struct Busy {
    TcpStoreServer &server;
    explicit Busy(TcpStoreServer &s) : server(s) {
      std::lock_guard<std::mutex> lock(server.mutex_);
      ++server.busy_;
    }
    ~Busy() {
      std::lock_guard<std::mutex> lock(server.mutex_);
      --server.busy_;
      server.changed_.notify_all();
    }
  };

  using Result = std::optional<std::pair<Answer, std::vector<char>>>;
  static Result error(const std::string &message) {
    return std::make_pair(kError, std::vector<char>(message.begin(), message.end()));
  }
  static Result ok(std::vector<char> value = {}) { return std::make_pair(kOk, std::move(value)); }

  // Called with the lock held: from now on every request of every rank fails.
  void failAll(const std::string &message) {
    if (!failure_)
      failure_ = message;
    changed_.notify_all();
  }

  Result join(Reader &in) {
    uint32_t magic, rank, worldSize;
    if (!in.u32(magic))
      return std::nullopt;
    if (magic != kMagic)
      return error("not an mtc rendezvous client");
    if (!in.u32(rank) || !in.u32(worldSize))
      return std::nullopt;
    std::lock_guard<std::mutex> lock(mutex_);
    if (int(worldSize) != worldSize_)
      failAll("rank " + std::to_string(rank) + " was started with a world size of " +
              std::to_string(worldSize) + ", rank 0 with " + std::to_string(worldSize_) +
              ": every rank needs the same");
    else if (!joined_.emplace(int(rank)).second)
      failAll("two processes joined as rank " + std::to_string(rank) +
              ": each rank needs its own RANK");
    return failure_ ? error(*failure_) : ok();
  }

  Result set(Reader &in) {
    std::string key;
    std::vector<char> value;
    if (!in.str(key) || !in.blob(value))
      return std::nullopt;
    std::lock_guard<std::mutex> lock(mutex_);
    if (failure_)
      return error(*failure_);
    if (!keys_.emplace(key, std::move(value)).second)
      return error("key '" + key + "' was set before (keys are written once)");
    changed_.notify_all();
    return ok();
  }

  // Answers when every key is there (a get: with the value), when the
  // store fails, or at the client's deadline with the keys still missing.
  Result wait(Reader &in, bool get) {
    std::vector<std::string> keys;
    uint32_t n = 1;
    if (!get && !in.u32(n))
      return std::nullopt;
    keys.resize(n);
    for (std::string &key : keys)
      if (!in.str(key))
        return std::nullopt;
    uint64_t ms;
    if (!in.u64(ms))
      return std::nullopt;
    std::unique_lock<std::mutex> lock(mutex_);
    std::vector<std::string> missing;
    auto done = [&] {
      missing.clear();
      for (const std::string &key : keys)
        if (!keys_.count(key))
          missing.push_back(key);
      return missing.empty() || failure_ || stopping_;
    };
    changed_.wait_until(lock, Clock::now() + milliseconds(ms), done);
    if (failure_)
      return error(*failure_);
    if (!missing.empty() && stopping_)
      return error("rank 0 is exiting (see its error) with key " + quoteKeys(missing) +
                   " still missing");
    if (!missing.empty())
      return error("no key " + quoteKeys(missing) + " within " +
                   formatDuration(milliseconds(ms)));
    return ok(get ? keys_.at(keys[0]) : std::vector<char>());
  }

  int listen_;
  int worldSize_;
  std::thread acceptor_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  int busy_ = 0; // requests being answered
  std::vector<int> connections_;
  std::vector<std::thread> handlers_;
  std::map<std::string, std::vector<char>> keys_;
  std::set<int> joined_;
  std::optional<std::string> failure_;
};

//===----------------------------------------------------------------------===//
// The client
//===----------------------------------------------------------------------===//

namespace {

// IPv4 addresses of `host`, or the resolver's error.
Expected<std::vector<sockaddr_in>> resolve(const std::string &host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo *found = nullptr;
  if (int r = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); r != 0)
    return Status::error(std::string("cannot resolve '") + host + "': " + gai_strerror(r));
  std::vector<sockaddr_in> addresses;
  for (addrinfo *a = found; a; a = a->ai_next)
    addresses.push_back(*reinterpret_cast<sockaddr_in *>(a->ai_addr));
  ::freeaddrinfo(found);
  return addresses;
}

// Listens on `port`, on loopback when `host` resolves there, else on all
// interfaces (other nodes reach rank 0 by whatever name MASTER_ADDR is).
Expected<int> listenOn(const std::string &host, int port) {
  auto addresses = resolve(host, port);
  if (!addresses)
    return addresses.status();
  sockaddr_in bind{};
  bind.sin_family = AF_INET;
  bind.sin_port = htons(uint16_t(port));
  bool loopback = !addresses->empty() &&
                  (ntohl(addresses->front().sin_addr.s_addr) >> 24) == 127;
  bind.sin_addr.s_addr = loopback ? addresses->front().sin_addr.s_addr : htonl(INADDR_ANY);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return Status::error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr *>(&bind), sizeof bind) != 0 ||
      ::listen(fd, 1024) != 0) {
    int err = errno;
    ::close(fd);
    return Status::error(std::string("cannot listen on port ") + std::to_string(port) + ": " +
                         std::strerror(err) +
                         (err == EADDRINUSE ? " (another program or job holds it)" : ""));
  }
  return fd;
}

// One connection attempt, bounded by `deadline`; the errno of a failure.
int tryConnect(const sockaddr_in &address, Clock::time_point deadline, int &fdOut) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return errno;
  int err = 0;
  if (::connect(fd, reinterpret_cast<const sockaddr *>(&address), sizeof address) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (int ready = pollUntil(p, deadline); ready <= 0) {
        err = ready == 0 ? ETIMEDOUT : errno;
      } else {
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      }
    }
  }
  if (err != 0) {
    ::close(fd);
    return err;
  }
  int flags = 0; // blocking from now on; reads are bounded by poll
  ::ioctl(fd, FIONBIO, &flags);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fdOut = fd;
  return 0;
}

} // namespace

TcpStore::TcpStore(const RankInfo &info, milliseconds timeout)
    : rank_(info.rank), worldSize_(info.worldSize), addr_(info.storeAddr),
      source_(info.storeSource), port_(info.storePort), timeout_(timeout) {}

TcpStore::~TcpStore() {
  if (fd_ >= 0)
    ::close(fd_);
}

std::string TcpStore::describe() const {
  return "rendezvous store " + addr_ + ":" + std::to_string(port_) + " (" + source_ +
         ", served by rank 0)";
}

std::string TcpStore::head() const {
  return "[rank " + std::to_string(rank_) + "/" + std::to_string(worldSize_) + "] " +
         describe() + ": ";
}

Expected<std::unique_ptr<TcpStore>> TcpStore::connect(const RankInfo &info,
                                                       milliseconds timeout) {
  std::unique_ptr<TcpStore> store(new TcpStore(info, timeout));
  if (timeout.count() <= 0)
    return Status::error(store->head() + "the timeout must be positive (got " +
                         std::to_string(timeout.count()) + " ms)");
  if (info.storeAddr.empty() || info.storePort < 1 || info.storePort > 65535)
    return Status::error(store->head() + "no address or port");
  if (info.rank == 0) {
    auto fd = listenOn(info.storeAddr, info.storePort);
    if (!fd)
      return Status::error(store->head() + fd.message());
    store->server_ = std::make_unique<TcpStoreServer>(*fd, info.worldSize);
  }
  if (Status s = store->open(); !s)
    return s;
  return store;
}

// Connects (retrying while rank 0 is not listening yet) and joins.
Status TcpStore::open() {
  auto addresses = resolve(addr_, port_);
  if (!addresses)
    return Status::error(head() + addresses.message());
  const auto deadline = Clock::now() + timeout_;
  int err = 0;
  while (fd_ < 0) {
    for (const sockaddr_in &a : *addresses)
      if ((err = tryConnect(a, deadline, fd_)) == 0)
        break;
    if (fd_ >= 0)
      break;
    if (Clock::now() >= deadline)
      return Status::error(head() + "cannot connect within " + formatDuration(timeout_) +
                           ": " + std::strerror(err) +
                           " (is rank 0 running, on that host, with the same port?)");
    std::this_thread::sleep_for(milliseconds(50));
  }
  Writer join;
  join.u8(kJoin);
  join.u32(kMagic);
  join.u32(uint32_t(rank_));
  join.u32(uint32_t(worldSize_));
  auto reply = request(join.bytes, milliseconds(0));
  return reply ? Status::ok() : reply.status();
}

// Sends one request and waits for its answer: up to the server's own wait
// (`wait`) plus a grace period, or the store's timeout for an immediate one.
// The answer's value, or the server's error message as an error.
Expected<std::vector<char>> TcpStore::request(const std::vector<char> &message,
                                              milliseconds wait) {
  if (fd_ < 0)
    return Status::error(head() + "not connected (an earlier request failed)");
  auto fail = [&](const std::string &why) -> Status {
    ::close(fd_);
    fd_ = -1;
    return Status::error(head() + why);
  };
  if (!sendAll(fd_, message.data(), message.size()))
    return fail(std::string("cannot send a request: ") + std::strerror(errno) +
                " (did rank 0 exit?)");
  const milliseconds patience = wait.count() > 0 ? wait + kAnswerGrace : timeout_;
  const auto deadline = Clock::now() + patience;
  char header[9];
  Read r = readAll(fd_, header, sizeof header, deadline);
  std::vector<char> value;
  if (r == Read::Ok) {
    value.resize(size_t(littleEndian(header + 1, 8)));
    if (!value.empty())
      r = readAll(fd_, value.data(), value.size(), deadline);
  }
  if (r == Read::Closed)
    return fail("rank 0 closed the connection (did it exit, or is this port another "
                "program's, e.g. torchrun's own store? then set MT_STORE_PORT)");
  if (r == Read::TimedOut)
    return fail("no answer within " + formatDuration(patience) + " (is rank 0 stopped?)");
  if (header[0] != char(kOk))
    return Status::error(head() + std::string(value.begin(), value.end()));
  return value;
}

Status TcpStore::set(const std::string &key, const std::vector<char> &value) {
  Writer w;
  w.u8(kSet);
  w.str(key);
  w.blob(value);
  auto reply = request(w.bytes, milliseconds(0));
  return reply ? Status::ok() : reply.status();
}

Expected<std::vector<char>> TcpStore::get(const std::string &key) {
  Writer w;
  w.u8(kGet);
  w.str(key);
  w.u64(uint64_t(timeout_.count()));
  return request(w.bytes, timeout_);
}

Status TcpStore::wait(const std::vector<std::string> &keys) {
  Writer w;
  w.u8(kWait);
  w.u32(uint32_t(keys.size()));
  for (const std::string &key : keys)
    w.str(key);
  w.u64(uint64_t(timeout_.count()));
  auto reply = request(w.bytes, timeout_);
  return reply ? Status::ok() : reply.status();
}

} // namespace mt::comm
