// dataset_info.json entries and the alpaca / sharegpt converters of
// LLaMA-Factory, written for mtc with errors instead of skipped samples.
#include "runtime/chat/DatasetInfo.h"

#include "runtime/io/Dataset.h"
#include "runtime/support/FileKind.h"
#include "runtime/support/Wording.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

namespace mt::chat {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string joinNames(const std::vector<std::string> &names) {
  std::string s;
  for (const std::string &n : names)
    s += (s.empty() ? "" : ", ") + n;
  return s;
}

Status unknownKey(const std::string &where, const std::string &key,
                  const std::vector<std::string> &known) {
  std::string message = where + ": unknown key '" + key + "'";
  if (std::string close = closestName(key, known); !close.empty())
    message += " (did you mean '" + close + "'?)";
  return Status::error(message + "; known keys: " + joinNames(known));
}

/// Reads string fields of `object` named in `fields` into the attr strings.
Status readStrings(const json &object, const std::string &where,
                   const std::map<std::string, std::string *> &fields) {
  if (!object.is_object())
    return Status::error(where + " must be a JSON object");
  std::vector<std::string> known;
  for (const auto &[k, v] : fields)
    known.push_back(k);
  for (const auto &[key, value] : object.items()) {
    auto it = fields.find(key);
    if (it == fields.end())
      return unknownKey(where, key, known);
    if (!value.is_string())
      return Status::error(where + "." + key + " must be a string, got " + value.dump());
    *it->second = value.get<std::string>();
  }
  return Status::ok();
}

// Keys LLaMA-Factory reads that mtc refuses, with why.
const std::map<std::string, std::string> kRefusedKeys = {
    {"hf_hub_url", "datasets are read from local files only (file_name)"},
    {"ms_hub_url", "datasets are read from local files only (file_name)"},
    {"om_hub_url", "datasets are read from local files only (file_name)"},
    {"script_url", "datasets are read from local files only (file_name)"},
    {"cloud_file_name", "datasets are read from local files only (file_name)"},
    {"subset", "subsets belong to hub datasets; local files have none"},
    {"folder", "folders belong to hub datasets; give file_name a folder instead"},
};

Expected<DatasetAttr> parseEntry(const std::string &infoPath, const std::string &name,
                                 const json &entry) {
  std::string where = infoPath + ": dataset '" + name + "'";
  if (!entry.is_object())
    return Status::error(where + " must be a JSON object");
  DatasetAttr attr;
  attr.name = name;
  const std::vector<std::string> known = {"file_name", "formatting", "columns", "tags",
                                          "num_samples", "ranking", "split"};
  for (const auto &[key, value] : entry.items()) {
    if (auto refused = kRefusedKeys.find(key); refused != kRefusedKeys.end())
      return Status::error(where + ": '" + key + "' is not supported: " + refused->second);
    if (std::find(known.begin(), known.end(), key) == known.end())
      return unknownKey(where, key, known);
  }
  if (!entry.contains("file_name") || !entry["file_name"].is_string())
    return Status::error(where + " needs \"file_name\": a file or folder under the dataset_dir");
  attr.fileName = entry["file_name"].get<std::string>();
  const json formattingValue = entry.value("formatting", json("alpaca"));
  std::string formatting =
      formattingValue.is_string() ? formattingValue.get<std::string>() : formattingValue.dump();
  if (formatting == "sharegpt")
    attr.formatting = DatasetAttr::Formatting::Sharegpt;
  else if (formatting == "openai")
    return Status::error(where + ": formatting 'openai' is not supported yet; use alpaca or sharegpt");
  else if (formatting != "alpaca")
    return Status::error(where + ": unknown formatting '" + formatting +
                         "'; valid: alpaca, sharegpt");
  if (entry.contains("ranking") && entry["ranking"] != json(false))
    return Status::error(where + ": ranking (preference) datasets are for dpo/rm stages; "
                                 "sft needs \"ranking\": false");
  if (entry.contains("split") && entry["split"] != json("train"))
    return Status::error(where + ": split " + entry["split"].dump() +
                         ": a local file has only the split \"train\"");
  if (entry.contains("num_samples")) {
    const json &n = entry["num_samples"];
    if (!n.is_number_integer() || n.get<int64_t>() < 1)
      return Status::error(where + ": num_samples must be a positive integer, got " + n.dump());
    attr.numSamples = n.get<int64_t>();
  }
  if (entry.contains("columns")) {
    if (Status s = readStrings(entry["columns"], where + ".columns",
                               {{"prompt", &attr.prompt}, {"query", &attr.query},
                                {"response", &attr.response}, {"history", &attr.history},
                                {"messages", &attr.messages}, {"system", &attr.system},
                                {"tools", &attr.tools}});
        !s)
      return s;
  }
  if (entry.contains("tags"))
    if (Status s = readStrings(entry["tags"], where + ".tags",
                               {{"role_tag", &attr.roleTag}, {"content_tag", &attr.contentTag},
                                {"user_tag", &attr.userTag}, {"assistant_tag", &attr.assistantTag},
                                {"observation_tag", &attr.observationTag},
                                {"function_tag", &attr.functionTag},
                                {"system_tag", &attr.systemTag}});
        !s)
      return s;
  return attr;
}

/// A JSON value as messages quote it: its first 80 bytes, cut at a UTF-8
/// character boundary.
std::string excerpt(const json &value) {
  std::string text = value.dump();
  size_t cut = std::min<size_t>(text.size(), 80);
  while (cut > 0 && cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
    --cut;
  return text.substr(0, cut);
}

/// A string field of a sample: missing or null gives "" when `optional`.
Expected<std::string> stringField(const json &sample, const std::string &column, bool optional,
                                  const std::string &where) {
  if (!sample.contains(column) || sample[column].is_null()) {
    if (optional)
      return std::string();
    return Status::error(where + ": missing column '" + column + "' (a string)");
  }
  if (!sample[column].is_string())
    return Status::error(where + ": column '" + column + "' must be a string, got " +
                         excerpt(sample[column]));
  return sample[column].get<std::string>();
}

Expected<Example> convertAlpaca(const DatasetAttr &a, const json &s, const std::string &where) {
  Example e;
  e.where = where;
  if (!a.history.empty() && s.contains(a.history) && !s[a.history].is_null()) {
    const json &h = s[a.history];
    if (!h.is_array())
      return Status::error(where + ": column '" + a.history +
                           "' must be a list of [prompt, response] pairs");
    for (size_t i = 0; i < h.size(); ++i) {
      if (!h[i].is_array() || h[i].size() != 2 || !h[i][0].is_string() || !h[i][1].is_string())
        return Status::error(where + ": " + a.history + "[" + std::to_string(i) +
                             "] must be a [prompt, response] pair of strings, got " +
                             excerpt(h[i]));
      e.messages.push_back({Role::User, h[i][0].get<std::string>()});
      e.messages.push_back({Role::Assistant, h[i][1].get<std::string>()});
    }
  }
  auto prompt = stringField(s, a.prompt, false, where);
  auto query = stringField(s, a.query, true, where);
  auto response = stringField(s, a.response, false, where);
  auto system = stringField(s, a.system, true, where);
  for (const auto *f : {&prompt, &query, &response, &system})
    if (!*f)
      return f->status();
  std::string user = *prompt;
  if (!query->empty())
    user += (user.empty() ? "" : "\n") + *query; // "prompt\nquery"
  e.messages.push_back({Role::User, user});
  e.messages.push_back({Role::Assistant, *response});
  e.system = a.system.empty() ? "" : *system;
  return e;
}

Expected<Example> convertSharegpt(const DatasetAttr &a, const json &s, const std::string &where) {
  const std::string listOf = "a list of {\"" + a.roleTag + "\": ..., \"" + a.contentTag +
                             "\": ...} messages";
  if (!s.contains(a.messages) || s[a.messages].is_null())
    return Status::error(where + ": missing column '" + a.messages + "' (" + listOf + ")");
  if (!s[a.messages].is_array())
    return Status::error(where + ": column '" + a.messages + "' must be " + listOf + ", got " +
                         excerpt(s[a.messages]));
  Example e;
  e.where = where;
  const json &list = s[a.messages];
  size_t first = 0;
  auto field = [&](const json &m, const std::string &tag, size_t i) -> Expected<std::string> {
    if (!m.is_object() || !m.contains(tag) || !m[tag].is_string())
      return Status::error(where + ": message " + std::to_string(i) + " needs a string \"" + tag +
                           "\", got " + excerpt(m));
    return m[tag].get<std::string>();
  };
  if (!list.empty() && list[0].is_object() && list[0].value(a.roleTag, json()) == json(a.systemTag)) {
    auto content = field(list[0], a.contentTag, 0);
    if (!content)
      return content.status();
    e.system = *content;
    first = 1;
  } else if (!a.system.empty()) {
    auto system = stringField(s, a.system, true, where);
    if (!system)
      return system.status();
    e.system = *system;
  }
  const std::string prompts = "'" + a.userTag + "' or '" + a.observationTag + "'";
  const std::string responses = "'" + a.assistantTag + "'";
  for (size_t i = first; i < list.size(); ++i) {
    auto role = field(list[i], a.roleTag, i);
    auto content = field(list[i], a.contentTag, i);
    if (!role)
      return role.status();
    if (!content)
      return content.status();
    bool promptTurn = (i - first) % 2 == 0;
    std::string got = "message " + std::to_string(i) + " has " + a.roleTag + " '" + *role + "'";
    if (*role == a.functionTag)
      return Status::error(where + ": " + got + ": tool calls are not supported yet");
    Role r;
    if (*role == a.userTag || *role == a.observationTag)
      r = *role == a.userTag ? Role::User : Role::Observation;
    else if (*role == a.assistantTag)
      r = Role::Assistant;
    else
      return Status::error(where + ": " + got + "; the tags are " + prompts + " (prompts), " +
                           responses + " (responses) and '" + a.systemTag +
                           "' (first message only)");
    if ((r != Role::Assistant) != promptTurn)
      return Status::error(where + ": " + got + " out of order; expected " +
                           (promptTurn ? prompts : responses) +
                           " (prompts and responses alternate, starting with a prompt)");
    e.messages.push_back({r, *content});
  }
  if (e.messages.empty() || e.messages.size() % 2 != 0)
    return Status::error(where + ": " + countOf(int64_t(e.messages.size()), "message") +
                         " after the system message; a conversation needs prompt/response "
                         "pairs and ends with a response (" + responses + ")");
  return e;
}

Expected<Example> convert(const DatasetAttr &a, const json &sample, const std::string &where) {
  if (!sample.is_object())
    return Status::error(where + ": a sample must be a JSON object, got " +
                         excerpt(sample));
  if (!a.tools.empty() && sample.contains(a.tools) && !sample[a.tools].is_null() &&
      sample[a.tools] != json(""))
    return Status::error(where + ": column '" + a.tools + "' (tools) is not supported yet");
  return a.formatting == DatasetAttr::Formatting::Alpaca ? convertAlpaca(a, sample, where)
                                                         : convertSharegpt(a, sample, where);
}

/// "at line 3, column 5" from nlohmann's parse error message, or "".
std::string parsePosition(const std::string &what) {
  size_t at = what.find("at line ");
  if (at == std::string::npos)
    return what;
  size_t end = what.find(':', at);
  return what.substr(at, end - at) + ": " + what.substr(end + 2);
}

Status readFile(const DatasetAttr &a, const fs::path &path, std::vector<Example> &out) {
  if (std::string what = notARegularFile(path.string()); !what.empty())
    return Status::error(path.string() + ": " + what + ", not a file (dataset '" + a.name + "')");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(path.string() + ": cannot read (dataset '" + a.name + "')");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  size_t start = text.find_first_not_of(" \t\r\n");
  if (path.extension() == ".json" && start != std::string::npos && text[start] == '[') {
    json array;
    try {
      array = json::parse(text);
    } catch (const json::parse_error &e) {
      return Status::error(path.string() + ": not valid JSON " + parsePosition(e.what()));
    }
    for (size_t i = 0; i < array.size(); ++i) {
      auto e = convert(a, array[i], path.string() + " sample " + std::to_string(i + 1));
      if (!e)
        return e.status();
      out.push_back(std::move(*e));
    }
    return Status::ok();
  }
  std::istringstream lines(text);
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    std::string where = path.string() + ":" + std::to_string(number);
    json sample;
    try {
      sample = json::parse(line);
    } catch (const json::parse_error &e) {
      return Status::error(where + ": not a JSON object on one line (JSON lines) " +
                           parsePosition(e.what()));
    }
    auto e = convert(a, sample, where);
    if (!e)
      return e.status();
    out.push_back(std::move(*e));
  }
  return Status::ok();
}

} // namespace

