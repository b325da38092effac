// The BPE model of a byte-level tokenizer: the vocabulary, the merges by
// rank, and the merging of one pre-tokenized piece's bytes into ids.
#ifndef MT_RUNTIME_TEXT_BPE_H
#define MT_RUNTIME_TEXT_BPE_H

#include "runtime/support/Status.h"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mt::text {

/// GPT-2's bytes_to_unicode (openai/gpt-2 encoder.py, also tokenizers'
/// byte_level.rs): the printable bytes 33..126, 161..172 and 174..255 stand
/// for themselves, the others for U+0100 + n in byte order. Returns the
/// UTF-8 spelling of byte `b`'s stand-in.
std::string_view byteLevelChar(uint8_t b);
/// The bytes a byte-level spelling stands for; false when `spelling` has a
/// character outside the 256 stand-ins.
bool byteLevelDecode(std::string_view spelling, std::string &bytes);

/// Heterogeneous string hashing for unordered_map lookups by string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

/// A byte-level BPE model (tokenizers/src/models/bpe/model.rs and word.rs).
/// Works on raw bytes: the vocabulary is held by the bytes each token stands
/// for, so pieces need no byte-to-unicode mapping.
class BpeModel {
public:
  /// `vocab` maps byte-level spellings to ids; `merges` are pairs of
  /// spellings in rank order (rank = index). Errors (prefixed by `where`,
  /// e.g. "f/tokenizer.json: model.merges[12]") name a merge part or result
  /// missing from the vocabulary, or a byte without a vocabulary entry.
  static Expected<std::unique_ptr<BpeModel>> build(const StringIdMap &vocab,
                                  const std::vector<std::pair<std::string, std::string>> &merges,
                                  bool ignoreMerges, const std::string &where);

  /// Appends the ids of the piece `bytes` (one pre-token) to `ids`: its bytes
  /// as single-byte tokens, merged pairwise, lowest merge rank first and
  /// leftmost among equal ranks, as tokenizers' Word::merge_all; with
  /// ignore_merges a piece that is itself a vocabulary entry is that entry.
  /// `useCache`: look the piece up in, and add it to, the word cache (the
  /// caller holds cacheMutex()).
  void encodePiece(std::string_view bytes, bool useCache, std::vector<uint32_t> &ids) const;

  std::mutex &cacheMutex() const { return cacheMutex_; }

private:
  BpeModel() = default;
  void mergeWord(std::string_view bytes, std::vector<uint32_t> &ids) const;
  /// (rank << 32 | merged id) of the pair (left, right), or ~0 when none.
  uint64_t findMerge(uint32_t left, uint32_t right) const;

  std::array<uint32_t, 256> byteIds_{};
  StringIdMap bytesToId_; // the vocabulary by raw bytes (for ignore_merges)
  bool ignoreMerges_ = false;
  // Open-addressing table (linear probing) of merges: key left<<32|right.
  std::vector<uint64_t> mergeKeys_;
  std::vector<uint64_t> mergeValues_;
  uint64_t mergeMask_ = 0;

  // The word cache: piece bytes -> [offset, length) in cacheIds_. Filled
  // until kCacheWords pieces; guarded by cacheMutex_.
  mutable std::mutex cacheMutex_;
  mutable std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, StringHash,
                             std::equal_to<>>
      cache_;
  mutable std::vector<uint32_t> cacheIds_;
};

} // namespace mt::text

#endif // MT_RUNTIME_TEXT_BPE_H
