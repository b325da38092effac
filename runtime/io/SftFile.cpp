// Prepared SFT files: atomic writer, mmap reader with full validation.
#include "runtime/io/SftFile.h"

#include "runtime/support/AtomicFile.h"
#include "runtime/support/CheckedMath.h"
#include "runtime/support/Fnv1a.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <utility>

namespace mt::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "prepared SFT files are read in place and need a little-endian host");

/// The first bad id or label of `ids`/`labels` ([rows, S + 1]), or ok.
Status checkValues(const std::string &path, const uint32_t *ids, const int32_t *labels,
                   uint64_t count, int64_t seqLen, uint64_t vocab) {
  auto at = [&](uint64_t i) {
    return "row " + std::to_string(i / uint64_t(seqLen + 1)) + " position " +
           std::to_string(i % uint64_t(seqLen + 1));
  };
  for (uint64_t i = 0; i < count; ++i) {
    if (ids[i] >= vocab)
      return Status::error(path + ": " + at(i) + ": id " + std::to_string(ids[i]) +
                           " is >= the vocab size " + std::to_string(vocab));
    if (labels[i] != kIgnoreIndex && (labels[i] < 0 || uint64_t(labels[i]) >= vocab))
      return Status::error(path + ": " + at(i) + ": label " + std::to_string(labels[i]) +
                           " is neither -100 (no loss) nor an id below the vocab size " +
                           std::to_string(vocab));
  }
  return Status::ok();
}

/// The first position id of `positions` ([rows, S + 1]) that neither is 0
/// nor continues its predecessor by one (a row starts at 0), or ok.
Status checkPositions(const std::string &path, const uint32_t *positions, uint64_t count,
                      int64_t seqLen) {
  const uint64_t width = uint64_t(seqLen) + 1;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t t = i % width;
    const uint32_t p = positions[i];
    if (p != 0 && (t == 0 || p != positions[i - 1] + 1))
      return Status::error(path + ": row " + std::to_string(i / width) + " position " +
                           std::to_string(t) + ": position id " + std::to_string(p) +
                           " is neither 0 (a document's first token) nor " +
                           (t == 0 ? std::string("0 (a row starts a document)")
                                   : std::to_string(uint64_t(positions[i - 1]) + 1) +
                                         " (the previous id + 1)"));
  }
  return Status::ok();
}

} // namespace

Status writeSftFile(const std::string &path, const SftRows &r) {
  if (r.vocabSize == 0 || r.vocabSize > (uint64_t(1) << 32))
    return Status::error(path + ": vocab size " + std::to_string(r.vocabSize) +
                         " out of range [1, 4294967296]");
  if (r.seqLen < 1)
    return Status::error(path + ": sequence length must be >= 1, got " +
                         std::to_string(r.seqLen));
  size_t row = size_t(r.seqLen) + 1;
  if (r.inputIds.empty() || r.inputIds.size() % row != 0 || r.labels.size() != r.inputIds.size() ||
      (!r.positionIds.empty() && r.positionIds.size() != r.inputIds.size()))
    return Status::error(path + ": " + std::to_string(r.inputIds.size()) + " ids, " +
                         std::to_string(r.labels.size()) + " labels and " +
                         std::to_string(r.positionIds.size()) +
                         " position ids are not one or more rows of S + 1 = " +
                         std::to_string(row) + " (position ids: or none)");
  if (r.padId >= r.vocabSize)
    return Status::error(path + ": padding id " + std::to_string(r.padId) +
                         " is >= the vocab size " + std::to_string(r.vocabSize));
  if (Status s = checkValues(path, r.inputIds.data(), r.labels.data(), r.inputIds.size(),
                             r.seqLen, r.vocabSize);
      !s)
    return s;
  if (Status s = checkPositions(path, r.positionIds.data(), r.positionIds.size(), r.seqLen); !s)
    return s;
  const uint32_t documents = r.positionIds.empty() ? 0 : 1;
  unsigned char header[kSftFileHeaderBytes] = {};
  std::memcpy(header, kSftFileMagic, 8);
  uint64_t fields[] = {r.vocabSize, uint64_t(r.seqLen), uint64_t(r.rows())};
  std::memcpy(header + 8, &kSftFileVersion, 4);
  std::memcpy(header + 12, &r.padId, 4);
  std::memcpy(header + 16, fields, sizeof(fields));
  std::memcpy(header + 40, &documents, 4);
  return writeFileAtomically(path, [&](std::ostream &os) -> Status {
    os.write(reinterpret_cast<const char *>(header), sizeof(header));
    os.write(reinterpret_cast<const char *>(r.inputIds.data()),
             std::streamsize(r.inputIds.size() * 4));
    os.write(reinterpret_cast<const char *>(r.labels.data()), std::streamsize(r.labels.size() * 4));
    os.write(reinterpret_cast<const char *>(r.positionIds.data()),
             std::streamsize(r.positionIds.size() * 4));
    return Status::ok();
  });
}

SftFile &SftFile::operator=(SftFile &&other) noexcept {
  if (this == &other)
    return *this;
  path_ = std::move(other.path_);
  file_ = std::move(other.file_);
  vocabSize_ = other.vocabSize_;
  seqLen_ = other.seqLen_;
  rows_ = std::exchange(other.rows_, 0);
  padId_ = other.padId_;
  documents_ = other.documents_;
  return *this;
}

