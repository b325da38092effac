// `mtc train`'s output_dir: the checkpoint a run resumes (and whether it is
// one of this run), a new run's right to the directory, and the earlier
// run's checkpoints that overwrite_output_dir clears.
#include "compiler/driver/TrainOutputDir.h"

#include "compiler/config/TrainConfig.h"
#include "runtime/support/FileKind.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>

namespace mt {
namespace {

namespace fs = std::filesystem;

Status fail(const std::string &message) { return Status::error(message); }

/// The directory of mtc's own state inside checkpoint-N (runtime/exec's
/// kMtcStateDir, which the compiler does not link).
constexpr const char *kMtcStateDirName = "mtc-state";

/// N of a directory named checkpoint-N (N digits that fit 64 bits).
std::optional<int64_t> checkpointNumber(const fs::path &path) {
  const std::string name = path.filename().string(), prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size() || name.size() > prefix.size() + 18 ||
      !std::all_of(name.begin() + prefix.size(), name.end(), ::isdigit))
    return std::nullopt;
  return std::stoll(name.substr(prefix.size()));
}

/// The checkpoint-N directories of `outputDir` by N.
std::map<int64_t, fs::path> checkpointsOf(const std::string &outputDir) {
  std::map<int64_t, fs::path> found;
  std::error_code ec;
  for (const auto &entry : fs::directory_iterator(outputDir, ec))
    if (auto n = checkpointNumber(entry.path()); n && entry.is_directory(ec))
      found[*n] = entry.path();
  return found;
}

/// A JSON file as an object (nullopt when it cannot be read or is none).
std::optional<llvm::json::Object> readObject(const std::string &path) {
  if (!notARegularFile(path).empty()) // a FIFO's open would wait for a writer
    return std::nullopt;
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return std::nullopt;
  auto parsed = llvm::json::parse((*buffer)->getBuffer());
  if (!parsed) {
    llvm::consumeError(parsed.takeError());
    return std::nullopt;
  }
  if (llvm::json::Object *object = parsed->getAsObject())
    return std::move(*object);
  return std::nullopt;
}

/// A value as JSON text, shortened for a message; a number that is no
/// integer with the fewest digits that read back the same (1e-05, not
/// 1.0000000000000001e-05).
std::string textOf(const llvm::json::Value *value) {
  if (!value)
    return "absent";
  std::string text;
  if (std::optional<double> number = value->getAsNumber(); number && !value->getAsInteger()) {
    for (int digits = 1; digits <= 17; ++digits) {
      std::ostringstream os;
      os.precision(digits);
      os << *number;
      if (text = os.str(); std::stod(text) == *number)
        break;
    }
    return text;
  }
  llvm::raw_string_ostream(text) << *value;
  return text.size() > 40 ? text.substr(0, 37) + "..." : text;
}

/// Config keys that describe the file, not the model (RunState.cpp's
/// isMetadata: the run identity leaves them out).
bool isMetadata(llvm::StringRef key) {
  return key.empty() || key.starts_with("_") || key == "transformers_version" ||
         key == "torch_dtype" || key == "dtype";
}

/// "  <what>: checkpoint <a>, this run <b>" lines for the model keys that
/// differ between `config` (model_name_or_path's config.json) and the
/// checkpoint's run identity `run` ("model.<key>").
std::vector<std::string> modelDifferences(const llvm::json::Object &config,
                                          const llvm::json::Object &run,
                                          const std::string &modelDir) {
  std::set<std::string> keys;
  for (const auto &entry : config)
    if (!isMetadata(entry.first))
      keys.insert(entry.first.str());
  for (const auto &entry : run)
    if (llvm::StringRef key = entry.first; key.consume_front("model.") && !isMetadata(key))
      keys.insert(key.str());
  std::vector<std::string> lines;
  for (const std::string &key : keys) {
    const llvm::json::Value *mine = config.get(key), *theirs = run.get("model." + key);
    if (!mine || !theirs || !(*mine == *theirs))
      lines.push_back("model_name_or_path " + modelDir + ": config.json's " + key +
                      ": checkpoint " + textOf(theirs) + ", this run " + textOf(mine));
  }
  constexpr size_t kShown = 6;
  if (lines.size() > kShown) {
    size_t more = lines.size() - kShown;
    lines.resize(kShown);
    lines.push_back("model_name_or_path: " + std::to_string(more) + " more config.json keys");
  }
  return lines;
}

/// The keys of `c` a checkpoint's trainer.json (`root`, its run identity
/// `run`) must match, each "<key ...>: checkpoint <a>, this run <b>".
std::vector<std::string> runDifferences(const TrainConfig &c, const llvm::json::Object &root,
                                        const llvm::json::Object &run) {
  std::vector<std::string> lines;
  auto compare = [&](const std::string &what, std::optional<int64_t> theirs, int64_t mine) {
    if (theirs && *theirs != mine)
      lines.push_back(what + ": checkpoint " + std::to_string(*theirs) + ", this run " +
                      std::to_string(mine));
  };
  const bool hasModel = std::any_of(run.begin(), run.end(), [](const auto &entry) {
    return llvm::StringRef(entry.first).starts_with("model.");
  });
  if (auto config = readObject(c.modelNameOrPath + "/config.json"); config && hasModel)
    lines = modelDifferences(*config, run, c.modelNameOrPath);
  compare("cutoff_len", run.getInteger("seq"), c.cutoffLen);
  compare("global batch (per_device_train_batch_size " +
              std::to_string(c.perDeviceTrainBatchSize) + " x gradient_accumulation_steps " +
              std::to_string(c.gradientAccumulationSteps) + " x data-parallel size " +
              std::to_string(c.dataParallelSize()) + ")",
          run.getInteger("global_batch"), c.globalBatchSize());
  if (c.maxSteps > 0) // epochs set the steps from the data: mtrun compares those
    compare("max_steps", run.getInteger("train_steps"), c.maxSteps);
  // The optimizer's keys, as the plan carries them (mtrun would refuse them
  // only after the data step and the compile, in its own names).
  auto compareNumber = [&](const std::string &key, const char *identity, double mine) {
    std::optional<double> theirs = run.getNumber(identity);
    auto text = [](double v) {
      std::ostringstream os; // shortest form: 0.003, 1e-08
      os << v;
      return os.str();
    };
    if (theirs && *theirs != mine)
      lines.push_back(key + ": checkpoint " + text(*theirs) + ", this run " + text(mine));
  };
  compareNumber("learning_rate", "lr_schedule.max_lr", c.learningRate);
  compareNumber("adam_beta1", "adamw.beta1", c.adamBeta1);
  compareNumber("adam_beta2", "adamw.beta2", c.adamBeta2);
  compareNumber("adam_epsilon", "adamw.eps", c.adamEpsilon);
  compareNumber("max_grad_norm", "clip_coefficient.max_norm", c.maxGradNorm);
  if (auto style = run.getString("lr_schedule.style");
      style && *style != "hf_" + c.lrSchedulerType)
    lines.push_back("lr_scheduler_type: checkpoint " +
                    (style->starts_with("hf_") ? style->drop_front(3).str() : style->str()) +
                    ", this run " + c.lrSchedulerType);
  if (auto seed = root.getInteger("seed"); seed && uint64_t(*seed) != c.seed)
    lines.push_back("seed: checkpoint " + std::to_string(*seed) + ", this run " +
                    std::to_string(c.seed));
  return lines;
}

} // namespace

