// Tokenizer's encode and decode: added tokens, normalization, pre-tokenizer
// and BPE in tokenizers' order (tokenizers/src/tokenizer/mod.rs).
#include "runtime/text/TokenizerImpl.h"

namespace mt::text {
namespace {

// The pre-tokenizer stages from `stage` on, then BPE, for one piece.
Status pretokenize(const Tokenizer::Impl &impl, size_t stage, std::string_view piece,
                   bool useCache, std::vector<uint32_t> &ids) {
  if (stage == impl.stages.size()) {
    impl.bpe->encodePiece(piece, useCache, ids);
    return Status::ok();
  }
  const Tokenizer::Impl::Stage &step = impl.stages[stage];
  std::string prefixed;
  if (step.addPrefixSpace && piece[0] != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed.append(" ").append(piece);
    piece = prefixed;
  }
  if (!step.regex)
    return pretokenize(impl, stage + 1, piece, useCache, ids);
  Status status;
  Status split = step.regex->split(piece, [&](size_t begin, size_t end) {
    if (Status s = pretokenize(impl, stage + 1, piece.substr(begin, end - begin), useCache, ids);
        !s && status)
      status = s;
  });
  return split ? status : split;
}

} // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer &&) noexcept = default;
Tokenizer &Tokenizer::operator=(Tokenizer &&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Status Tokenizer::encodeInto(std::string_view text, bool addSpecialTokens,
                             std::vector<uint32_t> &ids) const {
  if (size_t bad = findInvalidUtf8(text); bad != std::string_view::npos)
    return Status::error("the text is not valid UTF-8 at byte " + std::to_string(bad));
  const Impl &impl = *impl_;
  size_t first = ids.size();
  if (addSpecialTokens)
    ids.insert(ids.end(), impl.prefixIds.begin(), impl.prefixIds.end());
  // One cache lock per call; a thread that finds it taken goes without.
  std::unique_lock<std::mutex> cacheLock(impl.bpe->cacheMutex(), std::try_to_lock);
  bool useCache = cacheLock.owns_lock();
  Status status;
  std::string normalized;
  auto pushId = [&](uint32_t id) { ids.push_back(id); };
  // Step 2 of tokenizers' extract_and_normalize: normalize each stretch the
  // raw-text tokens left, then find the normalized tokens in it.
  auto normalizedStretch = [&](std::string_view stretch) {
    if (impl.nfc) {
      nfc(stretch, normalized);
      stretch = normalized;
    }
    impl.normalizedMatcher.split(
        stretch,
        [&](std::string_view piece) {
          if (Status s = pretokenize(impl, 0, piece, useCache, ids); !s && status)
            status = s;
        },
        pushId);
  };
  impl.rawMatcher.split(text, normalizedStretch, pushId);
  if (!status) {
    ids.resize(first);
    return status;
  }
  if (addSpecialTokens)
    ids.insert(ids.end(), impl.suffixIds.begin(), impl.suffixIds.end());
  return Status::ok();
}

Expected<std::vector<uint32_t>> Tokenizer::encode(std::string_view text,
                                                  bool addSpecialTokens) const {
  std::vector<uint32_t> ids;
  if (Status s = encodeInto(text, addSpecialTokens, ids); !s)
    return s;
  return ids;
}

// Replaces invalid UTF-8 by U+FFFD as Rust's String::from_utf8_lossy: each
// maximal prefix of a valid sequence that is cut short becomes one U+FFFD.
static std::string utf8Lossy(const std::string &bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::string_view rest = bytes;
  while (!rest.empty()) {
    size_t bad = findInvalidUtf8(rest);
    if (bad == std::string_view::npos) {
      out.append(rest);
      break;
    }
    out.append(rest.substr(0, bad));
    out.append("\xEF\xBF\xBD");
    // Skip the longest prefix of a well-formed sequence starting at `bad`.
    size_t skip = 1;
    auto c = uint8_t(rest[bad]);
    size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
    for (size_t k = 1; k < need && bad + k < rest.size(); ++k) {
      auto b = uint8_t(rest[bad + k]);
      uint8_t lo = 0x80, hi = 0xBF;
      if (k == 1 && c == 0xE0) lo = 0xA0;
      if (k == 1 && c == 0xED) hi = 0x9F;
      if (k == 1 && c == 0xF0) lo = 0x90;
      if (k == 1 && c == 0xF4) hi = 0x8F;
      if (b < lo || b > hi)
        break;
      skip = k + 1;
    }
    rest = rest.substr(bad + skip);
  }
  return out;
}

Expected<std::string> Tokenizer::decode(std::span<const uint32_t> ids,
                                        bool skipSpecialTokens) const {
  const Impl &impl = *impl_;
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    uint32_t id = ids[i];
    if (id >= impl.vocabSize || impl.spelling[id].empty())
      return Status::error("decode: id " + std::to_string(id) + " at position " +
                           std::to_string(i) + " is not a token (vocab size " +
                           std::to_string(impl.vocabSize) + ")");
    if (skipSpecialTokens && isSpecial(id))
      continue;
    // The ByteLevel decoder: a token made of byte stand-ins is those bytes;
    // any other (an added token such as "<|im_end|>" written with a space)
    // is its own UTF-8.
    size_t before = bytes.size();
    if (!byteLevelDecode(impl.spelling[id], bytes)) {
      bytes.resize(before);
      bytes.append(impl.spelling[id]);
    }
  }
  return utf8Lossy(bytes);
}

std::optional<uint32_t> Tokenizer::tokenToId(std::string_view token) const {
  if (auto it = impl_->addedByContent.find(token); it != impl_->addedByContent.end())
    return it->second;
  if (auto it = impl_->vocab.find(token); it != impl_->vocab.end())
    return it->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::idToToken(uint32_t id) const {
  if (id >= impl_->vocabSize || impl_->spelling[id].empty())
    return std::nullopt;
  return impl_->spelling[id];
}

bool Tokenizer::isSpecial(uint32_t id) const {
  auto it = impl_->addedById.find(id);
  return it != impl_->addedById.end() && impl_->added[it->second].special;
}

const std::optional<SpecialToken> &Tokenizer::bosToken() const { return impl_->bos; }
const std::optional<SpecialToken> &Tokenizer::eosToken() const { return impl_->eos; }
const std::optional<SpecialToken> &Tokenizer::padToken() const { return impl_->pad; }

static std::optional<uint32_t> idOf(const std::optional<SpecialToken> &token) {
  return token ? std::optional<uint32_t>(token->id) : std::nullopt;
}
std::optional<uint32_t> Tokenizer::bosId() const { return idOf(impl_->bos); }
std::optional<uint32_t> Tokenizer::eosId() const { return idOf(impl_->eos); }
std::optional<uint32_t> Tokenizer::padId() const { return idOf(impl_->pad); }

uint64_t Tokenizer::vocabSize() const { return impl_->vocabSize; }

} // namespace mt::text
