// Added tokens (tokenizer.json "added_tokens"): finding them in text before
// pre-tokenization, as tokenizers' added_vocabulary.rs find_matches.
#ifndef MT_RUNTIME_TEXT_ADDEDTOKENS_H
#define MT_RUNTIME_TEXT_ADDEDTOKENS_H

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mt::text {

/// One entry of tokenizer.json's "added_tokens".
struct AddedToken {
  std::string content;
  uint32_t id = 0;
  bool singleWord = false; // match only between non-word characters
  bool lstrip = false;     // the match takes the whitespace before it
  bool rstrip = false;     // ... and after it
  bool normalized = true;  // matched in the normalized text (else the raw text)
  bool special = false;    // dropped by decode(…, skipSpecialTokens)
};

/// Finds a set of added tokens in text: leftmost match first, the longest of
/// those starting there (aho-corasick's LeftmostLongest), matches never
/// overlapping; a match that breaks its token's single_word rule is skipped
/// (the search goes on after it).
class AddedTokenMatcher {
public:
  AddedTokenMatcher() = default;
  /// `tokens` (with the `content` to look for) must outlive the matcher.
  explicit AddedTokenMatcher(std::vector<const AddedToken *> tokens);
  bool empty() const { return tokens_.empty(); }

  /// Splits `text`: calls `gap(piece)` for each non-empty stretch without
  /// an added token and `token(id)` for each token found, in order. lstrip
  /// and rstrip widen the token over adjacent whitespace (never over an
  /// earlier token).
  template <typename Gap, typename Token>
  void split(std::string_view text, Gap &&gap, Token &&token) const {
    size_t done = 0, at = 0;
    while (at < text.size()) {
      const AddedToken *found = findAt(text, at);
      if (!found) {
        ++at;
        continue;
      }
      size_t begin = at, end = at + found->content.size();
      at = end;
      if (found->singleWord && !isSingleWord(text, begin, end))
        continue;
      if (found->lstrip)
        begin = std::max(done, whitespaceBefore(text, begin));
      if (found->rstrip)
        end = whitespaceAfter(text, end);
      if (begin > done)
        gap(text.substr(done, begin - done));
      token(found->id);
      done = end; // the search goes on from the unstripped end, as aho-corasick's
    }
    if (done < text.size())
      gap(text.substr(done));
  }

private:
  /// The longest token starting at text[at], or null.
  const AddedToken *findAt(std::string_view text, size_t at) const;
  static bool isSingleWord(std::string_view text, size_t begin, size_t end);
  /// Where the whitespace that ends text[0, at) begins.
  static size_t whitespaceBefore(std::string_view text, size_t at);
  /// Where the whitespace that starts text[at, ...) ends.
  static size_t whitespaceAfter(std::string_view text, size_t at);

  std::vector<const AddedToken *> tokens_; // longest first
  std::array<bool, 256> firstByte_{};
};

} // namespace mt::text

#endif // MT_RUNTIME_TEXT_ADDEDTOKENS_H
