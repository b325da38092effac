// dataset_info.json and the alpaca / sharegpt converters: what they read, and
// that every malformed input is an error naming the file, line or sample,
// and what would be valid.
#include "runtime/chat/DatasetInfo.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace mt::chat {
namespace {

namespace fs = std::filesystem;

class DatasetInfo : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mt-datasetinfo-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string &name, const std::string &text) {
    std::ofstream(dir_ / name) << text;
  }
  /// Loads dataset `name` and returns the error (fails if there is none).
  std::string error(const std::string &name) {
    auto attrs = readDatasetInfo(dir_.string(), {name});
    if (!attrs)
      return attrs.message();
    auto examples = loadExamples(dir_.string(), (*attrs)[0], std::nullopt, 0);
    EXPECT_FALSE(examples) << name << " loaded without error";
    return examples ? "" : examples.message();
  }
  Expected<std::vector<Example>> load(const std::string &name, std::optional<int64_t> max = {}) {
    auto attrs = readDatasetInfo(dir_.string(), {name});
    if (!attrs)
      return attrs.status();
    return loadExamples(dir_.string(), (*attrs)[0], max, 0);
  }
  std::string path(const std::string &name) { return (dir_ / name).string(); }
  fs::path dir_;
};

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST_F(DatasetInfo, AlpacaWithHistoryAndSystem) {
  write("dataset_info.json", R"({"a": {"file_name": "a.json",
      "columns": {"system": "sys", "history": "hist"}}})");
  write("a.json", R"([{"instruction": "Add", "input": "1 2", "output": "3", "sys": "S",
                       "hist": [["hi", "hello"]]},
                      {"instruction": "Q", "output": "A"}])");
  auto e = load("a");
  ASSERT_TRUE(e) << e.message();
  ASSERT_EQ(e->size(), 2u);
  const Example &x = (*e)[0];
  ASSERT_EQ(x.messages.size(), 4u);
  EXPECT_EQ(x.messages[0].content, "hi");
  EXPECT_EQ(x.messages[1].content, "hello");
  EXPECT_EQ(x.messages[2].content, "Add\n1 2"); // "prompt\nquery"
  EXPECT_EQ(x.messages[3].content, "3");
  EXPECT_EQ(x.system, "S");
  EXPECT_EQ((*e)[1].messages[0].content, "Q");
  EXPECT_EQ(load("a", 1)->size(), 1u); // max_samples
}

TEST_F(DatasetInfo, SharegptJsonLinesWithTags) {
  write("dataset_info.json", R"({"s": {"file_name": "s.jsonl", "formatting": "sharegpt",
      "columns": {"messages": "msgs"},
      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
               "assistant_tag": "assistant"}}})");
  write("s.jsonl", "{\"msgs\": [{\"role\": \"system\", \"content\": \"S\"}, "
                   "{\"role\": \"user\", \"content\": \"u\"}, "
                   "{\"role\": \"assistant\", \"content\": \"a\"}]}\n\n"
                   "{\"msgs\": [{\"role\": \"user\", \"content\": \"u2\"}, "
                   "{\"role\": \"assistant\", \"content\": \"a2\"}]}\n");
  auto e = load("s");
  ASSERT_TRUE(e) << e.message();
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[0].system, "S");
  EXPECT_EQ((*e)[0].messages[1].role, Role::Assistant);
  EXPECT_EQ((*e)[1].where, path("s.jsonl") + ":3");
}

TEST_F(DatasetInfo, ShippedDemoLoads) {
  auto attrs = readDatasetInfo(MT_DEMO_DATA, {"demo_alpaca", "demo_sharegpt"});
  ASSERT_TRUE(attrs) << attrs.message();
  for (const DatasetAttr &a : *attrs) {
    auto e = loadExamples(MT_DEMO_DATA, a, std::nullopt, 0);
    ASSERT_TRUE(e) << e.message();
    EXPECT_GE(e->size(), 10u) << a.name;
  }
}

