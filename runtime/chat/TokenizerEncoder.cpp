#include "runtime/chat/TokenizerEncoder.h"

namespace mt::chat {
namespace {

std::string contentOf(const std::optional<text::SpecialToken> &token) {
  return token ? token->content : std::string();
}

} // namespace

Expected<TokenizerEncoder> TokenizerEncoder::fromDirectory(const std::string &modelDir) {
  auto t = text::Tokenizer::fromDirectory(modelDir);
  if (!t)
    return t.status();
  return TokenizerEncoder(std::make_shared<const text::Tokenizer>(std::move(*t)));
}

Expected<std::vector<uint32_t>> TokenizerEncoder::encode(std::string_view text) const {
  return tokenizer_->encode(text, /*addSpecialTokens=*/false);
}

std::optional<uint32_t> TokenizerEncoder::tokenId(std::string_view token) const {
  return tokenizer_->tokenToId(token);
}

uint64_t TokenizerEncoder::vocabSize() const { return tokenizer_->vocabSize(); }
std::string TokenizerEncoder::bosToken() const { return contentOf(tokenizer_->bosToken()); }
std::string TokenizerEncoder::eosToken() const { return contentOf(tokenizer_->eosToken()); }
std::string TokenizerEncoder::padToken() const { return contentOf(tokenizer_->padToken()); }

} // namespace mt::chat
