// The text steps before BPE: UTF-8 checking, Unicode normalization
// (utf8proc) and the regex split of pre-tokenizers (PCRE2).
#ifndef MT_RUNTIME_TEXT_PRETOKENIZER_H
#define MT_RUNTIME_TEXT_PRETOKENIZER_H

#include "runtime/support/Status.h"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace mt::text {

/// The byte offset of the first byte of `text` that does not begin a valid
/// UTF-8 sequence (overlong forms, surrogates and code points above
/// U+10FFFF are invalid), or npos when all is valid.
size_t findInvalidUtf8(std::string_view text);

/// NFC of valid UTF-8 `text` into `out` (utf8proc, with the Unicode version
/// of the installed library). Text whose code points are all below U+0300
/// is already NFC and is copied as is.
void nfc(std::string_view text, std::string &out);

/// Whether code point `cp` has Unicode's White_Space property (what `\s`
/// means to tokenizers' regex engines, Oniguruma and Rust's regex).
bool isWhiteSpace(uint32_t cp);
/// Whether `cp` is a word character as Rust regex's Unicode `\w`
/// (Alphabetic, marks, decimal digits, connector punctuation, Join_Control).
bool isWordChar(uint32_t cp);
/// The code point starting at `text[i]` (valid UTF-8) and its byte length.
uint32_t decodeUtf8(std::string_view text, size_t i, size_t &length);

/// One `Split` pre-tokenizer regex, compiled by PCRE2 with UTF and UCP (and
/// JIT where available). `\s` and `\S` are rewritten to Unicode White_Space
/// classes because PCRE2's `\s` also takes U+180E, which Oniguruma's does
/// not.
class SplitRegex {
public:
  /// Errors name `where` (file and JSON path) and PCRE2's message with the
  /// offset in the pattern.
  static Expected<SplitRegex> compile(const std::string &pattern, const std::string &where);
  SplitRegex(SplitRegex &&) noexcept;
  SplitRegex &operator=(SplitRegex &&) noexcept;
  ~SplitRegex();

  /// Calls `piece(begin, end)` for every non-empty piece of valid UTF-8
  /// `text` split with behavior "Isolated": each match and each gap between
  /// matches is a piece, in order. Matches are leftmost-first as in
  /// Oniguruma; an empty match advances one character. Fails only when
  /// PCRE2 gives up (its match or memory limits), naming the regex.
  template <typename F> Status split(std::string_view text, F &&piece) const {
    size_t last = 0, start = 0;
    while (start <= text.size()) {
      size_t matchBegin, matchEnd;
      int found = find(text, start, matchBegin, matchEnd);
      if (found < 0)
        return matchFailure(found);
      if (found == 0)
        break;
      if (matchBegin > last)
        piece(last, matchBegin);
      if (matchEnd > matchBegin) {
        piece(matchBegin, matchEnd);
        last = start = matchEnd;
      } else {
        size_t length = 1;
        if (start < text.size())
          decodeUtf8(text, start, length);
        start += length;
      }
    }
    if (last < text.size())
      piece(last, text.size());
    return Status::ok();
  }

private:
  SplitRegex() = default;
  /// 1 and the first match at or after `start`; 0 when none; PCRE2's
  /// negative error code when it gave up.
  int find(std::string_view text, size_t start, size_t &matchBegin, size_t &matchEnd) const;
  Status matchFailure(int code) const;
  std::string pattern_;
  struct Code;
  std::unique_ptr<Code> code_;
};

} // namespace mt::text

#endif // MT_RUNTIME_TEXT_PRETOKENIZER_H