Expected<std::string> resumeState(const TrainConfig &c) {
  if (c.resumeFromCheckpoint.empty())
    return std::string();
  const std::string key = c.whereGiven("resume_from_checkpoint") + "resume_from_checkpoint: ";
  fs::path checkpoint = c.resumeFromCheckpoint;
  if (c.resumeFromCheckpoint == "true") {
    auto all = checkpointsOf(c.outputDir);
    if (all.empty())
      return fail(key + "true, but output_dir " + c.outputDir + " has no checkpoint-N directory");
    checkpoint = all.rbegin()->second;
  }
  std::error_code ec;
  if (!fs::exists(checkpoint, ec))
    return fail(key + checkpoint.string() + " does not exist; give a checkpoint-N directory of "
                "an earlier run's output_dir, or true for the newest one in output_dir");
  if (!fs::is_directory(checkpoint, ec))
    return fail(key + checkpoint.string() + " is not a directory; give a checkpoint-N "
                "directory of an earlier run's output_dir");
  // checkpoint-N/mtc-state itself names the same checkpoint.
  if (checkpoint.filename() == kMtcStateDirName && fs::exists(checkpoint / "trainer.json", ec))
    return checkpoint.string();
  fs::path state = checkpoint / kMtcStateDirName;
  if (!fs::exists(state / "trainer.json", ec))
    return fail(key + checkpoint.string() + " is not a checkpoint of mtc: it has no " +
                kMtcStateDirName + "/ (mtc's own state, needed for an exact resume); a Hugging "
                "Face model directory starts a new run as model_name_or_path instead");
  return state.string();
}