TEST_F(DatasetInfo, UnknownDatasetSuggestsName) {
  write("dataset_info.json", R"({"alpaca_demo": {"file_name": "a.json"}})");
  std::string m = error("alpaca_dem");
  EXPECT_HAS(m, "unknown dataset 'alpaca_dem'");
  EXPECT_HAS(m, "did you mean 'alpaca_demo'");
  EXPECT_HAS(m, path("dataset_info.json"));
  // Every unknown name of the list is named at once, not the first alone.
  auto attrs = readDatasetInfo(dir_.string(), {"identity", "alpaca_demo", "alpaca_en_demo"});
  ASSERT_FALSE(attrs);
  m = attrs.message();
  EXPECT_HAS(m, "unknown dataset 'identity'");
  EXPECT_HAS(m, "unknown dataset 'alpaca_en_demo'");
}

TEST_F(DatasetInfo, UnknownFormattingAndKeys) {
  write("dataset_info.json", R"({"x": {"file_name": "a.json", "formatting": "chatml"},
      "y": {"file_name": "a.json", "colums": {}},
      "z": {"file_name": "a.json", "tags": {"user": "human"}},
      "h": {"hf_hub_url": "org/name"}})");
  EXPECT_HAS(error("x"), "unknown formatting 'chatml'; valid: alpaca, sharegpt");
  EXPECT_HAS(error("y"), "unknown key 'colums' (did you mean 'columns'?)");
  EXPECT_HAS(error("z"), "dataset 'z'.tags: unknown key 'user'");
  EXPECT_HAS(error("h"), "'hf_hub_url' is not supported: datasets are read from local files");
}

TEST_F(DatasetInfo, MissingColumnNamesSample) {
  write("dataset_info.json", R"({"a": {"file_name": "a.json"}})");
  write("a.json", R"([{"instruction": "ok", "output": "ok"}, {"instruction": "no output"}])");
  std::string m = error("a");
  EXPECT_HAS(m, path("a.json") + " sample 2: missing column 'output' (a string)");
}

// A sharegpt sample whose conversation is not a list, or a message whose
// content is not a string: the error shows what the sample holds.
TEST_F(DatasetInfo, SharegptWrongTypesShowTheValue) {
  write("dataset_info.json", R"({"s": {"file_name": "s.jsonl", "formatting": "sharegpt"},
      "t": {"file_name": "t.jsonl", "formatting": "sharegpt"},
      "u": {"file_name": "u.jsonl", "formatting": "sharegpt"}})");
  write("s.jsonl", "{\"conversations\": \"hello there\"}\n");
  write("t.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": 5}, "
                   "{\"from\": \"gpt\", \"value\": \"b\"}]}\n");
  write("u.jsonl", "{\"messages\": []}\n");
  EXPECT_HAS(error("s"), ":1: column 'conversations' must be a list of {\"from\": ..., "
                         "\"value\": ...} messages, got \"hello there\"");
  EXPECT_HAS(error("t"), ":1: message 0 needs a string \"value\", got "
                         "{\"from\":\"human\",\"value\":5}");
  EXPECT_HAS(error("u"), ":1: missing column 'conversations' (a list of {\"from\": ..., "
                         "\"value\": ...} messages)");
}

// The quoted value is cut at 80 bytes on a character boundary: a message of
// Chinese text stays valid UTF-8.
TEST_F(DatasetInfo, QuotedValuesAreCutBetweenCharacters) {
  write("dataset_info.json", R"({"s": {"file_name": "s.jsonl", "formatting": "sharegpt"}})");
  std::string text;
  for (int i = 0; i < 30; ++i)
    text += "\u4f60\u597d"; // 6 bytes each in UTF-8
  write("s.jsonl", "{\"conversations\": \"" + text + "\"}\n");
  const std::string m = error("s");
  const size_t got = m.find("got \"");
  ASSERT_NE(got, std::string::npos) << m;
  const std::string quoted = m.substr(got + 4);
  // 1 quote and 26 characters of 3 bytes: the 27th would pass byte 80.
  EXPECT_EQ(quoted.size(), 79u) << quoted;
  EXPECT_EQ(quoted.substr(quoted.size() - 3), "\xe5\xa5\xbd") << quoted; // a whole U+597D
}

