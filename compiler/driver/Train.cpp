// mtc train: the LLaMA-Factory-style front door (TrainConfig), the data
// step, import and compile, and the mtrun command that trains.
#include "compiler/driver/Train.h"

#include "compiler/config/TrainConfig.h"
#include "compiler/driver/Commands.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mt {
namespace {

namespace fs = std::filesystem;

Status fail(const std::string &message) { return Status::error(message); }

/// The file a dataset name stands for: dataset_info.json's file_name, else
/// a file in dataset_dir, else the name as a path.
Expected<std::string> datasetFile(const std::string &name, const std::string &dir) {
  fs::path info = fs::path(dir) / "dataset_info.json";
  if (fs::exists(info)) {
    auto buffer = llvm::MemoryBuffer::getFile(info.string());
    if (!buffer)
      return fail(info.string() + ": cannot read");
    auto parsed = llvm::json::parse((*buffer)->getBuffer());
    if (!parsed)
      return fail(info.string() + ": " + llvm::toString(parsed.takeError()));
    if (const llvm::json::Object *all = parsed->getAsObject())
      if (const llvm::json::Object *entry = all->getObject(name)) {
        auto fileName = entry->getString("file_name");
        if (!fileName)
          return fail(info.string() + ": dataset '" + name + "' has no file_name (hf_hub_url "
                      "and other sources are not read by mtc)");
        return (fs::path(dir) / fileName->str()).string();
      }
  }
  for (fs::path candidate : {fs::path(dir) / name, fs::path(name)})
    if (fs::is_regular_file(candidate))
      return candidate.string();
  return fail("dataset '" + name + "': not in " + info.string() + " and no file " +
              (fs::path(dir) / name).string() + " (dataset_dir " + dir + ")");
}

bool isTokenFile(const std::string &path) {
  char magic[8] = {};
  std::ifstream(path, std::ios::binary).read(magic, 8);
  return std::string(magic, 8) == "MTTOKENS";
}

} // namespace

namespace {

/// Runs `argv` (argv[0] the program), its standard output into `outPath`;
/// the error names `what`.
Status runTool(llvm::ArrayRef<llvm::StringRef> argv, const std::string &outPath,
               const std::string &what) {
  std::string error;
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, llvm::StringRef(outPath),
                                                std::nullopt};
  int code = llvm::sys::ExecuteAndWait(argv[0], argv, std::nullopt, redirects, 0, 0, &error);
  if (code != 0)
    return fail(what + " with " + argv[0].str() + " failed (its error is above)" +
                (error.empty() ? "" : ": " + error));
  return Status::ok();
}

/// stage sft: mt-prepare-sft over dataset_info.json's datasets with the
/// model's tokenizer; one epoch is the rows it wrote.
Expected<PreparedData> prepareChatData(const DataRequest &r) {
  if (r.dataset.empty())
    return fail("dataset: not given; name datasets of " + r.datasetDir + "/dataset_info.json");
  if (r.chatTemplate.empty())
    return fail("template: not given; stage sft needs a chat template (e.g. qwen3_nothink)");
  if (!fs::exists(fs::path(r.modelDir) / "tokenizer.json"))
    return fail("model_name_or_path '" + r.modelDir + "' has no tokenizer.json: stage sft "
                "tokenizes with the model's own tokenizer");
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
  if (r.trainOnPrompt)
    argv.push_back("--train-on-prompt");
  if (r.maskHistory)
    argv.push_back("--mask-history");
  std::string summary = r.outputPath + ".summary";
  if (Status s = runTool(argv, summary, "preparing dataset '" + r.dataset + "'"); !s)
    return s;
  std::ifstream in(summary);
  std::stringstream text;
  text << in.rdbuf();
  fs::remove(summary);
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

} // namespace

