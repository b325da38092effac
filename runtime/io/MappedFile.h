// A whole file mapped read-only, and little-endian field loads from it: what
// the in-place readers of token files and prepared SFT files share.
#ifndef MT_RUNTIME_IO_MAPPEDFILE_H
#define MT_RUNTIME_IO_MAPPEDFILE_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <cstring>
#include <string>

namespace mt::io {

/// `path` mapped with PROT_READ, MAP_PRIVATE. Move-only; unmaps on
/// destruction. An empty file has size() 0 and data() null (nothing is
/// mapped).
class MappedFile {
public:
  /// Errors: "PATH: cannot open KIND: <strerror>", "PATH: a directory, not a
  /// KIND" (or "a device or pipe, not a KIND"), "PATH: cannot stat: ...",
  /// "PATH: cannot mmap: ...", with `kind` e.g. "token file".
  static Expected<MappedFile> open(const std::string &path, const std::string &kind);

  MappedFile() = default;
  MappedFile(MappedFile &&other) noexcept { *this = static_cast<MappedFile &&>(other); }
  MappedFile &operator=(MappedFile &&other) noexcept;
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;
  ~MappedFile();

  const unsigned char *data() const { return data_; }
  uint64_t size() const { return size_; }

private:
  const unsigned char *data_ = nullptr;
  uint64_t size_ = 0;
};

/// Little-endian unsigned fields of a file header.
inline uint32_t loadU32(const unsigned char *p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t loadU64(const unsigned char *p) {
  return uint64_t(loadU32(p)) | uint64_t(loadU32(p + 4)) << 32;
}

} // namespace mt::io

#endif // MT_RUNTIME_IO_MAPPEDFILE_H
