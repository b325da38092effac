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

/// Prepared SFT data format, version 2. All integers are little-endian.
///
///   offset  size      field
///   ------  --------  --------------------------------------------------------
///        0         8  magic: the ASCII bytes "MTSFTROW"
///        8         4  format version, uint32 = 2
///       12         4  padding id, uint32 (< vocab size): fills rows past
///                     their tokens; its labels are ignored
///       16         8  vocab size of the tokenizer, uint64; every id is < this
///       24         8  sequence length S, uint64 >= 1 (LLaMA-Factory's
///                     cutoff_len): each row holds S + 1 tokens
///       32         8  row count N, uint64 >= 1
///       40         4  documents, uint32: 1 when the rows carry position ids
///                     (neat_packing), else 0
///       44        20  reserved: zeros
///       64  N(S+1)*4  input ids, uint32, row-major [N, S + 1]
///        .  N(S+1)*4  labels, int32, row-major [N, S + 1]: the token id where
///                     the loss is taken, -100 (kIgnoreIndex) elsewhere
///        .  N(S+1)*4  only when documents = 1: position ids, uint32, [N, S + 1]:
///                     LLaMA-Factory's packed position_ids, 0, 1, 2, ... from
///                     the start of each sample, 0 on every padding token. A
///                     document starts where the id is 0; each other id is
///                     its predecessor's + 1.
///
/// Version 1 was version 2 without the documents field and position ids.
///
/// Labels are Hugging Face's, not yet shifted: labels[r][t] is either
/// -100 or the id the model is trained to produce at position t, i.e.
/// predicted from the tokens before t. So training input t of a row is id
/// t, its label is labels[t + 1] and its loss mask is labels[t + 1] != -100,
/// for t in [0, S): the S + 1 tokens give S predictions, as a packed
/// LLaMA-Factory row of cutoff_len + 1 tokens does. With position ids,
/// attention and rotary positions are confined to each document, and the
/// loss mask is also 0 where t + 1 starts a document (t is the last token
/// of one, which sees nothing of the next). The file length is exactly
/// 64 + 8 N (S + 1), plus 4 N (S + 1) with position ids.
inline constexpr char kSftFileMagic[8] = {'M', 'T', 'S', 'F', 'T', 'R', 'O', 'W'};
inline constexpr uint32_t kSftFileVersion = 2;
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
  std::vector<uint32_t> positionIds; // [rows, S + 1] under neat_packing, else empty
  int64_t rows() const { return seqLen > 0 ? int64_t(inputIds.size()) / (seqLen + 1) : 0; }
};

/// Writes `rows` atomically. Fails, writing nothing, on a vocab size outside
/// [1, 2^32], S < 1, no rows, arrays not [rows, S + 1] (position ids: that
/// or empty), an id or the padding id >= the vocab size, a label neither
/// -100 nor an id of the vocab, or position ids that neither are 0 nor
/// count up by one.
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
  /// Whether rows pack documents with position ids (neat_packing).
  bool hasPositionIds() const { return documents_; }
  /// Row `row`'s S + 1 input ids, labels and (only if hasPositionIds())
  /// position ids.
  std::span<const uint32_t> inputIds(int64_t row) const;
  std::span<const int32_t> labels(int64_t row) const;
  std::span<const uint32_t> positionIds(int64_t row) const;

private:
  friend Expected<SftFile> openSftFile(const std::string &path);
  SftFile() = default;

  std::string path_;
  MappedFile file_;
  uint64_t vocabSize_ = 0;
  int64_t seqLen_ = 0, rows_ = 0;
  uint32_t padId_ = 0;
  bool documents_ = false;
};

/// Maps `path` and validates the header (version 2: a version 1 file is
/// refused with the advice to prepare it again), the exact length, every id
/// (< vocab size), every label (-100 or < vocab size) and every position id
/// (0 or its predecessor's + 1, 0 first). Errors start with the path and
/// name the row and position of a bad value.
Expected<SftFile> openSftFile(const std::string &path);

/// Whether `path` starts with the "MTSFTROW" magic (false if unreadable).
bool hasSftMagic(const std::string &path);

/// FNV-1a (as sampledFingerprint of a token file) over the vocab size, S,
/// the row count and, as uint32, the id, label (and position id, with
/// position ids) at positions floor(i * total / 4096) of the flattened rows,
/// i in [0, 4096).
uint64_t sampledFingerprint(const SftFile &file);

} // namespace mt::io

#endif // MT_RUNTIME_IO_SFTFILE_H