Expected<PreparedData> prepareTrainingData(const DataRequest &r) {
  if (r.stage == "sft")
    return prepareChatData(r);
  if (r.dataset.empty())
    return fail("dataset: not given; name a dataset of dataset_info.json or a text file");
  if (r.dataset.find(',') != std::string::npos)
    return fail("dataset '" + r.dataset + "': several datasets for stage pt are not wired "
                "yet; give one");
  auto file = datasetFile(r.dataset, r.datasetDir);
  if (!file)
    return file.status();
  if (isTokenFile(*file)) {
    std::error_code ec;
    fs::copy_file(*file, r.outputPath, fs::copy_options::overwrite_existing, ec);
    if (ec)
      return fail(r.outputPath + ": cannot write: " + ec.message());
    // The token count sits in runtime/io's header, which the compiler does
    // not read: epochs over a token file need max_steps for now.
    return PreparedData{r.outputPath, std::nullopt};
  }
  // Text: tokenized by mt-tokenize with the model's tokenizer.json where the
  // model directory has one, else byte-level (one token per byte). As in
  // LLaMA-Factory, max_samples keeps the first max_samples lines (examples).
  std::ifstream in(*file, std::ios::binary);
  std::string text, line;
  for (int64_t lines = 0; std::getline(in, line); ++lines) {
    if (r.maxSamples > 0 && lines == r.maxSamples)
      break;
    text += line + "\n";
  }
  std::string textCopy = r.outputPath + ".txt", summary = r.outputPath + ".summary";
  if (!(std::ofstream(textCopy, std::ios::binary) << text))
    return fail(textCopy + ": cannot write");
  llvm::SmallVector<llvm::StringRef> argv = {r.tokenizeTool, textCopy, "-o", r.outputPath,
                                             "--overwrite"};
  const bool modelTokenizer = fs::exists(fs::path(r.modelDir) / "tokenizer.json");
  if (modelTokenizer)
    argv.append({"--tokenizer", r.modelDir});
  Status ran = runTool(argv, summary, "tokenizing " + *file);
  fs::remove(textCopy);
  std::ifstream printed(summary);
  std::getline(printed, line);
  fs::remove(summary);
  if (!ran)
    return ran;
  // "PATH: N tokens (...)" (tools/mt-tokenize); samples as io::Dataset packs them.
  size_t colon = line.rfind(": ");
  const int64_t tokens = colon == std::string::npos ? 0 : std::atoll(line.c_str() + colon + 2);
  const int64_t samples = (tokens - 1) / r.cutoffLen;
  if (samples < 1)
    return fail(*file + ": " + std::to_string(tokens) + " tokens make no sample of cutoff_len " +
                std::to_string(r.cutoffLen) + " + 1 tokens");
  llvm::outs() << line << "\n";
  llvm::outs().flush(); // before mtrun's output
  return PreparedData{r.outputPath, samples};
}

namespace {

/// The checkpoint resume_from_checkpoint names: its mtc-state directory.
Expected<std::string> resumeState(const TrainConfig &c) {
  if (c.resumeFromCheckpoint.empty())
    return std::string();
  fs::path checkpoint = c.resumeFromCheckpoint;
  if (c.resumeFromCheckpoint == "true") { // the newest checkpoint-N, as transformers
    int64_t newest = -1;
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(c.outputDir, ec)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("checkpoint-", 0) == 0 && name.size() > 11 &&
          std::all_of(name.begin() + 11, name.end(), ::isdigit) &&
          std::stoll(name.substr(11)) > newest)
        newest = std::stoll(name.substr(11)), checkpoint = entry.path();
    }
    if (newest < 0)
      return fail("resume_from_checkpoint: true, but output_dir " + c.outputDir +
                  " has no checkpoint-N directory");
  }
  fs::path state = checkpoint / "mtc-state";
  if (!fs::exists(state / "trainer.json"))
    return fail("resume_from_checkpoint: " + checkpoint.string() + " has no mtc-state/ (mtc's "
                "own state, needed for an exact resume); a Hugging Face model directory "
                "starts a new run as model_name_or_path instead");
  return state.string();
}