TEST_F(DatasetInfo, RoleOutOfOrderNamesLineAndTags) {
  write("dataset_info.json", R"({"s": {"file_name": "s.jsonl", "formatting": "sharegpt"}})");
  write("s.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, "
                   "{\"from\": \"gpt\", \"value\": \"b\"}]}\n"
                   "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, "
                   "{\"from\": \"human\", \"value\": \"b\"}]}\n");
  std::string m = error("s");
  EXPECT_HAS(m, path("s.jsonl") + ":2: message 1 has from 'human' out of order; expected 'gpt'");
}

TEST_F(DatasetInfo, UnknownRoleAndOddCount) {
  write("dataset_info.json", R"({"s": {"file_name": "s.jsonl", "formatting": "sharegpt"},
      "t": {"file_name": "t.jsonl", "formatting": "sharegpt"}})");
  write("s.jsonl", "{\"conversations\": [{\"from\": \"bot\", \"value\": \"a\"}]}\n");
  write("t.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}]}\n");
  std::string m = error("s");
  EXPECT_HAS(m, ":1: message 0 has from 'bot'; the tags are 'human' or 'observation'");
  EXPECT_HAS(error("t"), "1 message after the system message; a conversation needs prompt/response");
}

TEST_F(DatasetInfo, BadJsonLineNamesLine) {
  write("dataset_info.json", R"({"a": {"file_name": "a.jsonl"}})");
  write("a.jsonl", "{\"instruction\": \"x\", \"output\": \"y\"}\n{\"instruction\": oops}\n");
  std::string m = error("a");
  EXPECT_HAS(m, path("a.jsonl") + ":2: not a JSON object on one line (JSON lines)");
}

TEST_F(DatasetInfo, BadJsonArrayNamesPosition) {
  write("dataset_info.json", R"({"a": {"file_name": "a.json"}})");
  write("a.json", "[{\"instruction\": \"x\",\n \"output\": }]");
  EXPECT_HAS(error("a"), path("a.json") + ": not valid JSON at line 2");
}

TEST_F(DatasetInfo, MissingFileAndWrongExtension) {
  write("dataset_info.json", R"({"a": {"file_name": "none.json"}, "b": {"file_name": "b.csv"}})");
  write("b.csv", "instruction,output\n");
  EXPECT_HAS(error("a"), path("none.json") + ": no such file (file_name of dataset 'a')");
  EXPECT_HAS(error("b"), "must be a .json or .jsonl file");
}

TEST_F(DatasetInfo, ToolsAndFunctionCallsRefused) {
  write("dataset_info.json", R"({"a": {"file_name": "a.json", "columns": {"tools": "tools"}},
      "s": {"file_name": "s.jsonl", "formatting": "sharegpt"}})");
  write("a.json", R"([{"instruction": "x", "output": "y", "tools": "[{}]"}])");
  write("s.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, "
                   "{\"from\": \"function_call\", \"value\": \"{}\"}]}\n");
  EXPECT_HAS(error("a"), "column 'tools' (tools) is not supported yet");
  EXPECT_HAS(error("s"), "tool calls are not supported yet");
}

TEST_F(DatasetInfo, NumSamplesDrawsFromSeed) {
  write("dataset_info.json", R"({"a": {"file_name": "a.jsonl", "num_samples": 5}})");
  std::string lines;
  for (int i = 0; i < 3; ++i)
    lines += "{\"instruction\": \"q" + std::to_string(i) + "\", \"output\": \"a\"}\n";
  write("a.jsonl", lines);
  auto e = load("a");
  ASSERT_TRUE(e) << e.message();
  ASSERT_EQ(e->size(), 5u); // all 3 once, then 2 drawn again
  std::set<std::string> firstThree;
  for (int i = 0; i < 3; ++i)
    firstThree.insert((*e)[size_t(i)].messages[0].content);
  EXPECT_EQ(firstThree.size(), 3u);
}

} // namespace
} // namespace mt::chat
