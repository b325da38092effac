// UTF-8 checking, NFC by utf8proc, and pre-tokenizer regexes by PCRE2.
#include "runtime/text/PreTokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>

namespace mt::text {

size_t findInvalidUtf8(std::string_view text) {
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      length = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + length > n)
      return i;
    for (size_t k = 1; k < length; ++k) {
      if ((s[i + k] & 0xC0) != 0x80)
        return i;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += length;
  }
  return std::string_view::npos;
}

uint32_t decodeUtf8(std::string_view text, size_t i, size_t &length) {
  auto c = uint8_t(text[i]);
  if (c < 0x80) {
    length = 1;
    return c;
  }
  length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  uint32_t cp = c & (0x3F >> (length - 1));
  for (size_t k = 1; k < length; ++k)
    cp = cp << 6 | (uint8_t(text[i + k]) & 0x3F);
  return cp;
}

void nfc(std::string_view text, std::string &out) {
  // Every code point below U+0300 is NFC and composes with nothing before it.
  bool simple = true;
  for (size_t i = 0; i < text.size() && simple; ++i) {
    auto c = uint8_t(text[i]);
    simple = c < 0xCC; // lead bytes up to 0xCB encode code points < U+0300
  }
  if (simple) {
    out.assign(text);
    return;
  }
  utf8proc_uint8_t *mapped = nullptr;
  utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t *>(text.data()),
                   utf8proc_ssize_t(text.size()), &mapped, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0) { // only on invalid UTF-8, which callers have rejected
    out.assign(text);
    return;
  }
  out.assign(reinterpret_cast<const char *>(mapped), size_t(length));
  std::free(mapped);
}

bool isWhiteSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool isWordChar(uint32_t cp) {
  if (cp == 0x200C || cp == 0x200D)
    return true;
  switch (utf8proc_category(utf8proc_int32_t(cp))) {
  case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
    return true;
  default:
    return false;
  }
}

namespace {

// White_Space as the members of a character class.
constexpr std::string_view kWhiteSpaceMembers =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// `pattern` with \s and \S spelt as White_Space classes; the error names an
// \S inside a class (no PCRE2 spelling without class subtraction).
Expected<std::string> rewriteWhiteSpace(const std::string &pattern) {
  std::string out;
  bool inClass = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char e = pattern[++i];
      if (e == 's') {
        out += inClass ? std::string(kWhiteSpaceMembers) : "[" + std::string(kWhiteSpaceMembers) + "]";
      } else if (e == 'S') {
        if (inClass)
          return Status::error("\\S inside a character class (at offset " + std::to_string(i - 1) +
                               ") is not supported");
        out += "[^" + std::string(kWhiteSpaceMembers) + "]";
      } else if (e == 'Q') { // literal up to \E
        size_t end = pattern.find("\\E", i + 1);
        size_t stop = end == std::string::npos ? pattern.size() : end + 2;
        out += pattern.substr(i - 1, stop - (i - 1));
        i = stop - 1;
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    out += c;
    if (!inClass && c == '[') {
      inClass = true;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^')
        out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') // a leading ] is literal
        out += pattern[++i];
    } else if (inClass && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      size_t end = pattern.find(":]", i + 2);
      if (end != std::string::npos) {
        out += pattern.substr(i + 1, end + 2 - (i + 1));
        i = end + 1;
      }
    } else if (inClass && c == ']') {
      inClass = false;
    }
  }
  return out;
}

// Per-thread PCRE2 match data and JIT stack (neither may be shared).
struct MatchState {
  pcre2_match_data *data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack *stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context *context = pcre2_match_context_create(nullptr);
  MatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchState &matchState() {
  thread_local MatchState state;
  return state;
}

} // namespace

struct SplitRegex::Code {
  pcre2_code *code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

SplitRegex::SplitRegex(SplitRegex &&) noexcept = default;
SplitRegex &SplitRegex::operator=(SplitRegex &&) noexcept = default;
SplitRegex::~SplitRegex() = default;

Expected<SplitRegex> SplitRegex::compile(const std::string &pattern, const std::string &where) {
  auto rewritten = rewriteWhiteSpace(pattern);
  if (!rewritten)
    return Status::error(where + ": " + rewritten.message());
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code *code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten->data()), rewritten->size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    return Status::error(where + ": the regex '" + pattern + "' does not compile (PCRE2: " +
                         reinterpret_cast<char *>(message) + ", at offset " +
                         std::to_string(offset) + " of the rewritten '" + *rewritten + "')");
  }
  SplitRegex regex;
  regex.code_ = std::make_unique<Code>();
  regex.code_->code = code;
  regex.pattern_ = pattern;
  regex.code_->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return regex;
}

int SplitRegex::find(std::string_view text, size_t start, size_t &matchBegin,
                      size_t &matchEnd) const {
  MatchState &state = matchState();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = code_->jit ? pcre2_jit_match(code_->code, subject, text.size(), start, 0, state.data,
                                        state.context)
                      : PCRE2_ERROR_JIT_BADOPTION;
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) // no JIT, or its stack ran out
    rc = pcre2_match(code_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, state.data,
                     state.context);
  if (rc == PCRE2_ERROR_NOMATCH)
    return 0;
  if (rc < 0)
    return rc;
  PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(state.data);
  matchBegin = ovector[0];
  matchEnd = ovector[1];
  return 1;
}

Status SplitRegex::matchFailure(int code) const {
  PCRE2_UCHAR message[256];
  pcre2_get_error_message(code, message, sizeof message);
  return Status::error("the pre-tokenizer regex '" + pattern_ + "' failed (PCRE2: " +
                       reinterpret_cast<char *>(message) + ")");
}

} // namespace mt::text
