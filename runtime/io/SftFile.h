// Prepared supervised fine-tuning data (.bin): fixed-length rows of token ids
// with their labels, as LLaMA-Factory's supervised preprocessing makes them;
// its reader, writer and fingerprint.
#ifndef MT_RUNTIME_IO_SFTFILE_H
#define MT_RUNTIME_IO_SFTFILE_H

#include "runtime/io/MappedFile.h"
#include "runtime/support/Status.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mt::io {

/// Prepared SFT data format, version 1. All integers are little-endian.
///
///   offset  size      field
///   ------  --------  --------------------------------------------------------
///        0         8  magic: the ASCII bytes "MTSFTROW"
///        8         4  format version, uint32 = 1
///       12         4  padding id, uint32 (< vocab size): fills rows past
///                     their tokens; its labels are ignored
///       16         8  vocab size of the tokenizer, uint64; every id is < this
///       24         8  sequence length S, uint64 >= 1 (LLaMA-Factory's
///                     cutoff_len): each row holds S + 1 tokens
///       32         8  row count N, uint64 >= 1
///       40        24  reserved: zeros
///       64  N(S+1)*4  input ids, uint32, row-major [N, S + 1]
///        .  N(S+1)*4  labels, int32, row-major [N, S + 1]: the token id where
///                     the loss is taken, -100 (kIgnoreIndex) elsewhere
///
/// Labels are Hugging Face's, not yet shifted: labels[r][t] is either
/// -100 or the id the model is trained to produce at position t, i.e.
/// predicted from the tokens before t. So training input t of a row is id
/// t, its label is labels[t + 1] and its loss mask is labels[t + 1] != -100,
/// for t in [0, S): the S + 1 tokens give S predictions, as a packed
/// LLaMA-Factory row of cutoff_len + 1 tokens does. The file length is
/// exactly 64 + 8 N (S + 1).
inline constexpr char kSftFileMagic[8] = {'M', 'T', 'S', 'F', 'T', 'R', 'O', 'W'};
inline constexpr uint32_t kSftFileVersion = 1;
inline constexpr uint64_t kSftFileHeaderBytes = 64;
/// Hugging Face's (and LLaMA-Factory's IGNORE_INDEX) label of no loss.
inline constexpr int32_t kIgnoreIndex = -100;

/// Rows in memory, as the writer takes them.
struct SftRows {
  uint64_t vocabSize = 0;
  int64_t seqLen = 0; // S: rows hold S + 1 tokens
  uint32_t padId = 0;
  std::vector<uint32_t> inputIds; // [rows, S + 1]
  std::vector<int32_t> labels;    // [rows, S + 1]
  int64_t rows() const { return seqLen > 0 ? int64_t(inputIds.size()) / (seqLen + 1) : 0; }
};

/// Writes `rows` atomically. Fails, writing nothing, on a vocab size outside
/// [1, 2^32], S < 1, no rows, arrays not [rows, S + 1], an id or the padding
/// id >= the vocab size, or a label neither -100 nor an id of the vocab.
Status writeSftFile(const std::string &path, const SftRows &rows);

/// A read-only, memory-mapped prepared SFT file, validated on open. Move-only.
class SftFile {
public:
  SftFile(SftFile &&other) noexcept { *this = std::move(other); }
  SftFile &operator=(SftFile &&other) noexcept;
  SftFile(const SftFile &) = delete;
  SftFile &operator=(const SftFile &) = delete;

  const std::string &path() const { return path_; }
  uint64_t vocabSize() const { return vocabSize_; }
  int64_t seqLen() const { return seqLen_; }
  int64_t rows() const { return rows_; }
  uint32_t padId() const { return padId_; }
  /// Row `row`'s S + 1 input ids and labels.
  std::span<const uint32_t> inputIds(int64_t row) const;
  std::span<const int32_t> labels(int64_t row) const;

private:
  friend Expected<SftFile> openSftFile(const std::string &path);
  SftFile() = default;

  std::string path_;
  MappedFile file_;
  uint64_t vocabSize_ = 0;
  int64_t seqLen_ = 0, rows_ = 0;
  uint32_t padId_ = 0;
};

/// Maps `path` and validates the header, the exact length, every id (<
/// vocab size) and every label (-100 or < vocab size). Errors start with the
/// path and name the row and position of a bad value.
Expected<SftFile> openSftFile(const std::string &path);

/// Whether `path` starts with the "MTSFTROW" magic (false if unreadable).
bool hasSftMagic(const std::string &path);

/// FNV-1a (as sampledFingerprint of a token file) over the vocab size, S,
/// the row count and, as uint32, the id and label at positions
/// floor(i * total / 4096) of the flattened rows, i in [0, 4096).
uint64_t sampledFingerprint(const SftFile &file);

} // namespace mt::io

#endif // MT_RUNTIME_IO_SFTFILE_H