Status checkResumedStep(const TrainConfig &c, const std::string &state,
                        const std::string &key) {
  auto root = readObject(state + "/trainer.json");
  std::optional<int64_t> step = root ? root->getInteger("step") : std::nullopt;
  if (!step || c.maxSteps < 1 || *step < c.maxSteps)
    return Status::ok(); // num_train_epochs: the steps are known after the data step
  return fail(c.whereGiven(key) + key + ": the checkpoint " + state + " is already after step " +
              std::to_string(*step) + ", and max_steps (" + std::to_string(c.maxSteps) +
              ") ends the run " + (*step == c.maxSteps ? "there" : "before it") +
              ": nothing to run; give max_steps > " + std::to_string(*step) +
              " (it counts from the start of the run, not from the checkpoint)");
}

Status checkResumedRun(const TrainConfig &c, const std::string &state) {
  if (Status s = checkResumedStep(c, state, "resume_from_checkpoint"); !s)
    return s;
  auto root = readObject(state + "/trainer.json");
  const llvm::json::Object *run = root ? root->getObject("run") : nullptr;
  if (!run)
    return Status::ok();
  std::vector<std::string> differences = runDifferences(c, *root, *run);
  if (differences.empty())
    return Status::ok();
  const std::string checkpoint = fs::path(state).parent_path().string();
  const bool newest = c.resumeFromCheckpoint == "true";
  std::string message = c.whereGiven("resume_from_checkpoint") + "resume_from_checkpoint: " +
                        (newest ? "true picked " + checkpoint + ", the newest checkpoint-N of "
                                  "output_dir " + c.outputDir + ", and it"
                                : checkpoint) +
                        " is a checkpoint of another run (a resume continues the same model, "
                        "cutoff_len, global batch, steps, optimizer settings and seed, under "
                        "any parallel layout):";
  for (const std::string &line : differences)
    message += "\n    " + line;
  message += newest ? "\n  to start this run anew there, remove resume_from_checkpoint and set "
                      "overwrite_output_dir: true (which removes output_dir's checkpoint-N "
                      "directories), or give another output_dir; to resume, give "
                      "resume_from_checkpoint the path of a checkpoint of this run"
                    : "\n  resume a checkpoint of this run, or remove resume_from_checkpoint "
                      "to start a new run";
  return fail(message);
}

/// overwrite_output_dir removes output_dir's checkpoints before a new run
/// and save_total_limit the oldest ones as the run goes: an input in one of
/// them (a model trained by an earlier run into the same output_dir) would
/// be deleted under the run that reads it.
static Status checkInputsKept(const TrainConfig &c, bool resuming) {
  const bool overwrite = !resuming && c.overwriteOutputDir;
  if (!overwrite && c.saveTotalLimit < 1)
    return Status::ok();
  std::error_code ec;
  for (const auto &[n, checkpoint] : checkpointsOf(c.outputDir)) {
    const fs::path dir = fs::weakly_canonical(checkpoint, ec);
    for (const auto &[key, input] : {std::pair<std::string, std::string>{"model_name_or_path",
                                                                          c.modelNameOrPath},
                                     {"dataset_dir", c.datasetDir}}) {
      const fs::path path = fs::weakly_canonical(input, ec);
      if (input.empty() ||
          std::mismatch(dir.begin(), dir.end(), path.begin(), path.end()).first != dir.end())
        continue;
      return fail(c.whereGiven(key) + key + " " + input + " lies in " + checkpoint.string() +
                  ", which " +
                  (overwrite ? "overwrite_output_dir: true removes before training"
                             : "save_total_limit: " + std::to_string(c.saveTotalLimit) +
                                   " may remove as later checkpoints are saved") +
                  ": copy it out of output_dir " + c.outputDir + ", or give another output_dir");
    }
  }
  return Status::ok();
}

