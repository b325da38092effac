// What the safetensors tests share: a file built byte by byte, raw reads
// and writes, the expectation of an error naming its parts, and a fixture
// with a fresh directory per test.
#ifndef MT_TEST_RUNTIME_SAFETENSORSTESTSUPPORT_H
#define MT_TEST_RUNTIME_SAFETENSORSTESTSUPPORT_H

#include "runtime/io/Safetensors.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace mt::io::test {

namespace fs = std::filesystem;

inline void appendLe(std::string &out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

/// The bytes of a safetensors file: 8-byte length, `header` (space-padded to
/// a multiple of 8 unless `pad` is false), then `data`.
inline std::string fileBytes(std::string header, const std::string &data, bool pad = true) {
  if (pad)
    header.resize((header.size() + 7) / 8 * 8, ' ');
  std::string out;
  appendLe(out, header.size(), 8);
  return out + header + data;
}

inline void writeRaw(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string readRaw(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Expects `result` to have failed with a message containing every part.
template <typename T>
void expectError(const T &result, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(result.isOk()) << "expected an error mentioning " << *parts.begin();
  for (const std::string &part : parts)
    EXPECT_NE(result.message().find(part), std::string::npos)
        << "message: " << result.message() << "\nlacks: " << part;
}

/// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::path(::testing::TempDir()) /
           ("mt-safetensors-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string &name) const { return (dir_ / name).string(); }

  /// Writes a file from a header and data and opens it.
  Expected<SafetensorsFile> openBytes(const std::string &header, const std::string &data) {
    writeRaw(path("t.safetensors"), fileBytes(header, data));
    return openSafetensors(path("t.safetensors"));
  }
  /// Writes an F32 tensor [values.size()] for each name into one file.
  void writeShard(const std::string &file,
                  const std::vector<std::pair<std::string, std::vector<float>>> &ts) {
    std::vector<TensorToWrite> tensors;
    for (const auto &[name, values] : ts)
      tensors.push_back({name, Dtype::F32, {int64_t(values.size())}, values.data()});
    ASSERT_TRUE(writeSafetensors(path(file), tensors).isOk());
  }

  fs::path dir_;
};

} // namespace mt::io::test

#endif // MT_TEST_RUNTIME_SAFETENSORSTESTSUPPORT_H
