// Token files (.bin): the flat, memory-mapped training-data format, its
// writer and id check, and the byte-level text-to-token conversion.
#ifndef MT_RUNTIME_IO_TOKENFILE_H
#define MT_RUNTIME_IO_TOKENFILE_H

#include "runtime/io/MappedFile.h"
#include "runtime/support/Status.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mt::io {

/// Token file format, version 1. All integers are little-endian.
///
///   offset  size  field
///   ------  ----  -----------------------------------------------------------
///        0     8  magic: the ASCII bytes "MTTOKENS" (no terminating NUL)
///        8     4  format version, uint32 = 1
///       12     4  token width in bytes, uint32: 2 (uint16 ids) or 4 (uint32)
///       16     8  vocab size of the tokenizer that made the file, uint64;
///                 every id in the file is < this
///       24     8  token count N, uint64
///       32    32  reserved: written as zeros, ignored by version-1 readers
///       64   N*W  the token ids, uint16 or uint32 each, in stream order
///
/// The file length is exactly 64 + N * width; anything else is an error
/// (a truncated copy, or trailing garbage). The writer picks width 2 when the
/// vocab size is <= 65536 and width 4 otherwise. The 64-byte header keeps the
/// ids aligned for in-place reads from the mapping.
inline constexpr char kTokenFileMagic[8] = {'M', 'T', 'T', 'O',
                                            'K', 'E', 'N', 'S'};
inline constexpr uint32_t kTokenFileVersion = 1;
inline constexpr uint64_t kTokenFileHeaderBytes = 64;

/// The vocab of byteTokens(): one token per byte value.
inline constexpr uint64_t kByteVocabSize = 256;

/// A read-only, memory-mapped token file. Move-only; unmaps on destruction.
class TokenFile {
public:
  TokenFile(TokenFile &&other) noexcept { *this = std::move(other); }
  TokenFile &operator=(TokenFile &&other) noexcept;
  TokenFile(const TokenFile &) = delete;
  TokenFile &operator=(const TokenFile &) = delete;

  const std::string &path() const { return path_; }
  uint32_t version() const { return version_; }
  /// 2 or 4.
  uint32_t tokenWidth() const { return width_; }
  /// The tokenizer's vocab size recorded in the header.
  uint64_t vocabSize() const { return vocabSize_; }
  /// Number of tokens in the file.
  uint64_t size() const { return count_; }

  /// Token `i`; `i` must be < size().
  uint32_t at(uint64_t i) const;
  /// Copies tokens [begin, begin + out.size()) into `out`; the range must lie
  /// inside the file.
  void read(uint64_t begin, std::span<uint32_t> out) const;

private:
  friend Expected<TokenFile> openTokenFile(const std::string &path);
  TokenFile() = default;

  std::string path_;
  MappedFile file_;
  uint32_t version_ = 0;
  uint32_t width_ = 0;
  uint64_t vocabSize_ = 0;
  uint64_t count_ = 0;
};

/// Maps `path` and validates its header (magic, version, width) and that its
/// length is exactly header + count * width. Errors start with the path.
Expected<TokenFile> openTokenFile(const std::string &path);

/// Writes `tokens` as a token file of the tokenizer vocab `vocabSize`, with
/// width 2 when vocabSize <= 65536, else 4. Fails (writing nothing) when
/// vocabSize is 0 or above 2^32, or when an id is >= vocabSize. The file is
/// replaced atomically: an existing `path` stays untouched on failure.
Status writeTokenFile(const std::string &path, std::span<const uint32_t> tokens,
                      uint64_t vocabSize);

/// Checks that `file` can feed a model whose embedding has `modelVocab` rows:
/// reports the first id >= modelVocab with its position and value, the
/// first id >= the file's own header vocab size (a corrupt file), and a
/// file whose tokenizer vocab is larger than the model's (a mismatched
/// tokenizer, even if no id happens to be out of range yet).
Status checkTokenIds(const TokenFile &file, uint64_t modelVocab);

/// Checks that every id of `file` is below the vocab size its header
/// declares (mt-tokenize --count).
Status checkDeclaredVocab(const TokenFile &file);

/// A fingerprint of `file`'s content that costs the same for any size: FNV-1a
/// (64-bit, offset basis 0xcbf29ce484222325, prime 0x100000001b3) over the
/// little-endian bytes of the vocab size, the token count and, as uint32, the
/// tokens at positions floor(i * size / 4096) for i in [0, 4096) (every token
/// of a smaller file). Data tokenized differently changes it; an edit of a
/// single token may not.
uint64_t sampledFingerprint(const TokenFile &file);

/// Byte-level tokenization: every byte of `text` (UTF-8 or not) is one token
/// in [0, 256).
std::vector<uint32_t> byteTokens(std::string_view text);

} // namespace mt::io

#endif // MT_RUNTIME_IO_TOKENFILE_H
