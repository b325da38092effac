// mt::text::Tokenizer on small tokenizer.json files written by the tests:
// what is refused (by file and JSON path), BPE merge order, special tokens
// from tokenizer_config.json, invalid UTF-8, decode. The real tokenizers are
// checked against Hugging Face `tokenizers` in TokenizerReferenceTest.cpp.
#include "runtime/text/Bpe.h"
#include "runtime/text/Tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

namespace {

using mt::text::Tokenizer;
using nlohmann::json;
namespace fs = std::filesystem;

// A byte-level BPE: the 256 byte tokens (ids 0..255 in byte order), then
// "ab", "bc", "aa", "Ġa"; merges a+b (rank 0), b+c (1), a+a (2), Ġ+a (3);
// the Qwen3 pre-tokenizer regex; <|end|> as id 260.
json smallTokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b)
    vocab[std::string(mt::text::byteLevelChar(uint8_t(b)))] = b;
  vocab["ab"] = 256;
  vocab["bc"] = 257;
  vocab["aa"] = 258;
  vocab["Ġa"] = 259;
  json split = {{"type", "Split"},
                {"pattern", {{"Regex", R"((?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
                {"behavior", "Isolated"},
                {"invert", false}};
  json byteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens",
           {{{"id", 260}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}}}},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {split, byteLevel}}}},
          {"post_processor", byteLevel},
          {"decoder", byteLevel},
          {"model",
           {{"type", "BPE"},
            {"vocab", vocab},
            {"merges", {"a b", "b c", json::array({"a", "a"}), "Ġ a"}}}}};
}

class TokenizerTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("mt-text-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes the files (config omitted when null) and loads the directory.
  mt::Expected<Tokenizer> load(const json &tokenizer, const json &config = nullptr) {
    std::ofstream(dir_ / "tokenizer.json") << tokenizer.dump();
    if (!config.is_null())
      std::ofstream(dir_ / "tokenizer_config.json") << config.dump();
    return Tokenizer::fromDirectory(dir_.string());
  }
  // The error of loading `tokenizer`, which must fail.
  std::string loadError(const json &tokenizer, const json &config = nullptr) {
    auto loaded = load(tokenizer, config);
    EXPECT_FALSE(loaded) << "loaded, but an error was expected";
    return loaded ? "" : loaded.message();
  }
  std::vector<uint32_t> encode(const Tokenizer &t, std::string_view text, bool special = false) {
    auto ids = t.encode(text, special);
    EXPECT_TRUE(ids) << ids.message();
    return ids ? *ids : std::vector<uint32_t>{};
  }

  fs::path dir_;
};

TEST_F(TokenizerTest, MergesApplyLowestRankFirst) {
  auto t = load(smallTokenizer());
  ASSERT_TRUE(t) << t.message();
  EXPECT_EQ(encode(*t, "abc"), (std::vector<uint32_t>{256, 'c'}));  // a+b (rank 0) before b+c
  EXPECT_EQ(encode(*t, "bcab"), (std::vector<uint32_t>{257, 256})); // pieces merge independently
  EXPECT_EQ(encode(*t, "aaa"), (std::vector<uint32_t>{258, 'a'}));  // leftmost of equal ranks
  EXPECT_EQ(encode(*t, "x a"), (std::vector<uint32_t>{'x', 259}));  // " a" is one piece
  json swapped = smallTokenizer();
  swapped["model"]["merges"] = {"b c", "a b"};
  auto u = load(swapped);
  ASSERT_TRUE(u) << u.message();
  EXPECT_EQ(encode(*u, "abc"), (std::vector<uint32_t>{'a', 257}));
}

