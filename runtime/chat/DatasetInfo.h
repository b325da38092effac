// Datasets as LLaMA-Factory reads them (src/llamafactory/data/parser.py and
// converter.py): dataset_info.json in dataset_dir names each dataset's file,
// formatting (alpaca or sharegpt), columns and role tags; the files are JSON
// arrays or JSON lines, converted here to conversations.
#ifndef MT_RUNTIME_CHAT_DATASETINFO_H
#define MT_RUNTIME_CHAT_DATASETINFO_H

#include "runtime/chat/Template.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mt::chat {

/// One dataset_info.json entry (LLaMA-Factory's DatasetAttr for local files),
/// with its defaults.
struct DatasetAttr {
  enum class Formatting { Alpaca, Sharegpt };
  std::string name;
  std::string fileName; // relative to dataset_dir: a file, or a folder of them
  Formatting formatting = Formatting::Alpaca;
  std::optional<int64_t> numSamples;
  // columns
  std::string prompt = "instruction", query = "input", response = "output";
  std::string history, system, tools, messages = "conversations";
  // sharegpt tags
  std::string roleTag = "from", contentTag = "value", userTag = "human", assistantTag = "gpt";
  std::string observationTag = "observation", functionTag = "function_call",
              systemTag = "system";
};

/// Reads `datasetDir`/dataset_info.json and returns the entries of `names`
/// in order. Errors name the file and key: an unknown dataset (with the
/// nearest name), an unknown key, an unknown formatting, a hub or script
/// dataset (local files only), multimodal or ranking columns.
Expected<std::vector<DatasetAttr>> readDatasetInfo(const std::string &datasetDir,
                                                   const std::vector<std::string> &names);

/// A conversation ready for a template: alternating prompt and response
/// messages, ending with a response. `where` says where it came from
/// ("data/x.jsonl:12" or "data/x.json sample 3") for messages.
struct Example {
  std::vector<Message> messages;
  std::string system;
  std::string where;
};

/// Loads `attr`'s file(s) under `datasetDir` (.json: a JSON array of
/// objects, or JSON lines; .jsonl: JSON lines; a folder: its .json/.jsonl
/// files in name order), converts each sample as LLaMA-Factory's Alpaca /
/// Sharegpt converters do, and keeps the first `maxSamples` (max_samples).
/// Where LLaMA-Factory drops a malformed sample with a warning, this is an
/// error naming the file, line or sample, and what would be valid.
Expected<std::vector<Example>> loadExamples(const std::string &datasetDir, const DatasetAttr &attr,
                                            std::optional<int64_t> maxSamples, uint64_t seed);

} // namespace mt::chat

#endif // MT_RUNTIME_CHAT_DATASETINFO_H
