// Loading a Tokenizer from tokenizer.json and tokenizer_config.json: what is
// supported is read, everything else is refused by its JSON path.
#include "runtime/text/TokenizerImpl.h"

#include "runtime/support/FileKind.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <cctype>
#include <fstream>
#include <iterator>

namespace mt::text {
namespace {

using nlohmann::json;

// Reports errors as "FILE: JSON.PATH: what".
struct Where {
  std::string file;
  Status error(const std::string &path, const std::string &what) const {
    return Status::error(file + ": " + path + ": " + what);
  }
  std::string at(const std::string &path) const { return file + ": " + path; }
};

std::string typeOf(const json &node) {
  return node.is_object() && node.contains("type") && node["type"].is_string()
             ? node["type"].get<std::string>()
             : "";
}

Status refuseType(const Where &w, const std::string &path, const json &node,
                  const std::string &supported) {
  std::string type = typeOf(node);
  return w.error(path + ".type", (type.empty() ? node.dump() : "'" + type + "'") +
                                     " is not supported (" + supported + " are)");
}

Expected<json> readJson(const std::string &path) {
  if (std::string what = notARegularFile(path); !what.empty())
    return Status::error(path + ": " + what + ", not a JSON file");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(path + ": cannot open");
  // Parsing from memory is several times faster than from the stream.
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    return Status::error(path + ": cannot read");
  try {
    return json::parse(text);
  } catch (const json::exception &e) {
    return Status::error(path + ": not valid JSON: " + e.what());
  }
}

// A bool field that may be absent (then `fallback`).
Expected<bool> boolField(const Where &w, const json &node, const std::string &path,
                         const char *key, bool fallback) {
  if (!node.contains(key) || node[key].is_null())
    return fallback;
  if (!node[key].is_boolean())
    return w.error(path + "." + key, "expected true or false, got " + node[key].dump());
  return node[key].get<bool>();
}

Status loadModel(const Where &w, const json &root, Tokenizer::Impl &impl) {
  if (!root.contains("model") || !root["model"].is_object())
    return w.error("model", "missing (a BPE model is needed)");
  const json &model = root["model"];
  if (typeOf(model) != "BPE" && !(typeOf(model).empty() && model.contains("merges")))
    return refuseType(w, "model", model, "BPE models");
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"] != 0)
    return w.error("model.dropout", model["dropout"].dump() +
                                        " is not supported (null is: BPE dropout samples merges)");
  for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      return w.error(std::string("model.") + key,
                     model[key].dump() + " is not supported (null or \"\" is)");
  auto byteFallback = boolField(w, model, "model", "byte_fallback", false);
  auto ignoreMerges = boolField(w, model, "model", "ignore_merges", false);
  if (!byteFallback)
    return byteFallback.status();
  if (!ignoreMerges)
    return ignoreMerges.status();
  if (*byteFallback)
    return w.error("model.byte_fallback", "true is not supported (a byte-level BPE has no <0xNN> "
                                          "fallback tokens; false is)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return w.error("model.vocab", "missing or not an object of token -> id");
  for (const auto &[token, id] : model["vocab"].items()) {
    if (!id.is_number_unsigned() || id.get<uint64_t>() > UINT32_MAX)
      return w.error("model.vocab[\"" + token + "\"]", "expected an id in [0, 2^32), got " + id.dump());
    impl.vocab.emplace(token, id.get<uint32_t>());
  }
  if (!model.contains("merges") || !model["merges"].is_array())
    return w.error("model.merges", "missing or not an array");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(model["merges"].size());
  for (size_t i = 0; i < model["merges"].size(); ++i) {
    const json &merge = model["merges"][i];
    std::string path = "model.merges[" + std::to_string(i) + "]";
    if (merge.is_string()) {
      std::string s = merge.get<std::string>();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        return w.error(path, "expected \"LEFT RIGHT\", got " + merge.dump());
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      return w.error(path, "expected \"LEFT RIGHT\" or [LEFT, RIGHT], got " + merge.dump());
    }
  }
  auto bpe = BpeModel::build(impl.vocab, merges, *ignoreMerges, w.at("model"));
  if (!bpe)
    return bpe.status();
  impl.bpe = std::move(*bpe);
  return Status::ok();
}

// tokenizers does not take added-token ids from the file: it adds the
// tokens in ascending id order, each getting its vocabulary id when the
// model has it, else the next id after the vocabulary and the earlier added
// tokens (added_vocabulary.rs add_tokens). A file whose ids differ would be
// encoded differently from what it says, so it is refused.
Status checkAddedIds(const Where &w, const json &entries, Tokenizer::Impl &impl) {
  std::vector<AddedToken> tokens = std::move(impl.added);
  impl.added.clear();
  std::vector<size_t> order(tokens.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return entries[a]["id"].get<uint32_t>() < entries[b]["id"].get<uint32_t>();
  });
  const uint64_t modelSize = impl.vocab.size();
  std::optional<uint64_t> maxId; // of the added tokens so far
  for (size_t index : order) {
    AddedToken token = tokens[index];
    std::string path = "added_tokens[" + std::to_string(index) + "]";
    if (impl.addedByContent.count(token.content))
      return w.error(path, "repeats the added token '" + token.content + "'");
    uint64_t expected = !maxId ? modelSize : *maxId >= modelSize ? *maxId + 1 : modelSize;
    if (auto it = impl.vocab.find(token.content); it != impl.vocab.end())
      expected = it->second;
    maxId = std::max(maxId.value_or(0), expected);
    if (token.id != expected)
      return w.error(path, "'" + token.content + "' has id " + std::to_string(token.id) +
                               " but tokenizers gives it " + std::to_string(expected) +
                               " (its vocabulary id, or the next after the vocabulary and the "
                               "added tokens before it)");
    impl.addedById[token.id] = impl.added.size();
    impl.addedByContent[token.content] = token.id;
    impl.added.push_back(std::move(token));
  }
  return Status::ok();
}

Status loadAddedTokens(const Where &w, const json &root, Tokenizer::Impl &impl) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null())
    return Status::ok();
  if (!root["added_tokens"].is_array())
    return w.error("added_tokens", "expected an array");
  for (size_t i = 0; i < root["added_tokens"].size(); ++i) {
    const json &entry = root["added_tokens"][i];
    std::string path = "added_tokens[" + std::to_string(i) + "]";
    if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string() ||
        !entry.contains("id") || !entry["id"].is_number_unsigned() ||
        entry["id"].get<uint64_t>() > UINT32_MAX)
      return w.error(path, "expected {\"id\": N, \"content\": \"...\", ...}, got " + entry.dump());
    AddedToken token;
    token.content = entry["content"].get<std::string>();
    token.id = entry["id"].get<uint32_t>();
    bool *flags[] = {&token.singleWord, &token.lstrip, &token.rstrip, &token.normalized,
                     &token.special};
    const char *keys[] = {"single_word", "lstrip", "rstrip", "normalized", "special"};
    bool defaults[] = {false, false, false, true, false};
    for (int k = 0; k < 5; ++k) {
      auto value = boolField(w, entry, path, keys[k], defaults[k]);
      if (!value)
        return value.status();
      *flags[k] = *value;
    }
    impl.added.push_back(std::move(token));
  }
  return checkAddedIds(w, root["added_tokens"], impl);
}