Expected<std::vector<DatasetAttr>> readDatasetInfo(const std::string &datasetDir,
                                                   const std::vector<std::string> &names) {
  std::string infoPath = (fs::path(datasetDir) / "dataset_info.json").string();
  if (std::string what = notARegularFile(infoPath); !what.empty())
    return Status::error(infoPath + ": " + what + ", not a JSON file");
  std::ifstream in(infoPath);
  if (!in)
    return Status::error(infoPath + ": cannot read (dataset_dir must hold dataset_info.json)");
  json info;
  try {
    info = json::parse(in);
  } catch (const json::parse_error &e) {
    return Status::error(infoPath + ": not valid JSON " + parsePosition(e.what()));
  }
  if (!info.is_object())
    return Status::error(infoPath + " must be a JSON object of dataset entries");
  if (names.empty())
    return Status::error("no dataset named: give dataset (names in " + infoPath + ")");
  std::vector<std::string> known;
  for (const auto &[k, v] : info.items())
    known.push_back(k);
  // Every unknown name at once, each with the one it may mean.
  std::string unknown;
  for (const std::string &name : names)
    if (!info.contains(name)) {
      unknown += (unknown.empty() ? "unknown dataset '" : "; unknown dataset '") + name +
                 "' (not in " + infoPath + ")";
      if (std::string close = closestName(name, known); !close.empty())
        unknown += "; did you mean '" + close + "'?";
    }
  if (!unknown.empty())
    return Status::error(unknown + "; known: " + joinNames(known));
  std::vector<DatasetAttr> attrs;
  for (const std::string &name : names) {
    auto attr = parseEntry(infoPath, name, info[name]);
    if (!attr)
      return attr.status();
    attrs.push_back(std::move(*attr));
  }
  return attrs;
}

