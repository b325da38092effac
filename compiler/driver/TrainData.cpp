// mtc train's data step: stage sft through mt-prepare-sft (chat templates,
// LLaMA-Factory datasets, loss masks), stage pt through mt-tokenize or a
// token file as it is (Train.h's DataRequest).
#include "compiler/driver/Train.h"

#include "compiler/config/TrainConfig.h"
#include "compiler/driver/ChildProcess.h"
#include "runtime/support/FileKind.h"
#include "runtime/support/Wording.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mt {
namespace {

namespace fs = std::filesystem;

Status fail(const std::string &message) { return Status::error(message); }

/// The file a dataset name stands for: dataset_info.json's file_name, else
/// a file in dataset_dir, else the name as a path. The error for none of
/// them names dataset_info.json's datasets, as mt-prepare-sft's does.
Expected<std::string> datasetFile(const std::string &name, const std::string &dir) {
  fs::path info = fs::path(dir) / "dataset_info.json";
  std::vector<std::string> known;
  if (fs::exists(info)) {
    if (std::string what = notARegularFile(info.string()); !what.empty())
      return fail(info.string() + ": " + what + ", not a JSON file");
    auto buffer = llvm::MemoryBuffer::getFile(info.string());
    if (!buffer)
      return fail(info.string() + ": cannot read");
    auto parsed = llvm::json::parse((*buffer)->getBuffer());
    if (!parsed)
      return fail(info.string() + ": " + llvm::toString(parsed.takeError()));
    if (const llvm::json::Object *all = parsed->getAsObject()) {
      for (const auto &entry : *all)
        known.push_back(entry.first.str());
      if (const llvm::json::Object *entry = all->getObject(name)) {
        auto fileName = entry->getString("file_name");
        if (!fileName)
          return fail(info.string() + ": dataset '" + name + "' has no file_name (hf_hub_url "
                      "and other sources are not read by mtc)");
        const std::string file = (fs::path(dir) / fileName->str()).string();
        if (fileKindOf(file) == FileKind::Special) // a FIFO's read would wait
          return fail(file + ": a device or pipe, not a dataset file (file_name of dataset '" +
                      name + "' in " + info.string() + ")");
        return file;
      }
    }
  }
  for (fs::path candidate : {fs::path(dir) / name, fs::path(name)})
    if (fs::is_regular_file(candidate))
      return candidate.string();
  std::sort(known.begin(), known.end()); // llvm::json::Object's order is a hash's
  std::string meant = closestName(name, known), list;
  for (const std::string &k : known)
    list += (list.empty() ? "" : ", ") + k;
  return fail("dataset '" + name + "': not in " + info.string() + " and no file " +
              (fs::path(dir) / name).string() + " (dataset_dir " + dir + ")" +
              (meant.empty() ? "" : "; did you mean '" + meant + "'?") +
              (known.empty() ? "" : "; known: " + list));
}

bool isTokenFile(const std::string &path) {
  char magic[8] = {};
  std::ifstream(path, std::ios::binary).read(magic, 8);
  return std::string(magic, 8) == "MTTOKENS";
}


/// Runs `argv` (argv[0] the program), its standard output into `outPath`;
/// the error names `what`.
Status runTool(llvm::ArrayRef<llvm::StringRef> argv, const std::string &outPath,
               const std::string &what) {
  auto code = runChild(std::vector<std::string>(argv.begin(), argv.end()), outPath);
  if (!code)
    return fail(what + ": " + code.message());
  if (*code != 0)
    return fail(what + " with " + argv[0].str() + " failed (" + describeExit(*code) +
                (*code > 128 ? ")" : "; its error is above)"));
  return Status::ok();
}

/// stage sft: mt-prepare-sft over dataset_info.json's datasets with the
/// model's tokenizer; one epoch is the rows it wrote.
Expected<PreparedData> prepareChatData(const DataRequest &r) {
  std::string cutoff = std::to_string(r.cutoffLen), seed = std::to_string(r.seed),
              maxSamples = std::to_string(r.maxSamples);
  llvm::SmallVector<llvm::StringRef> argv = {r.prepareSftTool, "--dataset-dir", r.datasetDir,
                                             "--dataset", r.dataset, "--template",
                                             r.chatTemplate, "--cutoff-len", cutoff, "--seed",
                                             seed, "--tokenizer", r.modelDir, "-o",
                                             r.outputPath, "--overwrite"};
  if (r.maxSamples > 0)
    argv.append({"--max-samples", maxSamples});
  if (r.packing)
    argv.push_back("--packing");
  if (r.neatPacking)
    argv.push_back("--neat-packing");
  if (r.trainOnPrompt)
    argv.push_back("--train-on-prompt");
  if (r.maskHistory)
    argv.push_back("--mask-history");
  std::string summary = r.outputPath + ".summary";
  const Status ran = runTool(argv, summary, "preparing dataset '" + r.dataset + "'");
  std::stringstream text;
  text << std::ifstream(summary).rdbuf();
  fs::remove(summary); // the tool's captured line, also after a failure
  if (!ran)
    return ran;
  // "PATH: N samples in R rows of ..." (tools/mt-prepare-sft).
  const std::string line = text.str();
  size_t at = line.find(" in ");
  int64_t rows = at == std::string::npos ? 0 : std::atoll(line.c_str() + at + 4);
  if (rows < 1)
    return fail(r.prepareSftTool + " wrote no rows: " + line);
  llvm::outs() << line;
  llvm::outs().flush(); // before mtrun's output
  return PreparedData{r.outputPath, rows};
}

/// Stage sft's template and datasets, checked by mt-prepare-sft --check
/// (which reads dataset_info.json as the data step will) before anything is
/// written; each error it reports goes to its key through `add`.
void checkChatData(const DataRequest &r, int64_t modelVocab,
                   const std::function<void(const std::string &, const std::string &)> &add) {
  llvm::SmallString<128> report;
  if (llvm::sys::fs::createTemporaryFile("mtc-sft-check", "txt", report)) {
    add("dataset", "cannot create a temporary file to check the datasets");
    return;
  }
  // The tokenizer against the model's vocabulary, where there is one (its
  // absence is model_name_or_path's error of its own).
  const std::string vocab = std::to_string(modelVocab);
  llvm::SmallVector<llvm::StringRef> argv = {r.prepareSftTool, "--check",   "--dataset-dir",
                                             r.datasetDir,     "--dataset", r.dataset,
                                             "--template",     r.chatTemplate};
  if (fs::exists(fs::path(r.modelDir) / "tokenizer.json"))
    argv.append({"--tokenizer", r.modelDir, "--model-vocab-size", vocab});
  const Status ran = runTool(argv, report.str().str(), "checking the datasets");
  std::ifstream in(report.str().str());
  int reported = 0;
  for (std::string line; std::getline(in, line);)
    if (size_t tab = line.find('\t'); tab != std::string::npos) {
      const std::string key = line.substr(0, tab);
      add(key, key + ": " + line.substr(tab + 1));
      ++reported;
    }
  in.close();
  fs::remove(report.str().str());
  if (!ran && reported == 0)
    add("dataset", ran.message());
}

} // namespace