TEST_F(TokenizerTest, AddedTokensAndVocabSize) {
  auto t = load(smallTokenizer());
  ASSERT_TRUE(t) << t.message();
  EXPECT_EQ(encode(*t, "ab<|end|>ab"), (std::vector<uint32_t>{256, 260, 256}));
  EXPECT_EQ(t->vocabSize(), 261u);
  EXPECT_EQ(t->tokenToId("<|end|>"), 260u);
  EXPECT_EQ(t->tokenToId("Ġa"), 259u);
  EXPECT_EQ(t->tokenToId("nope"), std::nullopt);
  EXPECT_EQ(t->idToToken(259), "Ġa");
  EXPECT_TRUE(t->isSpecial(260));
  EXPECT_FALSE(t->isSpecial(256));
  EXPECT_EQ(t->bosId(), std::nullopt); // no tokenizer_config.json
}

TEST_F(TokenizerTest, ConfigSpecialTokensAndAddBosEos) {
  json tokenizer = smallTokenizer();
  tokenizer["added_tokens"].push_back({{"id", 261}, {"content", "<s>"}, {"special", true}});
  json config = {{"bos_token", "<s>"}, {"eos_token", {{"content", "<|end|>"}}}, {"pad_token", nullptr}};
  auto plain = load(tokenizer, config);
  ASSERT_TRUE(plain) << plain.message();
  EXPECT_EQ(plain->bosId(), 261u);
  EXPECT_EQ(plain->eosToken()->content, "<|end|>");
  EXPECT_EQ(plain->padId(), std::nullopt);
  // No template in tokenizer.json and no add_*_token: nothing is added.
  EXPECT_EQ(encode(*plain, "ab", true), (std::vector<uint32_t>{256}));
  config["add_bos_token"] = true;
  config["add_eos_token"] = true;
  auto both = load(tokenizer, config);
  ASSERT_TRUE(both) << both.message();
  EXPECT_EQ(encode(*both, "ab", true), (std::vector<uint32_t>{261, 256, 260}));
  EXPECT_EQ(encode(*both, "ab", false), (std::vector<uint32_t>{256}));
  EXPECT_EQ(encode(*both, "", true), (std::vector<uint32_t>{261, 260}));
}

TEST_F(TokenizerTest, InvalidUtf8IsAnErrorWithItsOffset) {
  auto t = load(smallTokenizer());
  ASSERT_TRUE(t) << t.message();
  for (std::string bad : {std::string("ab\xff"), std::string("ab\xc0\x80"), std::string("ab\xed\xa0\x80"),
                          std::string("ab\xe4\xbd")}) {
    auto ids = t->encode(bad, false);
    ASSERT_FALSE(ids) << "accepted " << bad.size() << " bytes of invalid UTF-8";
    EXPECT_EQ(ids.message(), "the text is not valid UTF-8 at byte 2");
  }
}

TEST_F(TokenizerTest, DecodeBytesAndUnknownIds) {
  auto t = load(smallTokenizer());
  ASSERT_TRUE(t) << t.message();
  std::string text = "x aab\xe4\xbd\xa0<|end|>\t";
  auto ids = encode(*t, text);
  EXPECT_EQ(*t->decode(ids), text);
  EXPECT_EQ(*t->decode(ids, /*skipSpecialTokens=*/true), "x aab\xe4\xbd\xa0\t");
  // A lone byte of a multi-byte character decodes to U+FFFD.
  EXPECT_EQ(*t->decode(std::vector<uint32_t>{0xe4, 'a'}), "\xef\xbf\xbd" "a");
  auto bad = t->decode(std::vector<uint32_t>{'a', 7000});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.message(), "decode: id 7000 at position 1 is not a token (vocab size 261)");
}

// Threads sharing one Tokenizer (and its word cache) get the ids of one.
TEST_F(TokenizerTest, ConcurrentEncodesAgree) {
  auto t = load(smallTokenizer());
  ASSERT_TRUE(t) << t.message();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back("ab aab " + std::to_string(i) + " bca" + std::string(size_t(i % 7), 'a'));
  std::vector<std::vector<uint32_t>> expected;
  for (const std::string &text : texts)
    expected.push_back(encode(*t, text));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < texts.size(); ++i) {
          auto ids = t->encode(texts[i], false);
          mismatches[k] += !ids || *ids != expected[i];
        }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// Each unsupported setting is refused by its JSON path.