/// A new run into an output_dir that holds something is refused unless
/// overwrite_output_dir or a resume says otherwise (transformers' rule).
Status checkOutputDir(const TrainConfig &c, bool resuming) {
  if (c.outputDir.empty())
    return fail("output_dir: not given; checkpoints and the final model go there");
  std::error_code ec;
  if (!fs::exists(c.outputDir) || fs::is_empty(c.outputDir, ec) || resuming ||
      c.overwriteOutputDir)
    return Status::ok();
  return fail("output_dir " + c.outputDir + " already exists and is not empty; set "
              "overwrite_output_dir: true, or resume_from_checkpoint: true to continue");
}

std::string besideExecutable(const std::string &executable, const std::string &tool) {
  std::string self = llvm::sys::fs::getMainExecutable(executable.c_str(),
                                                      reinterpret_cast<void *>(&besideExecutable));
  return (fs::path(self).parent_path() / tool).string();
}

/// mtrun's command line for the run.
std::vector<std::string> mtrunCommand(const TrainConfig &c, const TrainCommandOptions &o,
                                      const std::string &runDir, const std::string &data,
                                      const std::string &resume, int64_t worldSize) {
  std::vector<std::string> cmd = {besideExecutable(o.executable, "mtrun"),
                                  runDir + "/plan",
                                  "--data", data,
                                  "--seed", std::to_string(c.seed),
                                  "--hf-output", c.outputDir,
                                  "--save-steps", std::to_string(c.saveSteps),
                                  "--save-total-limit", std::to_string(c.saveTotalLimit),
                                  "--logging-steps", std::to_string(c.loggingSteps),
                                  "--max-shard-size", std::to_string(o.maxShardBytes),
                                  "--tokenizer-dir", c.modelNameOrPath};
  // bf16: the CUDA backend (bf16 compute, fp32 masters) where a GPU is
  // visible; without it, the CPU backend's fp32 (the CUDA backend has no fp32).
  cmd.insert(cmd.end(), {"--backend", c.bf16 ? "auto" : "cpu"});
  if (worldSize > 1)
    cmd.insert(cmd.end(), {"--nproc", std::to_string(worldSize)});
  bool hasWeights = false;
  std::error_code ec;
  for (const auto &entry : fs::directory_iterator(c.modelNameOrPath, ec))
    hasWeights |= entry.path().extension() == ".safetensors";
  // Trinity's use_dist_checkpointing: mtc's own checkpoint is the start
  // (when there is one) and is saved every save_steps.
  std::string dist = c.useDistCheckpointing ? c.distCheckpointingPath : "";
  if (!resume.empty())
    cmd.insert(cmd.end(), {"--resume", resume});
  else if (!dist.empty() && fs::exists(fs::path(dist) / "trainer.json"))
    cmd.insert(cmd.end(), {"--resume", dist});
  else if (hasWeights)
    cmd.insert(cmd.end(), {"--load", c.modelNameOrPath});
  if (!dist.empty())
    cmd.insert(cmd.end(), {"--save", dist, "--save-every", std::to_string(c.saveSteps)});
  return cmd;
}

Status checkConfig(const TrainConfig &c) {
  if (c.modelNameOrPath.empty())
    return fail("model_name_or_path: not given; a local Hugging Face model directory");
  if (!fs::is_regular_file(fs::path(c.modelNameOrPath) / "config.json"))
    return fail("model_name_or_path: " + c.modelNameOrPath + " has no config.json (mtc reads "
                "local model directories; hub names are not downloaded)");
  if (c.useDistCheckpointing && c.distCheckpointingPath.empty())
    return fail("use_dist_checkpointing: true needs dist_checkpointing_path");
  return Status::ok();
}

std::string quoted(const std::vector<std::string> &cmd) {
  std::string line;
  for (const std::string &arg : cmd)
    line += (line.empty() ? "" : " ") + ("'" + arg + "'");
  return line;
}

} // namespace