Status loadNormalizer(const Where &w, const json &node, const std::string &path,
                      Tokenizer::Impl &impl) {
  if (node.is_null())
    return Status::ok();
  std::string type = typeOf(node);
  if (type == "NFC") {
    impl.nfc = true;
    return Status::ok();
  }
  if (type == "Sequence" && node.contains("normalizers") && node["normalizers"].is_array()) {
    for (size_t i = 0; i < node["normalizers"].size(); ++i)
      if (Status s = loadNormalizer(w, node["normalizers"][i],
                                    path + ".normalizers[" + std::to_string(i) + "]", impl);
          !s)
        return s;
    return Status::ok();
  }
  return refuseType(w, path, node, "null, NFC and Sequence");
}

// A Split pattern as a PCRE2 regex: {"Regex": r} as is, {"String": s} quoted.
Expected<std::string> splitPattern(const Where &w, const json &node, const std::string &path) {
  const json *pattern = node.contains("pattern") ? &node["pattern"] : nullptr;
  if (pattern && pattern->is_object() && pattern->contains("Regex") && (*pattern)["Regex"].is_string())
    return (*pattern)["Regex"].get<std::string>();
  if (pattern && pattern->is_object() && pattern->contains("String") &&
      (*pattern)["String"].is_string()) {
    std::string quoted;
    for (char c : (*pattern)["String"].get<std::string>()) {
      if (uint8_t(c) < 0x80 && !std::isalnum(uint8_t(c)))
        quoted += '\\';
      quoted += c;
    }
    return quoted;
  }
  return w.error(path + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
}

// GPT-2's pre-tokenizer regex, what ByteLevel splits with when use_regex
// (tokenizers' pre_tokenizers/byte_level.rs).
constexpr const char *kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

Status loadPreTokenizer(const Where &w, const json &node, const std::string &path,
                        Tokenizer::Impl &impl, bool &byteLevel) {
  std::string type = typeOf(node);
  if (byteLevel) // ByteLevel maps bytes to stand-ins, which later steps would see
    return w.error(path, "a pre-tokenizer after ByteLevel is not supported (ByteLevel must come last)");
  if (type == "Sequence" && node.contains("pretokenizers") && node["pretokenizers"].is_array()) {
    for (size_t i = 0; i < node["pretokenizers"].size(); ++i)
      if (Status s = loadPreTokenizer(w, node["pretokenizers"][i],
                                      path + ".pretokenizers[" + std::to_string(i) + "]", impl,
                                      byteLevel);
          !s)
        return s;
    return Status::ok();
  }
  if (type == "Split") {
    json behavior = node.contains("behavior") ? node["behavior"] : json();
    if (behavior != "Isolated")
      return w.error(path + ".behavior", behavior.dump() + " is not supported (\"Isolated\" is)");
    auto invert = boolField(w, node, path, "invert", false);
    if (!invert)
      return invert.status();
    if (*invert)
      return w.error(path + ".invert", "true is not supported (false is)");
    auto pattern = splitPattern(w, node, path);
    if (!pattern)
      return pattern.status();
    auto regex = SplitRegex::compile(*pattern, w.at(path + ".pattern"));
    if (!regex)
      return regex.status();
    impl.stages.push_back({std::move(*regex), false});
    return Status::ok();
  }
  if (type == "ByteLevel") {
    auto prefix = boolField(w, node, path, "add_prefix_space", true);
    auto useRegex = boolField(w, node, path, "use_regex", true);
    if (!prefix)
      return prefix.status();
    if (!useRegex)
      return useRegex.status();
    Tokenizer::Impl::Stage stage;
    stage.addPrefixSpace = *prefix;
    if (*useRegex) {
      auto regex = SplitRegex::compile(kGpt2Pattern, w.at(path));
      if (!regex)
        return regex.status();
      stage.regex = std::move(*regex);
    }
    impl.stages.push_back(std::move(stage));
    byteLevel = true;
    return Status::ok();
  }
  return refuseType(w, path, node, "Split, ByteLevel and Sequence");
}

// Reads one TemplateProcessing "single" into the ids before and after $A.
Status loadTemplate(const Where &w, const json &node, const std::string &path,
                    Tokenizer::Impl &impl) {
  if (!node.contains("single") || !node["single"].is_array())
    return w.error(path + ".single", "missing or not an array");
  const json &specials = node.contains("special_tokens") ? node["special_tokens"] : json::object();
  bool seenA = false;
  for (size_t i = 0; i < node["single"].size(); ++i) {
    const json &item = node["single"][i];
    std::string itemPath = path + ".single[" + std::to_string(i) + "]";
    if (item.contains("Sequence")) {
      const json &sequence = item["Sequence"];
      if (seenA || !sequence.contains("id") || sequence["id"] != "A")
        return w.error(itemPath, "only one {\"Sequence\": {\"id\": \"A\"}} is supported");
      seenA = true;
    } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id") &&
               item["SpecialToken"]["id"].is_string()) {
      std::string name = item["SpecialToken"]["id"].get<std::string>();
      if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
        return w.error(path + ".special_tokens", "no entry \"" + name + "\" with \"ids\"");
      for (const json &id : specials[name]["ids"]) {
        if (!id.is_number_unsigned() || id.get<uint64_t>() > UINT32_MAX)
          return w.error(path + ".special_tokens[\"" + name + "\"].ids",
                         "expected ids in [0, 2^32), got " + id.dump());
        (seenA ? impl.suffixIds : impl.prefixIds).push_back(id.get<uint32_t>());
      }
    } else {
      return w.error(itemPath, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  if (!seenA)
    return w.error(path + ".single", "has no {\"Sequence\": {\"id\": \"A\"}}");
  return Status::ok();
}

Status loadPostProcessor(const Where &w, const json &node, const std::string &path,
                         Tokenizer::Impl &impl, bool &haveTemplate) {
  if (node.is_null())
    return Status::ok();
  std::string type = typeOf(node);
  if (type == "ByteLevel") // changes offsets only
    return Status::ok();
  if (type == "TemplateProcessing") {
    if (haveTemplate)
      return w.error(path, "a second TemplateProcessing is not supported");
    haveTemplate = true;
    return loadTemplate(w, node, path, impl);
  }
  if (type == "Sequence" && node.contains("processors") && node["processors"].is_array()) {
    for (size_t i = 0; i < node["processors"].size(); ++i)
      if (Status s = loadPostProcessor(w, node["processors"][i],
                                       path + ".processors[" + std::to_string(i) + "]", impl,
                                       haveTemplate);
          !s)
        return s;
    return Status::ok();
  }
  return refuseType(w, path, node, "null, ByteLevel, TemplateProcessing and Sequence");
}

Status loadDecoder(const Where &w, const json &node, const std::string &path) {
  std::string type = typeOf(node);
  if (type == "ByteLevel")
    return Status::ok();
  if (type == "Sequence" && node.contains("decoders") && node["decoders"].is_array() &&
      node["decoders"].size() == 1)
    return loadDecoder(w, node["decoders"][0], path + ".decoders[0]");
  return refuseType(w, path, node, "ByteLevel decoders");
}

Status loadTokenizerJson(const std::string &file, const json &root, Tokenizer::Impl &impl) {
  Where w{file};
  if (!root.is_object())
    return Status::error(file + ": expected a JSON object");
  for (const char *key : {"truncation", "padding"})
    if (root.contains(key) && !root[key].is_null())
      return w.error(key, "is set; only null is supported (truncate and pad after encoding)");
  if (Status s = loadModel(w, root, impl); !s)
    return s;
  if (Status s = loadAddedTokens(w, root, impl); !s)
    return s;
  if (Status s = loadNormalizer(w, root.value("normalizer", json()), "normalizer", impl); !s)
    return s;
  if (!root.contains("pre_tokenizer") || root["pre_tokenizer"].is_null())
    return w.error("pre_tokenizer", "missing; a byte-level BPE needs a ByteLevel pre-tokenizer");
  bool byteLevel = false;
  if (Status s = loadPreTokenizer(w, root["pre_tokenizer"], "pre_tokenizer", impl, byteLevel); !s)
    return s;
  if (!byteLevel)
    return w.error("pre_tokenizer", "has no ByteLevel step; only byte-level BPE is supported");
  bool haveTemplate = false;
  if (Status s = loadPostProcessor(w, root.value("post_processor", json()), "post_processor", impl,
                                   haveTemplate);
      !s)
    return s;
  if (!root.contains("decoder") || root["decoder"].is_null())
    return w.error("decoder", "missing; a byte-level BPE needs a ByteLevel decoder");
  return loadDecoder(w, root["decoder"], "decoder");
}

} // namespace

namespace {

// tokenizer_config.json's `key`: a string, {"content": ...}, null or absent.
Status loadSpecialToken(const Where &w, const json &config, const char *key,
                        const Tokenizer::Impl &impl, std::optional<SpecialToken> &out) {
  if (!config.contains(key) || config[key].is_null())
    return Status::ok();
  const json &node = config[key];
  std::string content;
  if (node.is_string())
    content = node.get<std::string>();
  else if (node.is_object() && node.contains("content") && node["content"].is_string())
    content = node["content"].get<std::string>();
  else
    return w.error(key, "expected a string or {\"content\": ...}, got " + node.dump());
  std::optional<uint32_t> id;
  if (auto it = impl.addedByContent.find(content); it != impl.addedByContent.end())
    id = it->second;
  else if (auto v = impl.vocab.find(content); v != impl.vocab.end())
    id = v->second;
  if (!id)
    return w.error(key, "'" + content + "' is not a token of tokenizer.json");
  out = SpecialToken{content, *id};
  return Status::ok();
}

Status loadTokenizerConfig(const std::string &file, const json &config, Tokenizer::Impl &impl) {
  Where w{file};
  if (!config.is_object())
    return Status::error(file + ": expected a JSON object");
  if (Status s = loadSpecialToken(w, config, "bos_token", impl, impl.bos); !s)
    return s;
  if (Status s = loadSpecialToken(w, config, "eos_token", impl, impl.eos); !s)
    return s;
  if (Status s = loadSpecialToken(w, config, "pad_token", impl, impl.pad); !s)
    return s;
  bool hasBos = config.contains("add_bos_token"), hasEos = config.contains("add_eos_token");
  if (!hasBos && !hasEos)
    return Status::ok();
  // transformers' LlamaTokenizerFast.update_post_processor: [bos] $A [eos].
  auto addBos = boolField(w, config, "", "add_bos_token", false);
  auto addEos = boolField(w, config, "", "add_eos_token", false);
  if (!addBos)
    return addBos.status();
  if (!addEos)
    return addEos.status();
  if (*addBos && !impl.bos)
    return w.error("add_bos_token", "is true but bos_token is unset");
  if (*addEos && !impl.eos)
    return w.error("add_eos_token", "is true but eos_token is unset");
  impl.prefixIds.clear();
  impl.suffixIds.clear();
  if (*addBos)
    impl.prefixIds.push_back(impl.bos->id);
  if (*addEos)
    impl.suffixIds.push_back(impl.eos->id);
  return Status::ok();
}

// The id -> spelling table, the vocab size, and the matchers of added tokens.
void finishTables(Tokenizer::Impl &impl) {
  uint64_t size = 0;
  for (const auto &[spelling, id] : impl.vocab)
    size = std::max<uint64_t>(size, uint64_t(id) + 1);
  for (const AddedToken &t : impl.added)
    size = std::max<uint64_t>(size, uint64_t(t.id) + 1);
  impl.vocabSize = size;
  impl.spelling.assign(size, std::string());
  for (const auto &[spelling, id] : impl.vocab)
    impl.spelling[id] = spelling;
  for (const AddedToken &t : impl.added)
    impl.spelling[t.id] = t.content;
  std::vector<const AddedToken *> raw, normalized;
  impl.normalizedForms.reserve(impl.added.size()); // pointers into it stay valid
  for (const AddedToken &t : impl.added) {
    if (!t.normalized) {
      raw.push_back(&t);
      continue;
    }
    AddedToken form = t;
    if (impl.nfc)
      nfc(t.content, form.content);
    impl.normalizedForms.push_back(std::move(form));
    normalized.push_back(&impl.normalizedForms.back());
  }
  impl.rawMatcher = AddedTokenMatcher(std::move(raw));
  impl.normalizedMatcher = AddedTokenMatcher(std::move(normalized));
}

} // namespace

Expected<Tokenizer> Tokenizer::fromFiles(const std::string &tokenizerJson,
                                         const std::string &tokenizerConfigJson) {
  auto root = readJson(tokenizerJson);
  if (!root)
    return root.status();
  auto impl = std::make_unique<Impl>();
  // The loaders check each value's type before reading it; a JSON shape
  // they did not foresee still ends as an error, never as a crash.
  try {
    if (Status s = loadTokenizerJson(tokenizerJson, *root, *impl); !s)
      return s;
    finishTables(*impl);
    for (const auto *ids : {&impl->prefixIds, &impl->suffixIds}) // the template's ids are tokens
      for (uint32_t id : *ids)
        if (id >= impl->vocabSize || impl->spelling[id].empty())
          return Status::error(tokenizerJson + ": post_processor: the template's id " +
                               std::to_string(id) + " is not a token");
  } catch (const json::exception &e) {
    return Status::error(tokenizerJson + ": unexpected JSON: " + e.what());
  }
  if (!tokenizerConfigJson.empty()) {
    auto config = readJson(tokenizerConfigJson);
    if (!config)
      return config.status();
    try {
      if (Status s = loadTokenizerConfig(tokenizerConfigJson, *config, *impl); !s)
        return s;
    } catch (const json::exception &e) {
      return Status::error(tokenizerConfigJson + ": unexpected JSON: " + e.what());
    }
  }
  return Tokenizer(std::move(impl));
}

Expected<Tokenizer> Tokenizer::fromDirectory(const std::string &modelDir) {
  namespace fs = std::filesystem;
  fs::path dir(modelDir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return Status::error(modelDir + ": not a directory (a model directory with tokenizer.json)");
  if (!fs::exists(dir / "tokenizer.json", ec))
    return Status::error(modelDir + ": has no tokenizer.json (only tokenizer.json tokenizers are "
                                    "supported, not tokenizer.model or vocab.json + merges.txt)");
  fs::path config = dir / "tokenizer_config.json";
  return fromFiles((dir / "tokenizer.json").string(),
                   fs::exists(config, ec) ? config.string() : std::string());
}

} // namespace mt::text
