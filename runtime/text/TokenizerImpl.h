// The state of a loaded Tokenizer, shared by its loader (TokenizerJson.cpp)
// and its encode/decode (Tokenizer.cpp). Not part of the API.
#ifndef MT_RUNTIME_TEXT_TOKENIZERIMPL_H
#define MT_RUNTIME_TEXT_TOKENIZERIMPL_H

#include "runtime/text/AddedTokens.h"
#include "runtime/text/Bpe.h"
#include "runtime/text/PreTokenizer.h"
#include "runtime/text/Tokenizer.h"

#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace mt::text {

struct Tokenizer::Impl {
  /// One pre-tokenizer step: an optional Isolated regex split, after an
  /// optional prefix space (ByteLevel's add_prefix_space).
  struct Stage {
    std::optional<SplitRegex> regex;
    bool addPrefixSpace = false;
  };

  std::unique_ptr<BpeModel> bpe;
  StringIdMap vocab;                 // model vocabulary, byte-level spelling -> id
  std::vector<std::string> spelling; // id -> spelling (model and added tokens)
  std::vector<AddedToken> added;     // tokenizer.json order
  std::unordered_map<uint32_t, size_t> addedById;
  StringIdMap addedByContent;
  // The contents matched in normalized text (normalized once at load).
  std::vector<AddedToken> normalizedForms;
  AddedTokenMatcher rawMatcher;        // normalized: false tokens, on the raw text
  AddedTokenMatcher normalizedMatcher; // normalized: true tokens, after normalization
  bool nfc = false;
  std::vector<Stage> stages;
  std::vector<uint32_t> prefixIds, suffixIds; // the template around $A
  std::optional<SpecialToken> bos, eos, pad;
  uint64_t vocabSize = 0;
};

} // namespace mt::text

#endif // MT_RUNTIME_TEXT_TOKENIZERIMPL_H
