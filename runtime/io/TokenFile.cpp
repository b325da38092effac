// Token files: mmap reader with header and length validation, atomic writer,
// id range check, byte-level tokenization.
#include "runtime/io/TokenFile.h"

#include "runtime/support/AtomicFile.h"
#include "runtime/support/CheckedMath.h"
#include "runtime/support/Fnv1a.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <filesystem>
#include <limits>
#include <ostream>

namespace mt::io {
namespace {

// Ids are read in place from the mapping, which is only correct on a
// little-endian host (every platform the runtime targets).
static_assert(std::endian::native == std::endian::little,
              "token files are read in place and need a little-endian host");

void storeLE(unsigned char *p, uint64_t v, uint32_t bytes) {
  for (uint32_t i = 0; i < bytes; ++i)
    p[i] = static_cast<unsigned char>(v >> (8 * i));
}

/// Printable form of the 8 magic bytes for error messages.
std::string quoteBytes(const unsigned char *p, size_t n) {
  static const char *hex = "0123456789abcdef";
  std::string s = "\"";
  for (size_t i = 0; i < n; ++i) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
      s += static_cast<char>(p[i]);
    } else {
      s += "\\x";
      s += hex[p[i] >> 4];
      s += hex[p[i] & 15];
    }
  }
  return s + "\"";
}

/// The error for a file that does not start with the magic; text (the
/// usual mistake: the corpus itself) gets the command that tokenizes it.
Status notATokenFile(const std::string &path, const unsigned char *head, size_t n) {
  bool text = n > 0 && std::all_of(head, head + n, [](unsigned char c) {
    return c >= 0x20 || c == '\t' || c == '\n' || c == '\r';
  });
  std::string hint = "(not a token file";
  if (text) {
    // Never suggest writing over the text itself.
    std::filesystem::path tokens = std::filesystem::path(path).replace_extension(".bin");
    if (tokens == path)
      tokens.replace_extension(".tokens.bin");
    hint += ": it starts with text; `mt-tokenize " + path + " -o " + tokens.string() +
            "` writes the token file of a text";
  }
  return Status::error(path + ": bad magic " + quoteBytes(head, n) + ", expected \"MTTOKENS\" " +
                       hint + ")");
}

/// Validates the header fields and the total length against the count.
Status checkHeader(const std::string &path, const unsigned char *h,
                   uint64_t fileBytes) {
  if (std::memcmp(h, kTokenFileMagic, 8) != 0)
    return notATokenFile(path, h, 8);
  uint32_t version = loadU32(h + 8);
  if (version != kTokenFileVersion)
    return Status::error(path + ": unsupported token file version " +
                         std::to_string(version) + " (this reader supports " +
                         std::to_string(kTokenFileVersion) + ")");
  uint32_t width = loadU32(h + 12);
  if (width != 2 && width != 4)
    return Status::error(path + ": token width " + std::to_string(width) +
                         " bytes; must be 2 or 4");
  uint64_t count = loadU64(h + 24);
  auto bytes = checkedMul<uint64_t>(count, width);
  if (bytes)
    bytes = checkedAdd<uint64_t>(*bytes, kTokenFileHeaderBytes);
  if (!bytes)
    return Status::error(path + ": token count " + std::to_string(count) +
                         " in the header is impossibly large");
  uint64_t expected = *bytes;
  if (fileBytes != expected)
    return Status::error(
        path + ": " + (fileBytes < expected ? "truncated" : "trailing data") +
        ": the header says " + std::to_string(count) + " tokens of " +
        std::to_string(width) + " bytes, so the file should be " +
        std::to_string(expected) + " bytes, but it is " +
        std::to_string(fileBytes) + " bytes");
  return Status::ok();
}

/// The error for an id the file's own header rules out: the ids come from
/// another tokenizer than the header's, or the file is corrupt.
Status pastDeclaredVocab(const TokenFile &file, uint64_t i) {
  return Status::error(file.path() + ": token " + std::to_string(file.at(i)) +
                       " at position " + std::to_string(i) +
                       " is >= the vocab size " + std::to_string(file.vocabSize()) +
                       " in the file's header (every id must be below it): the file "
                       "is corrupt or its header is wrong; write it again with "
                       "mt-tokenize");
}

} // namespace

TokenFile &TokenFile::operator=(TokenFile &&other) noexcept {
  if (this == &other)
    return *this;
  path_ = std::move(other.path_);
  file_ = std::move(other.file_);
  version_ = other.version_;
  width_ = other.width_;
  vocabSize_ = other.vocabSize_;
  count_ = std::exchange(other.count_, 0);
  return *this;
}

uint32_t TokenFile::at(uint64_t i) const {
  assert(i < count_ && "token index out of range");
  const unsigned char *data = file_.data() + kTokenFileHeaderBytes;
  if (width_ == 2)
    return reinterpret_cast<const uint16_t *>(data)[i];
  return reinterpret_cast<const uint32_t *>(data)[i];
}

void TokenFile::read(uint64_t begin, std::span<uint32_t> out) const {
  assert(begin <= count_ && out.size() <= count_ - begin &&
         "token range out of the file");
  const unsigned char *data = file_.data() + kTokenFileHeaderBytes;
  // The width branch sits outside the loop so each loop stays a plain copy.
  if (width_ == 2) {
    const uint16_t *src = reinterpret_cast<const uint16_t *>(data) + begin;
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = src[i];
  } else {
    const uint32_t *src = reinterpret_cast<const uint32_t *>(data) + begin;
    std::memcpy(out.data(), src, out.size() * sizeof(uint32_t));
  }
}