std::span<const uint32_t> SftFile::inputIds(int64_t row) const {
  size_t n = size_t(seqLen_) + 1;
  return {reinterpret_cast<const uint32_t *>(file_.data() + kSftFileHeaderBytes) + size_t(row) * n, n};
}

std::span<const int32_t> SftFile::labels(int64_t row) const {
  size_t n = size_t(seqLen_) + 1;
  const unsigned char *base = file_.data() + kSftFileHeaderBytes + size_t(rows_) * n * 4;
  return {reinterpret_cast<const int32_t *>(base) + size_t(row) * n, n};
}

std::span<const uint32_t> SftFile::positionIds(int64_t row) const {
  size_t n = size_t(seqLen_) + 1;
  const unsigned char *base = file_.data() + kSftFileHeaderBytes + 2 * size_t(rows_) * n * 4;
  return {reinterpret_cast<const uint32_t *>(base) + size_t(row) * n, documents_ ? n : 0};
}

bool hasSftMagic(const std::string &path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) // a FIFO's open would wait
    return false;
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  return in.read(head, 8) && std::memcmp(head, kSftFileMagic, 8) == 0;
}

Expected<SftFile> openSftFile(const std::string &path) {
  auto mapped = MappedFile::open(path, "prepared SFT file");
  if (!mapped)
    return mapped.status();
  const uint64_t bytes = mapped->size();
  if (bytes < kSftFileHeaderBytes)
    return Status::error(path + ": shorter than the 64-byte prepared SFT header");
  SftFile f;
  f.path_ = path;
  f.file_ = std::move(*mapped);
  const unsigned char *h = f.file_.data();
  if (std::memcmp(h, kSftFileMagic, 8) != 0)
    return Status::error(path + ": not a prepared SFT file (no \"MTSFTROW\" magic; "
                                "mt-prepare-sft writes one)");
  if (uint32_t version = loadU32(h + 8); version != kSftFileVersion)
    return Status::error(path + ": unsupported prepared SFT version " + std::to_string(version) +
                         " (this reader supports " + std::to_string(kSftFileVersion) +
                         (version < kSftFileVersion
                              ? "): it was written by an older mt-prepare-sft; prepare the "
                                "data again (mt-prepare-sft, or mtc train --prepare-only)"
                              : ")"));
  f.padId_ = loadU32(h + 12);
  f.vocabSize_ = loadU64(h + 16);
  uint64_t seq = loadU64(h + 24), rows = loadU64(h + 32);
  const uint32_t documents = loadU32(h + 40);
  if (f.vocabSize_ == 0 || f.vocabSize_ > (uint64_t(1) << 32) || seq < 1 || rows < 1 ||
      f.padId_ >= f.vocabSize_ || documents > 1)
    return Status::error(path + ": bad header: vocab size " + std::to_string(f.vocabSize_) +
                         ", sequence length " + std::to_string(seq) + ", " +
                         std::to_string(rows) + " rows, padding id " + std::to_string(f.padId_) +
                         ", documents " + std::to_string(documents) + " (0 or 1)");
  f.documents_ = documents == 1;
  auto tokens = checkedMul<uint64_t>(rows, seq + 1);
  auto expected = tokens ? checkedMul<uint64_t>(*tokens, f.documents_ ? 12 : 8) : tokens;
  if (expected)
    expected = checkedAdd<uint64_t>(*expected, kSftFileHeaderBytes);
  if (!expected || *expected != bytes)
    return Status::error(path + ": " + (expected && bytes < *expected ? "truncated" : "bad length") +
                         ": the header says " + std::to_string(rows) + " rows of " +
                         std::to_string(seq) + " + 1 tokens" +
                         (f.documents_ ? " with position ids" : "") + ", but the file is " +
                         std::to_string(bytes) + " bytes");
  f.seqLen_ = int64_t(seq);
  f.rows_ = int64_t(rows);
  if (Status s = checkValues(path, f.inputIds(0).data(), f.labels(0).data(), *tokens, f.seqLen_,
                             f.vocabSize_);
      !s)
    return s;
  if (f.documents_)
    if (Status s = checkPositions(path, f.positionIds(0).data(), *tokens, f.seqLen_); !s)
      return s;
  return f;
}

uint64_t sampledFingerprint(const SftFile &file) {
  Fnv1a hash;
  auto add = [&hash](uint64_t value, int bytes) { hash.add(value, bytes); };
  add(file.vocabSize(), 8);
  add(uint64_t(file.seqLen()), 8);
  add(uint64_t(file.rows()), 8);
  constexpr uint64_t kSamples = 4096;
  uint64_t row = uint64_t(file.seqLen()) + 1, n = uint64_t(file.rows()) * row;
  for (uint64_t i = 0; i < std::min(n, kSamples); ++i) {
    uint64_t at = n <= kSamples ? i : i * n / kSamples;
    add(file.inputIds(int64_t(at / row))[at % row], 4);
    add(uint32_t(file.labels(int64_t(at / row))[at % row]), 4);
    if (file.hasPositionIds())
      add(file.positionIds(int64_t(at / row))[at % row], 4);
  }
  return hash.value();
}

} // namespace mt::io
