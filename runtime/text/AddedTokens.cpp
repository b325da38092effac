// Added-token matching in text (tokenizers' added_vocabulary.rs).
#include "runtime/text/AddedTokens.h"

#include "runtime/text/PreTokenizer.h"

#include <algorithm>

namespace mt::text {

AddedTokenMatcher::AddedTokenMatcher(std::vector<const AddedToken *> tokens)
    : tokens_(std::move(tokens)) {
  std::erase_if(tokens_, [](const AddedToken *t) { return t->content.empty(); });
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken *a, const AddedToken *b) {
    return a->content.size() > b->content.size();
  });
  for (const AddedToken *t : tokens_)
    firstByte_[uint8_t(t->content[0])] = true;
}

const AddedToken *AddedTokenMatcher::findAt(std::string_view text, size_t at) const {
  if (!firstByte_[uint8_t(text[at])])
    return nullptr;
  std::string_view rest = text.substr(at);
  for (const AddedToken *t : tokens_)
    if (rest.starts_with(t->content))
      return t;
  return nullptr;
}

// Rust regex's \w$ on the text before and ^\w on the text after.
bool AddedTokenMatcher::isSingleWord(std::string_view text, size_t begin, size_t end) {
  if (begin > 0) {
    size_t start = begin - 1, length = 0;
    while (start > 0 && (uint8_t(text[start]) & 0xC0) == 0x80)
      --start;
    if (isWordChar(decodeUtf8(text, start, length)))
      return false;
  }
  if (end < text.size()) {
    size_t length = 0;
    if (isWordChar(decodeUtf8(text, end, length)))
      return false;
  }
  return true;
}

size_t AddedTokenMatcher::whitespaceBefore(std::string_view text, size_t at) {
  while (at > 0) {
    size_t start = at - 1, length = 0;
    while (start > 0 && (uint8_t(text[start]) & 0xC0) == 0x80)
      --start;
    if (!isWhiteSpace(decodeUtf8(text, start, length)))
      break;
    at = start;
  }
  return at;
}

size_t AddedTokenMatcher::whitespaceAfter(std::string_view text, size_t at) {
  while (at < text.size()) {
    size_t length = 0;
    if (!isWhiteSpace(decodeUtf8(text, at, length)))
      break;
    at += length;
  }
  return at;
}

} // namespace mt::text
