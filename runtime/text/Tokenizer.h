// mt::text::Tokenizer: Hugging Face byte-level BPE tokenizers (Qwen2/Qwen3,
// Llama 3, GPT-2 style) loaded from a model's tokenizer.json, with the ids of
// the `tokenizers` library.
#ifndef MT_RUNTIME_TEXT_TOKENIZER_H
#define MT_RUNTIME_TEXT_TOKENIZER_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mt::text {

/// A special token named by tokenizer_config.json (bos_token, eos_token,
/// pad_token): its text and id.
struct SpecialToken {
  std::string content;
  uint32_t id = 0;
};

/// A byte-level BPE tokenizer as Hugging Face `tokenizers` runs it
/// (tokenizers/src/tokenizer/mod.rs, encode and decode), from tokenizer.json:
///   1. added tokens (tokenizer.json "added_tokens") are cut out of the text
///      first, longest match leftmost, honouring `single_word`, `lstrip`,
///      `rstrip` and `normalized` (added_vocabulary.rs);
///   2. the rest is normalized ("normalizer": null, NFC, or a Sequence of
///      them; NFC by utf8proc);
///   3. pre-tokenized ("pre_tokenizer": Split with a regex and behavior
///      "Isolated", ByteLevel, or a Sequence of them; regexes by PCRE2 with
///      UTF and UCP, `\s` meaning Unicode White_Space as in Oniguruma);
///   4. each piece's bytes are merged by the BPE merges in rank order
///      ("model": BPE; `ignore_merges` honoured);
///   5. with addSpecialTokens, the post-processor's template adds its tokens
///      ("post_processor": ByteLevel, TemplateProcessing, or a Sequence).
///      tokenizer_config.json's `add_bos_token` / `add_eos_token`, where
///      given, replace that template by [bos] $A [eos] as transformers'
///      LlamaTokenizerFast.update_post_processor does.
/// Anything else (a Unigram or WordPiece model, another pre-tokenizer or
/// normalizer, truncation or padding settings) is refused at load time with
/// an error naming the file and the JSON path.
///
/// Thread safety: all const methods may be called from several threads at
/// once (the word cache is shared and locked, or skipped when busy).
///
/// Use:
///   auto tokenizer = mt::text::Tokenizer::fromDirectory("models/qwen3");
///   if (!tokenizer) return tokenizer.status();
///   auto ids = tokenizer->encode("<|im_start|>user\nHi<|im_end|>\n", false);
///   // ids: 151644 872 198 13048 151645 198 (Qwen3)
class Tokenizer {
public:
  /// Loads MODEL_DIR/tokenizer.json and, when it exists,
  /// MODEL_DIR/tokenizer_config.json (special tokens, add_bos_token,
  /// add_eos_token). Errors name the file and the JSON path, e.g.
  /// "m/tokenizer.json: model.type: 'Unigram' is not supported (BPE is)".
  static Expected<Tokenizer> fromDirectory(const std::string &modelDir);
  /// The same from explicit files; `tokenizerConfigJson` may be empty (none).
  static Expected<Tokenizer> fromFiles(const std::string &tokenizerJson,
                                       const std::string &tokenizerConfigJson);

  Tokenizer(Tokenizer &&) noexcept;
  Tokenizer &operator=(Tokenizer &&) noexcept;
  ~Tokenizer();

  /// The ids of `text` (UTF-8), as `tokenizers`' encode(text,
  /// add_special_tokens).getIds(). Added tokens written in the text (e.g.
  /// "<|im_start|>") become their ids whatever addSpecialTokens says;
  /// addSpecialTokens only adds the post-processor's tokens (e.g. a BOS).
  /// Fails only on text that is not valid UTF-8 (the error gives the byte
  /// offset).
  Expected<std::vector<uint32_t>> encode(std::string_view text, bool addSpecialTokens) const;
  /// The same, appending to `ids` (no allocation per call once warm).
  Status encodeInto(std::string_view text, bool addSpecialTokens,
                    std::vector<uint32_t> &ids) const;

  /// The text of `ids`, as `tokenizers`' decode(ids, skip_special_tokens):
  /// byte-level tokens back to bytes, added tokens as their content, bytes
  /// that are not valid UTF-8 as U+FFFD. transformers' optional
  /// clean_up_tokenization_spaces is not applied. Fails on an id that is no
  /// token (the error gives the id and its position).
  Expected<std::string> decode(std::span<const uint32_t> ids, bool skipSpecialTokens = false) const;

  /// The id of the token spelt `token` (an added token such as
  /// "<|im_end|>", or a vocabulary entry in its byte-level spelling, e.g.
  /// "Ġthe"); nullopt when there is none.
  std::optional<uint32_t> tokenToId(std::string_view token) const;
  /// The spelling of `id` (as tokenToId takes it); nullopt when none.
  std::optional<std::string> idToToken(uint32_t id) const;

  /// tokenizer_config.json's bos_token / eos_token / pad_token (a string or
  /// {"content": ...}), with its id; nullopt when unset or null.
  const std::optional<SpecialToken> &bosToken() const;
  const std::optional<SpecialToken> &eosToken() const;
  const std::optional<SpecialToken> &padToken() const;
  std::optional<uint32_t> bosId() const;
  std::optional<uint32_t> eosId() const;
  std::optional<uint32_t> padId() const;

  /// 1 + the largest id of the vocabulary and the added tokens: every id
  /// encode() returns is below it (e.g. 151669 for Qwen3, 128256 for
  /// Llama 3). This is the vocab size of the token file (runtime/io/TokenFile.h),
  /// not the model's padded embedding size.
  uint64_t vocabSize() const;

  /// Whether the added token with this id is special ("special": true);
  /// decode(…, skipSpecialTokens=true) drops those.
  bool isSpecial(uint32_t id) const;

  struct Impl;

private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace mt::text

#endif // MT_RUNTIME_TEXT_TOKENIZER_H