namespace {

/// runDir, absolute and normal, without a trailing '/'.
fs::path runDirPath(const std::string &runDir) {
  std::error_code ec;
  fs::path run = fs::absolute(runDir, ec).lexically_normal();
  return run.has_filename() ? run : run.parent_path();
}

constexpr const char *kSetAsideSuffix = ".earlier-";

} // namespace

std::string setAsidePath(const std::string &runDir, long pid) {
  fs::path run = runDirPath(runDir);
  return (run.parent_path() / (run.filename().string() + kSetAsideSuffix + std::to_string(pid)))
      .string();
}

Status checkSetAsideRunDir(const std::string &runDir) {
  std::error_code ec;
  const fs::path run = runDirPath(runDir);
  const std::string prefix = run.filename().string() + kSetAsideSuffix;
  for (const auto &entry : fs::directory_iterator(run.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0)
      continue;
    const std::string pid = name.substr(prefix.size());
    if (!pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos &&
        pid.size() < 10 && std::stol(pid) > 0 && fs::exists("/proc/" + pid, ec))
      return fail(entry.path().string() + ": mtc train (process " + pid + ") is preparing " +
                  runDir + " now; wait for it to end, or give another output_dir");
    return fail(entry.path().string() + " is an earlier run's preparation that a stopped mtc "
                "train set aside and did not put back: to keep that run, replace " + runDir +
                " by it (rm -rf " + runDir + " && mv " + entry.path().string() + " " + runDir +
                "); else remove it");
  }
  return Status::ok();
}

Status checkOutputDir(const TrainConfig &c, bool resuming, const std::string &runDir) {
  // The final model and the checkpoints are written into output_dir: it
  // may not be a directory the run reads.
  std::error_code ec;
  if (Status s = checkSetAsideRunDir(runDir); !s)
    return s;
  if (fs::exists(c.outputDir, ec) && !fs::is_directory(c.outputDir, ec))
    return fail(c.whereGiven("output_dir") + "output_dir " + c.outputDir + " is a file, not a "
                "directory: the final model and the checkpoints are written there; give a "
                "directory (new or mtc's)");
  const fs::path out = fs::weakly_canonical(c.outputDir, ec);
  for (const auto &[key, dir] : {std::pair<std::string, std::string>{"model_name_or_path",
                                                                      c.modelNameOrPath},
                                 {"dataset_dir", c.datasetDir}})
    if (!dir.empty() && fs::weakly_canonical(dir, ec) == out)
      return fail(c.whereGiven("output_dir") + "output_dir " + c.outputDir + " is " + key +
                  "'s directory, which the run reads: the final model and checkpoints would "
                  "replace its files; give another output_dir");
  if (Status s = checkInputsKept(c, resuming); !s)
    return s;
  if (!resuming && c.overwriteOutputDir) {
    // Only mtc's own checkpoints are removed (mtrun's removeEarlierCheckpoints);
    // one of another tool is data mtc does not delete.
    std::string foreign;
    for (const auto &[n, path] : checkpointsOf(c.outputDir))
      if (!fs::is_directory(path / kMtcStateDirName))
        foreign += (foreign.empty() ? "" : ", ") + path.filename().string();
    if (!foreign.empty())
      return fail(c.whereGiven("overwrite_output_dir") + "overwrite_output_dir: true would "
                  "replace the checkpoints in output_dir " + c.outputDir + ", but " + foreign +
                  " has no " + kMtcStateDirName + "/ (not written by mtc): move it out of "
                  "output_dir, or give another output_dir");
    return Status::ok();
  }
  if (resuming)
    return Status::ok();
  const fs::path own = fs::weakly_canonical(runDir, ec);
  for (const auto &entry : fs::directory_iterator(c.outputDir, ec)) {
    fs::path path = fs::weakly_canonical(entry.path(), ec);
    auto mismatch = std::mismatch(path.begin(), path.end(), own.begin(), own.end());
    if (mismatch.first != path.end()) // not the run directory or one above it
      return fail(c.whereGiven("output_dir") + "output_dir " + c.outputDir + " already exists "
                  "and is not empty; set overwrite_output_dir: true, or "
                  "resume_from_checkpoint: true to continue");
  }
  return Status::ok();
}