bool trainCommand(const TrainCommandOptions &o) {
  auto report = [](const Status &s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  };
  auto overrides = parseOverrides(o.overrideArgs);
  if (!overrides)
    return report(overrides.status());
  TrainConfig c;
  if (Status s = loadTrainConfig(o.configPath, *overrides, c); !s)
    return report(s);
  if (Status s = checkConfig(c); !s)
    return report(s);
  if (std::getenv("WORLD_SIZE") || std::getenv("SLURM_PROCID") || std::getenv("OMPI_COMM_WORLD_RANK"))
    return report(fail("mtc train under torchrun, Slurm or MPI is not wired yet: run `mtc train "
                       "CONFIG --prepare-only -o run/` once, then launch the mtrun command of "
                       "run/train.sh under the launcher"));
  auto resume = resumeState(c);
  if (!resume)
    return report(resume.status());
  if (Status s = checkOutputDir(c, !resume->empty()); !s)
    return report(s);
  std::string runDir = o.runDir.empty() ? c.outputDir + "/mtc-run" : o.runDir;
  std::error_code ec;
  fs::create_directories(runDir, ec);
  if (ec)
    return report(fail(runDir + ": cannot create: " + ec.message()));

  // 1. The data (its size sets the steps of num_train_epochs).
  DataRequest data{c.modelNameOrPath, c.stage,     c.dataset,     c.datasetDir,
                   c.chatTemplate,    c.cutoffLen, c.maxSamples,  c.packing,
                   c.trainOnPrompt,   c.maskHistory, c.seed,
                   runDir + (c.stage == "sft" ? "/data.sft" : "/data.tokens"),
                   besideExecutable(o.executable, "mt-tokenize"),
                   besideExecutable(o.executable, "mt-prepare-sft")};
  auto prepared = prepareTrainingData(data);
  if (!prepared)
    return report(prepared.status());
  // 2. The model at the run's shape, and the plan for the layout.
  ImportOptions import;
  import.configPath = c.modelNameOrPath + "/config.json";
  import.outputPath = runDir + "/model.mlir";
  import.shape.seq = c.cutoffLen;
  import.shape.microBatch = c.perDeviceTrainBatchSize;
  import.shape.moe = c.moe;
  if (!importHf(import))
    return false;
  auto optimizer = c.optimizer(prepared->samples);
  if (!optimizer)
    return report(optimizer.status());
  CompileOptions compile;
  compile.modelPath = import.outputPath;
  compile.parallel = c.layout();
  compile.optimizer = *optimizer;
  compile.explain = o.explain;
  compile.outputDir = runDir + "/plan";
  compile.configPath = o.configPath;
  compile.configExplain = c.explain(prepared->samples);
  if (!compileModel(compile))
    return false;
  // 3. mtrun, here or elsewhere.
  int64_t world = c.layout().worldSize ? c.layout().worldSize
                                       : c.dataParallelSize() * c.parallel.tp * c.parallel.pp;
  std::vector<std::string> cmd = mtrunCommand(c, o, runDir, prepared->path, *resume, world);
  {
    std::ofstream script(runDir + "/train.sh");
    script << "#!/bin/sh\n# written by mtc train: the run of " << o.configPath << "\nexec "
           << quoted(cmd) << " \"$@\"\n";
  }
  if (o.prepareOnly) {
    llvm::outs() << "prepared " << runDir << ": plan, data (" << prepared->path
                 << "); train with:\n  " << quoted(cmd) << "\n";
    return true;
  }
  llvm::SmallVector<llvm::StringRef> argv(cmd.begin(), cmd.end());
  std::string error;
  int code = llvm::sys::ExecuteAndWait(cmd[0], argv, std::nullopt, {}, 0, 0, &error);
  if (code != 0)
    return report(fail("mtrun failed (exit " + std::to_string(code) + ")" +
                       (error.empty() ? "" : ": " + error)));
  return true;
}

} // namespace mt
