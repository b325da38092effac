// What the communication tests share: a scratch rendezvous directory and a
// free TCP port on the loopback address, where ranks meet as mtrun's do (a
// directory, or MASTER_ADDR:MASTER_PORT).
#ifndef MT_TEST_RUNTIME_COMM_COMMTESTSUPPORT_H
#define MT_TEST_RUNTIME_COMM_COMMTESTSUPPORT_H

#include <cstdlib>
#include <filesystem>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mt::commtest {

/// A fresh directory under the temporary directory (mtcomm-XXXXXX),
/// removed with everything in it at the end of the scope.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "mtcomm-XXXXXX").string();
    path = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
};

/// A port on 127.0.0.1 that nobody listens on right now: the kernel's pick
/// of a free one, released again (another process may take it before the
/// test binds it, as with any such pick). 0 when the kernel gives none.
inline int freeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0;
  ::close(fd);
  return ok ? ntohs(a.sin_port) : 0;
}

} // namespace mt::commtest

#endif // MT_TEST_RUNTIME_COMM_COMMTESTSUPPORT_H