Status checkRunDir(const std::string &runDir, const std::string &flag, const TrainConfig &c,
                   const std::string &configPath) {
  const std::string named = flag.empty() ? "the run directory " + runDir : flag + " " + runDir;
  std::error_code ec;
  if (!fs::exists(runDir, ec))
    return Status::ok();
  if (!fs::is_directory(runDir, ec))
    return fail(named + ": is a file; give a directory (mtc train writes the model, plan, data "
                "and train.sh there)");
  const fs::path dir = fs::weakly_canonical(runDir, ec);
  auto holds = [&](const std::string &path) { // dir is path or one above it
    const fs::path p = fs::weakly_canonical(path, ec);
    return std::mismatch(dir.begin(), dir.end(), p.begin(), p.end()).first == dir.end();
  };
  if (holds(fs::current_path(ec).string()))
    return fail(named + ": is the current directory or holds it; give a directory of its own");
  for (const auto &[key, path] : {std::pair<std::string, std::string>{"model_name_or_path",
                                                                      c.modelNameOrPath},
                                  {"dataset_dir", c.datasetDir},
                                  {"the YAML", configPath}})
    if (!path.empty() && holds(path))
      return fail(named + ": is or holds " + key + " (" + path + "), an input; give a directory of "
                  "its own");
  static const std::set<std::string> written = {"model.mlir", "plan",      "data.sft",
                                                "data.tokens", "train.sh", ".prepared",
                                                ".prepare-failed"};
  auto ours = [&](const std::string &name) {
    // An atomic write's temporary is "<name>.tmp.<pid>" (AtomicFile.h).
    const std::string base = name.substr(0, name.find(".tmp."));
    return written.count(base) || name.rfind("data.", 0) == 0 || name.rfind("node-", 0) == 0;
  };
  std::string foreign, special;
  for (const auto &entry : fs::directory_iterator(runDir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!ours(name))
      foreign += (foreign.empty() ? "" : ", ") + name;
    // A FIFO under one of mtc's names (the data step's scratch files, the
    // .prepared marker) would be opened and wait for its other end.
    else if (fileKindOf(entry.path().string()) == FileKind::Special)
      special += (special.empty() ? "" : ", ") + name;
  }
  if (!foreign.empty())
    return fail(named + ": holds files mtc train did not write (" + foreign + "); give an "
                "empty or new directory, or one an earlier mtc train prepared");
  if (!special.empty())
    return fail(named + ": holds " + special + ", a device, pipe or socket where mtc train "
                "writes a regular file; remove it, or give an empty or new directory");
  return Status::ok();
}

std::optional<fs::file_time_type> finalStateTime(const std::string &outputDir) {
  std::error_code ec;
  auto time = fs::last_write_time(fs::path(outputDir) / "trainer_state.json", ec);
  return ec ? std::nullopt : std::optional(time);
}

std::string finalModelLine(const std::string &outputDir,
                           std::optional<fs::file_time_type> before) {
  // An early end (exit_*) writes no final model: trainer_state.json is then
  // missing or an earlier run's, unchanged.
  const auto after = finalStateTime(outputDir);
  if (after && after != before)
    return "mtc train: " + outputDir +
           " holds the final model, trainer_log.jsonl and the checkpoints saved";
  return "mtc train: training ended before its last step; " + outputDir +
         " holds its checkpoints and trainer_log.jsonl, and no final model of this run" +
         (after ? " (its model files and trainer_state.json are an earlier run's)" : "") +
         "; resume_from_checkpoint: true continues it";
}

} // namespace mt