TEST_F(TokenizerTest, RefusesWhatItDoesNotImplementByJsonPath) {
  auto expectError = [&](const json &tokenizer, const std::string &message) {
    std::string error = loadError(tokenizer);
    EXPECT_NE(error.find("tokenizer.json: " + message), std::string::npos) << error;
  };
  json t = smallTokenizer();
  t["model"]["type"] = "Unigram";
  expectError(t, "model.type: 'Unigram' is not supported (BPE models are)");
  t = smallTokenizer();
  t["model"]["type"] = "WordPiece";
  expectError(t, "model.type: 'WordPiece' is not supported");
  t = smallTokenizer();
  t["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Metaspace"}};
  expectError(t, "pre_tokenizer.pretokenizers[0].type: 'Metaspace' is not supported (Split, "
                 "ByteLevel and Sequence are)");
  t = smallTokenizer();
  t["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  expectError(t, "pre_tokenizer.pretokenizers[0].behavior: \"Removed\" is not supported");
  t = smallTokenizer();
  t["pre_tokenizer"] = t["pre_tokenizer"]["pretokenizers"][0];
  expectError(t, "pre_tokenizer: has no ByteLevel step");
  t = smallTokenizer();
  t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expectError(t, "pre_tokenizer.pretokenizers[0].pattern: the regex '(unclosed' does not compile");
  t = smallTokenizer();
  t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "[\\Sa]";
  expectError(t, "pre_tokenizer.pretokenizers[0].pattern: \\S inside a character class");
  t = smallTokenizer();
  t["normalizer"] = {{"type", "NFKC"}};
  expectError(t, "normalizer.type: 'NFKC' is not supported (null, NFC and Sequence are)");
  t = smallTokenizer();
  t["decoder"] = {{"type", "WordPiece"}};
  expectError(t, "decoder.type: 'WordPiece' is not supported (ByteLevel decoders are)");
  t = smallTokenizer();
  t["post_processor"] = {{"type", "BertProcessing"}};
  expectError(t, "post_processor.type: 'BertProcessing' is not supported");
  t = smallTokenizer();
  t["truncation"] = {{"max_length", 8}};
  expectError(t, "truncation: is set; only null is supported");
  t = smallTokenizer();
  t["model"]["byte_fallback"] = true;
  expectError(t, "model.byte_fallback: true is not supported");
  t = smallTokenizer();
  t["model"]["merges"].push_back("c d");
  expectError(t, "model.merges[4]: the merged 'cd' is not in model.vocab");
  t = smallTokenizer();
  t["model"]["vocab"].erase("A");
  expectError(t, "model.vocab: no entry for byte 65 ('A')");
  t = smallTokenizer();
  t["added_tokens"][0]["id"] = 300;
  expectError(t, "added_tokens[0]: '<|end|>' has id 300 but tokenizers gives it 260");
}

TEST_F(TokenizerTest, ConfigAndDirectoryErrors) {
  json config = {{"eos_token", "<nope>"}};
  EXPECT_NE(loadError(smallTokenizer(), config)
                .find("tokenizer_config.json: eos_token: '<nope>' is not a token of tokenizer.json"),
            std::string::npos);
  config = {{"add_bos_token", true}};
  EXPECT_NE(loadError(smallTokenizer(), config)
                .find("tokenizer_config.json: add_bos_token: is true but bos_token is unset"),
            std::string::npos);
  auto missing = Tokenizer::fromDirectory((dir_ / "absent").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.message().find("not a directory"), std::string::npos) << missing.message();
  fs::remove(dir_ / "tokenizer.json");
  auto noJson = Tokenizer::fromDirectory(dir_.string());
  ASSERT_FALSE(noJson);
  EXPECT_NE(noJson.message().find("has no tokenizer.json"), std::string::npos) << noJson.message();
  std::ofstream(dir_ / "tokenizer.json") << "{ not json";
  auto garbled = Tokenizer::fromDirectory(dir_.string());
  ASSERT_FALSE(garbled);
  EXPECT_NE(garbled.message().find("tokenizer.json: not valid JSON"), std::string::npos)
      << garbled.message();
}

} // namespace
