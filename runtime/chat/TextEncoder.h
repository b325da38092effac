// What chat templates and dataset preparation need from a tokenizer: text to
// ids and the ids of named special tokens. A stand-in byte-level encoder
// with added special tokens serves tests and demos until runtime/text/ lands.
#ifndef MT_RUNTIME_CHAT_TEXTENCODER_H
#define MT_RUNTIME_CHAT_TEXTENCODER_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mt::chat {

/// A tokenizer as Hugging Face's PreTrainedTokenizer is used by LLaMA-Factory's
/// templates: `encode(text)` is `tokenizer.encode(text,
/// add_special_tokens=False)` (added/special tokens written in the text are
/// still recognised as single tokens), `tokenId` is `convert_tokens_to_ids`
/// for a token that exists, and the three special-token strings are those of
/// tokenizer_config.json ("" when the tokenizer has none). To plug in a real
/// tokenizer, implement this interface over it.
class TextEncoder {
public:
  virtual ~TextEncoder() = default;
  /// Ids of `text`, no BOS/EOS added.
  virtual Expected<std::vector<uint32_t>> encode(std::string_view text) const = 0;
  /// The id of the token spelt `token`, or nullopt when the vocab has none.
  virtual std::optional<uint32_t> tokenId(std::string_view token) const = 0;
  /// Every id is below this.
  virtual uint64_t vocabSize() const = 0;
  virtual std::string bosToken() const = 0;
  virtual std::string eosToken() const = 0;
  virtual std::string padToken() const = 0;
};

/// Stand-in tokenizer: each byte is a token in [0, 256); the special tokens
/// given are ids 256, 257, ... in order and are split out of the text first,
/// longest match first, as Hugging Face splits added tokens out before the
/// model sees the text. decode() inverts encode() exactly.
class ByteTextEncoder : public TextEncoder {
public:
  /// `specialTokens` must be distinct and non-empty; bos/eos/pad must be ""
  /// or one of them.
  static Expected<ByteTextEncoder> create(std::vector<std::string> specialTokens,
                                          std::string bos, std::string eos,
                                          std::string pad);

  Expected<std::vector<uint32_t>> encode(std::string_view text) const override;
  std::optional<uint32_t> tokenId(std::string_view token) const override;
  uint64_t vocabSize() const override { return 256 + specials_.size(); }
  std::string bosToken() const override { return bos_; }
  std::string eosToken() const override { return eos_; }
  std::string padToken() const override { return pad_; }

  /// The text of `ids`; an id >= vocabSize() decodes as "\uFFFD".
  std::string decode(const std::vector<uint32_t> &ids) const;
  const std::vector<std::string> &specialTokens() const { return specials_; }

private:
  ByteTextEncoder() = default;
  std::vector<std::string> specials_;
  std::string bos_, eos_, pad_;
};

/// The byte-level stand-in with the special tokens of the model family that
/// chat template `templateName` serves, with bos/eos/pad as that family's
/// tokenizer_config.json names them: Qwen (qwen, qwen3, qwen3_nothink):
/// <|endoftext|> <|im_start|> <|im_end|>, EOS <|im_end|>, pad <|endoftext|>;
/// Llama 3 (llama3): <|begin_of_text|> <|end_of_text|> <|start_header_id|>
/// <|end_header_id|> <|eot_id|> <|eom_id|>, BOS <|begin_of_text|>, EOS
/// <|eot_id|>; others (mistral, default, empty): <s> </s> [INST] [/INST],
/// BOS <s>, EOS </s>. For tests and demos until the model's own tokenizer
/// (runtime/text) is wired in.
ByteTextEncoder byteEncoderFor(const std::string &templateName);

} // namespace mt::chat

#endif // MT_RUNTIME_CHAT_TEXTENCODER_H