Expected<std::vector<Example>> loadExamples(const std::string &datasetDir, const DatasetAttr &attr,
                                            std::optional<int64_t> maxSamples, uint64_t seed) {
  fs::path path = fs::path(datasetDir) / attr.fileName;
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto &entry : fs::directory_iterator(path, ec))
      if (entry.path().extension() == ".json" || entry.path().extension() == ".jsonl")
        files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    if (files.empty())
      return Status::error(path.string() + ": no .json or .jsonl file in the folder of dataset '" +
                           attr.name + "'");
  } else if (fs::exists(path, ec)) {
    if (path.extension() != ".json" && path.extension() != ".jsonl")
      return Status::error(path.string() + ": dataset '" + attr.name +
                           "' must be a .json or .jsonl file");
    files.push_back(path);
  } else {
    return Status::error(path.string() + ": no such file (file_name of dataset '" + attr.name +
                         "')");
  }
  std::vector<Example> examples;
  for (const fs::path &f : files)
    if (Status s = readFile(attr, f, examples); !s)
      return s;
  if (examples.empty())
    return Status::error(path.string() + ": dataset '" + attr.name + "' has no samples");
  if (attr.numSamples) {
    // LLaMA-Factory: a random permutation cut at num_samples, topped up by
    // draws with replacement; here drawn from the seed.
    auto n = int64_t(examples.size());
    std::vector<int64_t> order = io::epochPermutation(n, seed, 0);
    order.resize(size_t(std::min(n, *attr.numSamples)));
    io::SplitMix64 rng(seed);
    while (int64_t(order.size()) < *attr.numSamples)
      order.push_back(int64_t(rng.below(uint64_t(n))));
    std::vector<Example> picked;
    for (int64_t i : order)
      picked.push_back(examples[size_t(i)]);
    examples = std::move(picked);
  }
  if (maxSamples && int64_t(examples.size()) > *maxSamples)
    examples.resize(size_t(*maxSamples));
  return examples;
}

} // namespace mt::chat
