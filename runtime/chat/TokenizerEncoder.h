// The chat templates' TextEncoder over a model's own Hugging Face tokenizer
// (runtime/text): what dataset preparation uses for real models.
#ifndef MT_RUNTIME_CHAT_TOKENIZERENCODER_H
#define MT_RUNTIME_CHAT_TOKENIZERENCODER_H

#include "runtime/chat/TextEncoder.h"
#include "runtime/text/Tokenizer.h"

#include <memory>

namespace mt::chat {

/// A text::Tokenizer seen as LLaMA-Factory's templates use a Hugging Face
/// tokenizer: encode(text) is `tokenizer.encode(text,
/// add_special_tokens=False)`, tokenId is `convert_tokens_to_ids`, and the
/// bos/eos/pad strings are tokenizer_config.json's ("" when unset).
class TokenizerEncoder : public TextEncoder {
public:
  /// Loads tokenizer.json and tokenizer_config.json from `modelDir`; the
  /// error names the file and what is wrong (text::Tokenizer::fromDirectory).
  static Expected<TokenizerEncoder> fromDirectory(const std::string &modelDir);

  Expected<std::vector<uint32_t>> encode(std::string_view text) const override;
  std::optional<uint32_t> tokenId(std::string_view token) const override;
  uint64_t vocabSize() const override;
  std::string bosToken() const override;
  std::string eosToken() const override;
  std::string padToken() const override;

  const text::Tokenizer &tokenizer() const { return *tokenizer_; }

private:
  explicit TokenizerEncoder(std::shared_ptr<const text::Tokenizer> t) : tokenizer_(std::move(t)) {}
  std::shared_ptr<const text::Tokenizer> tokenizer_;
};

} // namespace mt::chat

#endif // MT_RUNTIME_CHAT_TOKENIZERENCODER_H
