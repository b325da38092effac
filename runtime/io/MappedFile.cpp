#include "runtime/io/MappedFile.h"

#include "runtime/support/FileKind.h"

#include <cerrno>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mt::io {
namespace {

Status sysError(const std::string &path, const std::string &what) {
  return Status::error(path + ": " + what + ": " + std::strerror(errno));
}

} // namespace

Expected<MappedFile> MappedFile::open(const std::string &path, const std::string &kind) {
  // O_NONBLOCK: opening a FIFO would wait for a writer (fstat refuses it).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return sysError(path, "cannot open " + kind);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = sysError(path, "cannot stat");
    ::close(fd);
    return s;
  }
  if (std::string what = notARegularFile(st.st_mode); !what.empty()) {
    ::close(fd);
    return Status::error(path + ": " + what + ", not a " + kind);
  }
  MappedFile file;
  file.size_ = uint64_t(st.st_size);
  if (file.size_ > 0) {
    void *map = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    // The mapping stays valid after close; the descriptor is no longer needed.
    Status mapError = map == MAP_FAILED ? sysError(path, "cannot mmap") : Status::ok();
    ::close(fd);
    if (!mapError) {
      file.size_ = 0;
      return mapError;
    }
    file.data_ = static_cast<const unsigned char *>(map);
  } else {
    ::close(fd);
  }
  return file;
}

MappedFile &MappedFile::operator=(MappedFile &&other) noexcept {
  if (this != &other) {
    this->~MappedFile();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_)
    ::munmap(const_cast<unsigned char *>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

} // namespace mt::io