std::string relativePathNote(const std::string &path) {
  std::error_code ec;
  return fs::path(path).is_relative()
             ? "; a relative path is read from the current directory, " +
                   fs::current_path(ec).string()
             : "";
}

void checkDataRequest(const DataRequest &r, ConfigErrors &errors, int64_t modelVocab) {
  if (errors.failed("dataset") || errors.failed("dataset_dir"))
    return;
  auto where = [&](const std::string &key) {
    auto it = r.where.find(key);
    return it == r.where.end() ? std::string() : it->second;
  };
  auto add = [&](const std::string &key, const std::string &message) {
    errors.add(key, fail(where(key) + message));
  };
  if (r.stage == "sft") {
    if (r.dataset.empty())
      add("dataset", "dataset: not given; name datasets of " + r.datasetDir +
                         "/dataset_info.json");
    if (r.chatTemplate.empty() && !errors.failed("template"))
      add("template", "template: not given; stage sft needs a chat template (e.g. "
                      "qwen3_nothink)");
    const bool listed = fs::exists(fs::path(r.datasetDir) / "dataset_info.json");
    if (!r.dataset.empty() && !listed)
      add("dataset_dir", "dataset_dir: " + r.datasetDir + " has no dataset_info.json (the list "
                         "of datasets, as LLaMA-Factory's data/ holds it)" +
                         (where("dataset_dir").empty()
                              ? "; dataset_dir is not given, and LLaMA-Factory's default is data, "
                                "in the current directory"
                              : relativePathNote(r.datasetDir)));
    if (!r.dataset.empty() && listed && !r.chatTemplate.empty() && !errors.failed("template"))
      checkChatData(r, modelVocab, add);
    if (!errors.failed("model_name_or_path") &&
        !fs::exists(fs::path(r.modelDir) / "tokenizer.json"))
      add("model_name_or_path", "model_name_or_path '" + r.modelDir + "' has no "
                                "tokenizer.json: stage sft tokenizes with the model's own "
                                "tokenizer");
    return;
  }
  if (r.dataset.empty())
    add("dataset", "dataset: not given; name a dataset of dataset_info.json or a text file");
  else if (r.dataset.find(',') != std::string::npos)
    add("dataset", "dataset '" + r.dataset + "': several datasets for stage pt are not wired "
                   "yet; give one");
  else if (auto file = datasetFile(r.dataset, r.datasetDir); !file)
    add("dataset", file.status().message());
  else if (std::string ext = fs::path(*file).extension().string(); ext == ".json" || ext == ".jsonl")
    // Its JSON would be trained on as text, brackets and keys too.
    add("dataset", "dataset '" + r.dataset + "': " + *file + " is a JSON dataset; stage pt "
                   "reads a text file (the text itself) or a token file, not the columns of "
                   "JSON samples yet: give a text file, or stage sft for chat data");
  else if (modelVocab > 0 && modelVocab < 256 && !isTokenFile(*file) &&
           !fs::exists(fs::path(r.modelDir) / "tokenizer.json"))
    // Byte-level ids run to 255: the model could not embed them.
    add("model_name_or_path",
        "model_name_or_path '" + r.modelDir + "' has no tokenizer.json, so stage pt would "
        "tokenize the text of dataset '" + r.dataset + "' byte-level (ids 0 to 255), past "
        "the model's vocab_size (" + std::to_string(modelVocab) + "): give the model's "
        "tokenizer.json, or a token file of ids below " + std::to_string(modelVocab));
}