Expected<TokenFile> openTokenFile(const std::string &path) {
  auto mapped = MappedFile::open(path, "token file");
  if (!mapped)
    return mapped.status();
  const uint64_t fileBytes = mapped->size();
  if (fileBytes < kTokenFileHeaderBytes) {
    const size_t n = size_t(std::min<uint64_t>(fileBytes, 8));
    if (n > 0 && std::memcmp(mapped->data(), kTokenFileMagic, n) != 0)
      return notATokenFile(path, mapped->data(), n);
    return Status::error(path + ": truncated: the file is " +
                         std::to_string(fileBytes) +
                         " bytes, shorter than the 64-byte token file header");
  }
  if (Status s = checkHeader(path, mapped->data(), fileBytes); !s)
    return s;
  TokenFile file;
  file.path_ = path;
  file.file_ = std::move(*mapped);
  const unsigned char *h = file.file_.data();
  file.version_ = loadU32(h + 8);
  file.width_ = loadU32(h + 12);
  file.vocabSize_ = loadU64(h + 16);
  file.count_ = loadU64(h + 24);
  return file;
}

Status writeTokenFile(const std::string &path, std::span<const uint32_t> tokens,
                      uint64_t vocabSize) {
  if (vocabSize == 0 || vocabSize > (uint64_t(1) << 32))
    return Status::error(path + ": vocab size " + std::to_string(vocabSize) +
                         " out of range [1, 4294967296]");
  // Validate before touching the disk so a bad stream never leaves a file.
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= vocabSize)
      return Status::error(path + ": token " + std::to_string(tokens[i]) +
                           " at position " + std::to_string(i) +
                           " is >= the vocab size " +
                           std::to_string(vocabSize));
  const uint32_t width = vocabSize <= 65536 ? 2 : 4;

  unsigned char header[kTokenFileHeaderBytes] = {};
  std::memcpy(header, kTokenFileMagic, 8);
  storeLE(header + 8, kTokenFileVersion, 4);
  storeLE(header + 12, width, 4);
  storeLE(header + 16, vocabSize, 8);
  storeLE(header + 24, tokens.size(), 8);

  return writeFileAtomically(path, [&](std::ostream &os) -> Status {
    os.write(reinterpret_cast<const char *>(header), sizeof(header));
    // Encode in bounded chunks: no second copy of a large token stream.
    std::vector<unsigned char> chunk;
    constexpr size_t kChunkTokens = 1 << 16;
    for (size_t begin = 0; begin < tokens.size() && os; begin += kChunkTokens) {
      size_t n = std::min(kChunkTokens, tokens.size() - begin);
      chunk.resize(n * width);
      for (size_t i = 0; i < n; ++i)
        storeLE(chunk.data() + i * width, tokens[begin + i], width);
      os.write(reinterpret_cast<const char *>(chunk.data()),
               static_cast<std::streamsize>(chunk.size()));
    }
    return Status::ok();
  });
}

Status checkTokenIds(const TokenFile &file, uint64_t modelVocab) {
  std::string mismatch;
  if (file.vocabSize() > modelVocab)
    mismatch = "the file's tokenizer vocab size " +
               std::to_string(file.vocabSize()) +
               " exceeds the model's vocab size " + std::to_string(modelVocab);
  // Scan even when the header vocab fits: the header of a hand-made or
  // corrupted file may understate its ids, and an id past the embedding
  // table would read out of bounds on the device.
  const uint64_t bound = std::min(modelVocab, file.vocabSize());
  for (uint64_t i = 0; i < file.size(); ++i) {
    uint32_t id = file.at(i);
    if (id >= modelVocab)
      return Status::error(
          file.path() + ": token " + std::to_string(id) + " at position " +
          std::to_string(i) + " is >= the model's vocab size " +
          std::to_string(modelVocab) +
          (mismatch.empty() ? std::string() : " (" + mismatch + ")"));
    if (id >= bound)
      return pastDeclaredVocab(file, i);
  }
  if (!mismatch.empty())
    return Status::error(file.path() + ": " + mismatch +
                         " (no id is out of range, but the tokenizer does not "
                         "match the model)");
  return Status::ok();
}

Status checkDeclaredVocab(const TokenFile &file) {
  for (uint64_t i = 0; i < file.size(); ++i)
    if (file.at(i) >= file.vocabSize())
      return pastDeclaredVocab(file, i);
  return Status::ok();
}

uint64_t sampledFingerprint(const TokenFile &file) {
  Fnv1a hash;
  auto add = [&hash](uint64_t value, int bytes) { hash.add(value, bytes); };
  add(file.vocabSize(), 8);
  add(file.size(), 8);
  constexpr uint64_t kSamples = 4096;
  uint64_t n = file.size();
  for (uint64_t i = 0; i < std::min(n, kSamples); ++i)
    // i * n cannot overflow: that would take a file of 2^52 tokens.
    add(file.at(n <= kSamples ? i : i * n / kSamples), 4);
  return hash.value();
}

std::vector<uint32_t> byteTokens(std::string_view text) {
  std::vector<uint32_t> tokens(text.size());
  for (size_t i = 0; i < text.size(); ++i)
    tokens[i] = static_cast<unsigned char>(text[i]);
  return tokens;
}

} // namespace mt::io
