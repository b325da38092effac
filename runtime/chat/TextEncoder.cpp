// The byte-level stand-in tokenizer with added special tokens.
#include "runtime/chat/TextEncoder.h"

#include <algorithm>
#include <set>

namespace mt::chat {

Expected<ByteTextEncoder> ByteTextEncoder::create(std::vector<std::string> specialTokens,
                                                  std::string bos, std::string eos,
                                                  std::string pad) {
  std::set<std::string> seen;
  for (const std::string &t : specialTokens) {
    if (t.empty())
      return Status::error("byte tokenizer: a special token is empty");
    if (!seen.insert(t).second)
      return Status::error("byte tokenizer: special token '" + t + "' given twice");
  }
  for (const std::string *named : {&bos, &eos, &pad})
    if (!named->empty() && !seen.count(*named))
      return Status::error("byte tokenizer: '" + *named +
                           "' is named as bos/eos/pad but is not one of the special tokens");
  ByteTextEncoder e;
  e.specials_ = std::move(specialTokens);
  e.bos_ = std::move(bos);
  e.eos_ = std::move(eos);
  e.pad_ = std::move(pad);
  return e;
}

Expected<std::vector<uint32_t>> ByteTextEncoder::encode(std::string_view text) const {
  std::vector<uint32_t> ids;
  ids.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    // The longest special token starting here, as HF's added-token trie does.
    size_t best = specials_.size(), bestLength = 0;
    for (size_t s = 0; s < specials_.size(); ++s)
      if (specials_[s].size() > bestLength && text.compare(i, specials_[s].size(), specials_[s]) == 0)
        best = s, bestLength = specials_[s].size();
    if (best < specials_.size()) {
      ids.push_back(uint32_t(256 + best));
      i += bestLength;
    } else {
      ids.push_back(static_cast<unsigned char>(text[i++]));
    }
  }
  return ids;
}

std::optional<uint32_t> ByteTextEncoder::tokenId(std::string_view token) const {
  auto it = std::find(specials_.begin(), specials_.end(), token);
  if (it != specials_.end())
    return uint32_t(256 + (it - specials_.begin()));
  if (token.size() == 1)
    return static_cast<unsigned char>(token[0]);
  return std::nullopt;
}

std::string ByteTextEncoder::decode(const std::vector<uint32_t> &ids) const {
  std::string text;
  for (uint32_t id : ids) {
    if (id < 256)
      text += char(id);
    else if (id - 256 < specials_.size())
      text += specials_[id - 256];
    else
      text += "\xEF\xBF\xBD";
  }
  return text;
}

ByteTextEncoder byteEncoderFor(const std::string &templateName) {
  Expected<ByteTextEncoder> e = [&] {
    if (templateName == "qwen" || templateName.rfind("qwen3", 0) == 0)
      return ByteTextEncoder::create({"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, "",
                                     "<|im_end|>", "<|endoftext|>");
    if (templateName == "llama3")
      return ByteTextEncoder::create({"<|begin_of_text|>", "<|end_of_text|>",
                                      "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                      "<|eom_id|>"},
                                     "<|begin_of_text|>", "<|eot_id|>", "");
    return ByteTextEncoder::create({"<s>", "</s>", "[INST]", "[/INST]"}, "<s>", "</s>", "");
  }();
  return std::move(*e); // the lists above are valid by construction
}

} // namespace mt::chat