Expected<PreparedData> prepareTrainingData(const DataRequest &r) {
  ConfigErrors errors;
  checkDataRequest(r, errors);
  if (!errors.empty())
    return errors.status();
  if (r.stage == "sft")
    return prepareChatData(r);
  auto file = datasetFile(r.dataset, r.datasetDir);
  if (!file)
    return file.status();
  std::string summary = r.outputPath + ".summary";
  llvm::SmallVector<llvm::StringRef> argv = {r.tokenizeTool};
  Status ran = Status::ok();
  if (isTokenFile(*file)) {
    if (r.maxSamples > 0)
      return fail("max_samples (" + std::to_string(r.maxSamples) + "): keeps the first "
                  "examples (lines) of a text dataset, and " + *file + " is a token file: give "
                  "max_steps, or num_train_epochs below 1, instead");
    std::error_code ec;
    fs::copy_file(*file, r.outputPath, fs::copy_options::overwrite_existing, ec);
    if (ec)
      return fail(r.outputPath + ": cannot write: " + ec.message());
    argv.append({"--count", r.outputPath}); // checks it too
    ran = runTool(argv, summary, "reading the token file " + *file);
  } else {
    // Text: tokenized by mt-tokenize with the model's tokenizer.json where
    // the model directory has one, else byte-level (one token per byte). As
    // in LLaMA-Factory, max_samples keeps the first max_samples lines
    // (examples).
    std::ifstream in(*file, std::ios::binary);
    std::string text, line;
    for (int64_t lines = 0; std::getline(in, line); ++lines) {
      if (r.maxSamples > 0 && lines == r.maxSamples)
        break;
      text += line + "\n";
    }
    std::string textCopy = r.outputPath + ".txt";
    if (!(std::ofstream(textCopy, std::ios::binary) << text))
      return fail(textCopy + ": cannot write");
    argv.append({textCopy, "-o", r.outputPath, "--overwrite"});
    if (fs::exists(fs::path(r.modelDir) / "tokenizer.json"))
      argv.append({"--tokenizer", r.modelDir});
    ran = runTool(argv, summary, "tokenizing " + *file);
    fs::remove(textCopy);
  }
  std::string line;
  std::getline(std::ifstream(summary), line);
  fs::remove(summary);
  if (!ran)
    return ran;
  // "PATH: N tokens (...)" (tools/mt-tokenize); samples as io::Dataset packs
  // them: each takes cutoff_len + 1 tokens, consecutive ones share one.
  const std::string prefix = r.outputPath + ": ";
  const int64_t tokens =
      line.rfind(prefix, 0) == 0 ? std::atoll(line.c_str() + prefix.size()) : 0;
  const int64_t samples = (tokens - 1) / r.cutoffLen;
  if (samples < 1)
    return fail(*file + ": " + std::to_string(tokens) + " tokens make no sample of cutoff_len " +
                std::to_string(r.cutoffLen) + " + 1 tokens");
  llvm::outs() << line << "\n";
  llvm::outs().flush(); // before mtrun's output
  return PreparedData{r.outputPath, samples};
}

} // namespace mt
