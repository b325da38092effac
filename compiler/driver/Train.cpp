// mtc train: the LLaMA-Factory-style front door (TrainConfig), import and
// compile, and the mtrun command that trains (the data step: TrainData.cpp).
#include "compiler/driver/Train.h"

#include "compiler/config/TrainConfig.h"
#include "compiler/driver/ChildProcess.h"
#include "compiler/driver/Commands.h"
#include "compiler/driver/Launch.h"
#include "compiler/driver/TrainOutputDir.h"
#include "compiler/hf/HfConfig.h"
#include "runtime/support/AtomicFile.h"
#include "runtime/support/FileKind.h"
#include "runtime/support/Wording.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <unistd.h> // getpid

namespace mt {
namespace {

namespace fs = std::filesystem;

Status fail(const std::string &message) { return Status::error(message); }

/// `path` absolute (against the current directory) and lexically normal,
/// without a trailing separator: "run/" and "./run" are "$PWD/run".
std::string absolutePath(const std::string &path) {
  std::error_code ec;
  std::string text = fs::absolute(path, ec).lexically_normal().string();
  while (text.size() > 1 && text.back() == '/')
    text.pop_back();
  return text;
}

std::string besideExecutable(const std::string &executable, const std::string &tool) {
  std::string self = llvm::sys::fs::getMainExecutable(executable.c_str(),
                                                      reinterpret_cast<void *>(&besideExecutable));
  return (fs::path(self).parent_path() / tool).string();
}

/// model_name_or_path's weight files: whether it holds *.safetensors (what
/// mtc reads), and the names of its weights in formats mtc does not read
/// (PyTorch's pickles and the like), sorted.
std::pair<bool, std::vector<std::string>> weightFilesOf(const std::string &dir) {
  bool safetensors = false;
  std::vector<std::string> others;
  std::error_code ec;
  for (const auto &entry : fs::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    safetensors |= ext == ".safetensors";
    if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".gguf")
      others.push_back(entry.path().filename().string());
  }
  std::sort(others.begin(), others.end());
  return {safetensors, others};
}

/// mtrun's command line for the run; `--nproc nproc` where nproc > 1.
/// Every path in it is absolute (`runDir`, `data` and `resume` are
/// already), so that it runs from any directory.
std::vector<std::string> mtrunCommand(TrainConfig c, const TrainCommandOptions &o,
                                      const std::string &runDir, const std::string &data,
                                      const std::string &resume, int64_t nproc) {
  c.outputDir = absolutePath(c.outputDir);
  c.modelNameOrPath = absolutePath(c.modelNameOrPath);
  if (!c.distCheckpointingPath.empty())
    c.distCheckpointingPath = absolutePath(c.distCheckpointingPath);
  std::vector<std::string> cmd = {besideExecutable(o.executable, "mtrun"),
                                  runDir + "/plan",
                                  "--data", data,
                                  "--seed", std::to_string(c.seed),
                                  "--hf-output", c.outputDir,
                                  "--save-steps", std::to_string(c.saveSteps),
                                  "--save-total-limit", std::to_string(c.saveTotalLimit),
                                  "--logging-steps", std::to_string(c.loggingSteps),
                                  "--log-interval", std::to_string(c.loggingSteps),
                                  "--max-shard-size", std::to_string(o.maxShardBytes),
                                  "--export-dtype", c.inferDtype,
                                  "--tokenizer-dir", c.modelNameOrPath};
  // bf16: the CUDA backend (bf16 compute, fp32 masters) where a GPU is
  // visible; without it, the CPU backend's fp32 (the CUDA backend has no fp32).
  cmd.insert(cmd.end(), {"--backend", c.bf16 ? "auto" : "cpu"});
  if (nproc > 1)
    cmd.insert(cmd.end(), {"--nproc", std::to_string(nproc)});
  const bool hasWeights = weightFilesOf(c.modelNameOrPath).first;
  // Trinity's use_dist_checkpointing: mtc's own checkpoint is the start
  // (when there is one) and is saved every save_steps.
  std::string dist = c.useDistCheckpointing ? c.distCheckpointingPath : "";
  if (!resume.empty())
    cmd.insert(cmd.end(), {"--resume", resume});
  else if (!dist.empty() && fs::exists(fs::path(dist) / "trainer.json"))
    cmd.insert(cmd.end(), {"--resume", dist});
  else if (hasWeights && !c.trainFromScratch)
    cmd.insert(cmd.end(), {"--load", c.modelNameOrPath});
  if (!dist.empty())
    cmd.insert(cmd.end(), {"--save", dist, "--save-every", std::to_string(c.saveSteps)});
  if (c.overwriteOutputDir && std::find(cmd.begin(), cmd.end(), "--resume") == cmd.end())
    cmd.push_back("--overwrite-output-dir");
  if (!c.plotLoss)
    cmd.push_back("--no-plot-loss");
  if (c.exitSignalHandler)
    cmd.push_back("--exit-signal-handler");
  if (c.exitDurationInMins > 0) {
    char minutes[32]; // the shortest form that reads back as the same double
    auto end = std::to_chars(minutes, minutes + sizeof minutes, c.exitDurationInMins).ptr;
    cmd.insert(cmd.end(), {"--exit-duration-in-mins", std::string(minutes, end)});
  }
  if (c.exitInterval > 0)
    cmd.insert(cmd.end(), {"--exit-interval", std::to_string(c.exitInterval)});
  return cmd;
}

/// Trinity's use_dist_checkpointing: dist_checkpointing_path is mtc's own
/// checkpoint (trainer.json), or a new or empty directory for it. Trinity's
/// guide also points it at a Megatron-Core checkpoint converted from
/// Hugging Face weights (verl's converter_hf_to_mcore.py): mtc reads those
/// weights itself, so such a directory is refused, by name, before any work.
Status checkDistCheckpoint(const TrainConfig &c) {
  if (!c.useDistCheckpointing)
    return Status::ok();
  const fs::path dir = c.distCheckpointingPath;
  if (dir.empty())
    return fail(c.whereGiven("use_dist_checkpointing") + "use_dist_checkpointing: true needs "
                "dist_checkpointing_path (the directory of mtc's own checkpoint)");
  std::error_code ec;
  if (fs::exists(dir / "trainer.json", ec))
    return checkResumedStep(c, dir.string(), "dist_checkpointing_path");
  if (!fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)))
    return Status::ok();
  bool megatron = false; // Megatron-Core's dist_checkpointing layout (torch_dist)
  for (const char *name : {"metadata.json", ".metadata", "common.pt",
                           "latest_checkpointed_iteration.txt"})
    megatron |= fs::exists(dir / name, ec);
  return fail("dist_checkpointing_path: " + dir.string() + " is not a checkpoint of mtc (no "
              "trainer.json)" +
              (megatron ? "; it holds a Megatron-Core dist checkpoint, which mtc does not read"
                        : std::string()) +
              ". mtc reads the Hugging Face weights of model_name_or_path itself (what "
              "use_mbridge does; no conversion): give dist_checkpointing_path a new or empty "
              "directory, where mtc keeps its own reshardable checkpoint");
}

/// Weights mtc cannot read, with none it can: an error naming them (without
/// train_from_scratch; transformers would load them).
Status checkStartingWeightFiles(const TrainConfig &c) {
  auto [safetensors, others] = weightFilesOf(c.modelNameOrPath);
  if (c.trainFromScratch || safetensors || others.empty())
    return Status::ok();
  std::string list;
  for (const std::string &name : others)
    list += (list.empty() ? "" : ", ") + name;
  return fail(c.whereGiven("model_name_or_path") + "model_name_or_path: " + c.modelNameOrPath +
              " holds its weights as " + list + ", which mtc does not read (it reads "
              "*.safetensors): convert them (transformers: AutoModelForCausalLM."
              "from_pretrained(dir).save_pretrained(dir, safe_serialization=True)), or give "
              "train_from_scratch: true to start from random weights");
}

/// A model directory with no weights at all: the run starts from random
/// weights, said unless train_from_scratch says so (transformers would
/// refuse such a directory).
std::string noWeightsWarning(const TrainConfig &c) {
  auto [safetensors, others] = weightFilesOf(c.modelNameOrPath);
  if (c.trainFromScratch || safetensors || !others.empty() || c.modelNameOrPath.empty() ||
      !fs::is_regular_file(c.modelNameOrPath + "/config.json"))
    return "";
  return c.whereGiven("model_name_or_path") + "model_name_or_path: " + c.modelNameOrPath +
         " holds no weights (no *.safetensors): the run starts from random weights (the "
         "seed's); give train_from_scratch: true to say so, or the directory of a downloaded "
         "model to fine-tune it";
}

/// The keys checked before any work, each error added to `errors`: the
/// model directory and cutoff_len against it, the stage's data keys, the
/// schedule, output_dir and Trinity's checkpoint. A key refused while it was
/// read is not judged again.
void checkConfig(const TrainConfig &c, const DataRequest &data, ConfigErrors &errors) {
  const std::string model = c.whereGiven("model_name_or_path") + "model_name_or_path: ";
  if (c.modelNameOrPath.empty() && !errors.failed("model_name_or_path"))
    errors.add("model_name_or_path", fail("model_name_or_path: not given; a local Hugging "
                                          "Face model directory"));
  else if (const std::string config = c.modelNameOrPath + "/config.json";
           !errors.failed("model_name_or_path") && !fs::is_regular_file(config))
    errors.add("model_name_or_path",
               fail(model + (notARegularFile(config).empty()
                                 ? c.modelNameOrPath + " has no config.json (mtc reads local "
                                   "model directories; hub names are not downloaded" +
                                       relativePathNote(c.modelNameOrPath) + ")"
                                 : config + " is " + notARegularFile(config) +
                                       ", not a file (mtc reads the model's config from it)")));
  const bool modelOk = !errors.failed("model_name_or_path");
  if (modelOk)
    errors.add("model_name_or_path", checkStartingWeightFiles(c));
  if (!errors.failed("stage"))
    c.checkStageKeys(errors);
  // The model at cutoff_len, before the data step spends its time.
  const std::string config = c.modelNameOrPath + "/config.json";
  int64_t vocab = 0;
  if (modelOk) {
    auto spec = readHfConfig(config);
    errors.add("model_name_or_path", spec);
    if (spec)
      vocab = spec->vocabSize;
    if (spec && !errors.failed("cutoff_len"))
      if (Status s = checkSequenceLength(*spec, c.cutoffLen, config, "cutoff_len"); !s) {
        // Where cutoff_len came from: the user's line, or the default.
        const std::string where = c.whereGiven("cutoff_len");
        errors.add("cutoff_len",
                   fail(where + s.message() +
                        (where.empty() ? " (cutoff_len is not given: " +
                                             std::to_string(c.cutoffLen) +
                                             " is LLaMA-Factory's default)"
                                       : "")));
      }
  }
  if (!errors.failed("stage"))
    checkDataRequest(data, errors, vocab);
  // The schedule's keys: any sample count gives at least one step per epoch.
  bool scheduleRead = true;
  for (const char *key : {"learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs",
                          "warmup_ratio", "warmup_steps", "max_steps", "num_train_epochs",
                          "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
                          "max_grad_norm"})
    scheduleRead &= !errors.failed(key);
  if (auto optimizer = c.optimizer(int64_t(1)); scheduleRead && !optimizer)
    errors.add("", optimizer.status());
  if (c.outputDir.empty() && !errors.failed("output_dir"))
    errors.add("output_dir", fail("output_dir: not given; checkpoints and the final model go "
                                  "there"));
  if (!errors.failed("use_dist_checkpointing") && !errors.failed("dist_checkpointing_path"))
    errors.add("dist_checkpointing_path", checkDistCheckpoint(c));
}

/// `arg` as one word of sh: single-quoted, a quote inside as '\''.
std::string shellWord(const std::string &arg) {
  std::string word = "'";
  for (char ch : arg) {
    if (ch == '\'')
      word.append("'\\''");
    else
      word.push_back(ch);
  }
  word.push_back('\'');
  return word;
}

std::string quoted(const std::vector<std::string> &cmd) {
  std::string line;
  for (const std::string &arg : cmd) {
    if (!line.empty())
      line.push_back(' ');
    line.append(shellWord(arg));
  }
  return line;
}

/// The absolute forms of the paths `c` gave relative to the directory mtc
/// train ran in (model_name_or_path, output_dir, dist_checkpointing_path, a
/// resume_from_checkpoint path): train.sh names what lies under them
/// relative to its own directory.
std::vector<std::string> givenRelative(const TrainConfig &c) {
  std::vector<std::string> found;
  for (const std::string &path : {c.modelNameOrPath, c.outputDir, c.distCheckpointingPath,
                                  c.resumeFromCheckpoint})
    if (!path.empty() && path != "true" && fs::path(path).is_relative())
      found.push_back(absolutePath(path));
  return found;
}

/// train.sh: mtrun's command `cmd` (absolute paths), written to run from
/// any directory. The files of the run directory, and the paths under one
/// of `relative` (given relative to where mtc train ran), are named relative
/// to the script's own directory, so that the run directory, or the tree
/// that holds it and them, may be moved or copied to another machine; other
/// paths stay absolute. $MTRUN names the mtrun to run.
Status writeTrainScript(const std::string &runDir, const std::vector<std::string> &cmd,
                        const std::vector<std::string> &relative,
                        const std::string &configPath) {
  auto underRelative = [&](const std::string &arg) {
    for (const std::string &dir : relative)
      if (arg == dir || arg.rfind(dir + "/", 0) == 0)
        return true;
    return false;
  };
  std::string args;
  for (size_t i = 1; i < cmd.size(); ++i) {
    const std::string &arg = cmd[i];
    args.push_back(' ');
    if (arg.rfind(runDir + "/", 0) == 0 || underRelative(arg))
      args.append("\"$RUN_DIR\"/").append(
          shellWord(fs::path(arg).lexically_relative(runDir).string()));
    else
      args.append(shellWord(arg));
  }
  return io::writeFileAtomically(runDir + "/train.sh", [&](std::ostream &script) {
    script << "#!/bin/sh\n# written by mtc train: the run of "
           << (configPath.empty() ? std::string("keys of the command line") : configPath)
           << "\n# Runs from any directory. The plan and data are found beside this script, "
              "and so are\n# the paths the keys gave relative (\"$RUN_DIR\"/../...); absolute "
              "ones stay absolute.\n"
           << "# MTRUN: the mtrun to run (default: the one beside the mtc that wrote this)\n"
           << "RUN_DIR=$(CDPATH= cd -- \"$(dirname -- \"$0\")\" && pwd) || exit 1\n"
           << "MTRUN=${MTRUN:-" << shellWord(cmd[0]) << "}\nexec \"$MTRUN\"" << args
           << " \"$@\"\n";
    return Status::ok();
  });
}

/// The data step's request for `c`, the prepared file in `runDir`.
DataRequest dataRequest(const TrainConfig &c, const TrainCommandOptions &o,
                        const std::string &runDir) {
  return DataRequest{c.modelNameOrPath, c.stage,     c.dataset,     c.datasetDir,
                     c.chatTemplate,    c.cutoffLen, c.maxSamples,  c.packing,
                     c.neatPacking,     c.trainOnPrompt, c.maskHistory, c.seed,
                     runDir + (c.stage == "sft" ? "/data.sft" : "/data.tokens"),
                     besideExecutable(o.executable, "mt-tokenize"),
                     besideExecutable(o.executable, "mt-prepare-sft"),
                     {{"dataset", c.whereGiven("dataset")},
                      {"dataset_dir", c.whereGiven("dataset_dir")},
                      {"template", c.whereGiven("template")},
                      {"model_name_or_path", c.whereGiven("model_name_or_path")}}};
}

} // namespace

namespace {

/// Without a launcher or NPROC_PER_NODE, expert parallelism alone sets dp:
/// the note that says so ("" where the world size was given).
std::string fewestRanksNote(const TrainConfig &c) {
  const int64_t modelParallel = c.parallel.tp * c.parallel.pp * c.parallel.cp;
  const int64_t world = c.parallel.worldSize;
  if (!c.worldSource.empty() || world <= modelParallel)
    return "";
  return "neither NPROC_PER_NODE nor a launcher gives the world size: the run takes " +
         std::to_string(world) + " ranks, the fewest that hold expert_model_parallel_size (" +
         std::to_string(c.parallel.ep) + ") x expert_tensor_parallel_size, so "
         "data_parallel_size is " + std::to_string(world / modelParallel) +
         " and the global batch " + std::to_string(c.globalBatchSize()) +
         " samples; set NPROC_PER_NODE for another";
}

/// Runs `cmd` (argv[0] the program) and waits for it; stopping mtc train
/// stops it (runChild; `childHandlesStop`: mtrun ends after its step and
/// exits 0, exit_signal_handler). The error names `what`.
Status runCommand(const std::vector<std::string> &cmd, const std::string &what,
                  bool childHandlesStop = false) {
  auto code = runChild(cmd, "", childHandlesStop);
  if (!code)
    return fail(what + ": " + code.message());
  if (*code != 0)
    return fail(what + " failed (" + describeExit(*code) + ")");
  return Status::ok();
}

/// The weights of model_name_or_path that the run would --load, checked by
/// their safetensors headers (names and shapes, `mtrun --check --load`)
/// against a provisional plan of `model` before the data step costs any
/// tokenizing; the plan compiled after the data step replaces it. Nothing
/// to check for a resumed run or a model directory without weights.
Status checkStartingWeights(const TrainConfig &c, const TrainCommandOptions &o,
                            const std::string &runDir, const std::string &model,
                            const std::string &resume) {
  const std::vector<std::string> run = mtrunCommand(c, o, runDir, "", resume, 1);
  auto load = std::find(run.begin(), run.end(), "--load");
  // The steps are the provisional plan's only guess (one epoch of one global
  // batch); a schedule the guess cannot make is told after the data step.
  auto optimizer = c.optimizer(c.globalBatchSize());
  if (load == run.end() || !optimizer)
    return Status::ok();
  CompileOptions compile;
  compile.modelPath = model;
  compile.parallel = c.layout();
  compile.optimizer = *optimizer;
  compile.outputDir = runDir + "/plan";
  compile.configPath = o.configPath;
  compile.givenAt = c.layoutGivenAt();
  compile.layoutChecked = true;
  if (!compileModel(compile))
    return fail("compiling the plan failed (its error is above)");
  if (!runCommand({run[0], compile.outputDir, "--check", "--load", *std::next(load)},
                  "mtrun --check"))
    return fail("the weights of model_name_or_path '" + c.modelNameOrPath + "' do not fit "
                "the model its config.json describes (mtrun's error is above); checked "
                "before the data step");
  std::error_code ec;
  fs::remove_all(compile.outputDir, ec);
  if (ec)
    return fail(compile.outputDir + ": cannot remove the provisional plan: " + ec.message());
  return Status::ok();
}

/// The run's preparation in `runDir` (absolute and normal), its keys
/// checked already: the data prepared, the model imported and the plan
/// compiled for `c`'s layout; writes train.sh (a new run with
/// overwrite_output_dir: true has mtrun remove the earlier run's
/// checkpoint-N when it starts, not here: --prepare-only trains nothing). `resume`: the
/// mtc-state to resume ("" for none). Returns mtrun's command (`--nproc
/// nproc` when > 1).
/// Diagnostics of the import and compile steps go to stderr as they happen.
Expected<std::vector<std::string>> prepareRun(const TrainConfig &c, const TrainCommandOptions &o,
                                              const std::string &runDir,
                                              const std::string &resume, int64_t nproc) {
  // 1. The model at the run's shape, and its layout checked before the data
  // costs any tokenizing.
  ImportOptions import;
  import.configPath = c.modelNameOrPath + "/config.json";
  import.outputPath = runDir + "/model.mlir";
  import.shape.seq = c.cutoffLen;
  import.shape.microBatch = c.perDeviceTrainBatchSize;
  import.shape.packedDocuments = c.neatPacking;
  import.shape.moe = c.moe;
  if (!importHf(import))
    return fail("importing " + import.configPath + " failed (its error is above)");
  if (!checkLayout(import.outputPath, c.layout(), c.layoutGivenAt()))
    return fail("the parallel layout or recompute settings do not fit the model (its error is "
                "above)");
  if (Status s = checkStartingWeights(c, o, runDir, import.outputPath, resume); !s)
    return s;
  // 2. The data (its size sets the steps of num_train_epochs), then the plan.
  auto prepared = prepareTrainingData(dataRequest(c, o, runDir));
  if (!prepared)
    return prepared.status();
  if (std::string warning = c.repeatedSamplesWarning(prepared->samples); !warning.empty()) {
    llvm::errs() << "warning: " << warning << "\n";
    llvm::errs().flush(); // before mtrun's output
  }
  auto optimizer = c.optimizer(prepared->samples);
  if (!optimizer)
    return optimizer.status();
  CompileOptions compile;
  compile.modelPath = import.outputPath;
  compile.parallel = c.layout();
  compile.optimizer = *optimizer;
  compile.explain = o.explain;
  compile.outputDir = runDir + "/plan";
  compile.configPath = o.configPath;
  compile.configExplain = c.explain(prepared->samples);
  compile.givenAt = c.layoutGivenAt();
  compile.layoutChecked = true;
  if (!compileModel(compile))
    return fail("compiling the plan failed (its error is above)");
  // Said once the layout is known to fit: before an error it would mislead.
  if (std::string note = fewestRanksNote(c); !note.empty())
    llvm::errs() << "note: " << note << "\n";
  // --explain's global batch line says it already.
  if (std::string note = c.expertParallelBatchNote(); !note.empty() && !o.explain)
    llvm::errs() << "note: global batch " << countOf(c.globalBatchSize(), "sample") << " (dp "
                 << c.dataParallelSize() << "); " << note << "\n";
  // 3. mtrun's command, kept as train.sh for a run elsewhere or by a launcher;
  // there $MTRUN names that machine's mtrun (one built without the compiler).
  std::vector<std::string> cmd = mtrunCommand(c, o, runDir, prepared->path, resume, nproc);
  if (Status s = writeTrainScript(runDir, cmd, givenRelative(c), o.configPath); !s)
    return s;
  if (o.prepareOnly)
    llvm::outs() << "prepared " << runDir << ": plan, data (" << prepared->path
                 << "); train with:\n  sh " << shellWord(runDir + "/train.sh") << "\nor:\n  "
                 << quoted(cmd) << "\n";
  return cmd;
}

/// What gives the world size: "torchrun's WORLD_SIZE", "NPROC_PER_NODE", or
/// "" where mtc train takes the fewest ranks of the layout.
std::string worldSourceOf(const Launch &launch) {
  return !launch.by.empty()       ? launch.by + "'s WORLD_SIZE"
         : launch.nprocPerNode > 0 ? "NPROC_PER_NODE"
                                   : "";
}

/// The number of ranks: the launcher's processes; without a launcher,
/// LLaMA-Factory's NPROC_PER_NODE (local ranks that mtrun --nproc starts),
/// else the fewest that hold the layout (tp x pp x cp, times the dp that ep x
/// etp needs).
Expected<int64_t> worldSize(const TrainConfig &c, const Launch &launch) {
  const int64_t modelParallel = c.parallel.tp * c.parallel.pp * c.parallel.cp;
  int64_t world = !launch.by.empty()       ? launch.worldSize
                  : launch.nprocPerNode > 0 ? launch.nprocPerNode
                                            : modelParallel * c.dataParallelSize();
  std::string from = worldSourceOf(launch);
  if (from.empty())
    from = "the fewest ranks of the layout";
  if (world % modelParallel != 0) {
    // The sizes that make the product, and where each was given.
    std::string sizes;
    for (const auto &[key, size] : {std::pair<std::string, int64_t>{"tensor_model_parallel_size",
                                                                     c.parallel.tp},
                                    {"pipeline_model_parallel_size", c.parallel.pp},
                                    {"context_parallel_size", c.parallel.cp}})
      if (size > 1) {
        std::string where = c.whereGiven(key);
        if (where.size() >= 2)
          where.resize(where.size() - 2); // "file:line:col: " or "command line: "
        sizes += "; " + key + " " + std::to_string(size) + " was given at " + where;
      }
    return fail("world size " + std::to_string(world) + " (" + from + ") is not a multiple of "
                "tensor_model_parallel_size x pipeline_model_parallel_size x "
                "context_parallel_size (" + std::to_string(modelParallel) + ")" + sizes +
                ": give " + from + " a multiple of " + std::to_string(modelParallel) +
                ", or sizes whose product divides " + std::to_string(world));
  }
  return world;
}

} // namespace

namespace {

/// The run as the keys give it, read and checked before anything is
/// written, every error of them reported together: `c` with its world size,
/// the run directory (absolute and normal), and (on the rank that prepares)
/// the mtc-state to resume (absolute; "" for none).
Status readRun(const TrainCommandOptions &o, const Launch &launch,
               const std::vector<std::pair<std::string, std::string>> &overrides, TrainConfig &c,
               std::string &runDir, std::string &resume) {
  ConfigErrors errors;
  if (!loadTrainConfig(o.configPath, overrides, c, errors))
    return errors.status();
  runDir = absolutePath(launchRunDir(o.runDir.empty() ? c.outputDir + "/mtc-run" : o.runDir,
                                     launch));
  const bool launched = !launch.by.empty();
  // Megatron-Core's rule, said before any work (by the rank that prepares).
  if (!errors.failed("sequence_parallel") && !errors.failed("tensor_model_parallel_size"))
    if (std::string warning =
            sequenceParallelOffAtTp1(c.parallel, c.whereGiven("sequence_parallel"));
        !warning.empty() && (!launched || launch.localRank == 0))
      llvm::errs() << "warning: " << warning << "\n";
  for (const std::string &warning : {c.warmupIgnoredWarning(), noWeightsWarning(c)})
    if (!warning.empty() && (!launched || launch.localRank == 0))
      llvm::errs() << "warning: " << warning << "\n";
  checkConfig(c, dataRequest(c, o, runDir), errors);
  if (!launched || launch.localRank == 0) // the others wait while it is written
    errors.add("", checkRunDir(runDir, o.runDir.empty() ? "" : "-o", c, o.configPath));
  if (launched && o.prepareOnly)
    errors.add("", fail("--prepare-only under " + launch.by + ": prepare once, without the "
                        "launcher and with NPROC_PER_NODE set to its world size, then launch "
                        "the mtrun command of run/train.sh, less --nproc, under it"));
  if (!errors.failed("tensor_model_parallel_size") &&
      !errors.failed("pipeline_model_parallel_size") && !errors.failed("context_parallel_size")) {
    auto world = worldSize(c, launch);
    errors.add("", world);
    c.parallel.worldSize = world ? *world : 0;
    const std::string source = worldSourceOf(launch);
    if (world && !source.empty())
      c.worldSource = source + " " + std::to_string(*world);
  }
  // The rank that prepares: the others read output_dir while it is written.
  // resume_from_checkpoint: true looks in output_dir, judged only when given.
  const bool outputKnown = !errors.failed("output_dir") && !c.outputDir.empty();
  if ((!launched || launch.localRank == 0) && !errors.failed("resume_from_checkpoint") &&
      (outputKnown || c.resumeFromCheckpoint != "true")) {
    auto state = resumeState(c);
    errors.add("resume_from_checkpoint", state);
    resume = state ? absolutePath(*state) : "";
    // The checkpoint's run against the keys, before the data step; keys
    // refused already would be judged by a stand-in.
    bool keysRead = true;
    for (const char *key : {"model_name_or_path", "cutoff_len", "per_device_train_batch_size",
                            "gradient_accumulation_steps", "max_steps", "seed",
                            "tensor_model_parallel_size", "pipeline_model_parallel_size",
                            "context_parallel_size"})
      keysRead &= !errors.failed(key);
    if (!resume.empty() && keysRead)
      errors.add("resume_from_checkpoint", checkResumedRun(c, resume));
    if (state && outputKnown && !errors.failed("overwrite_output_dir"))
      errors.add("output_dir", checkOutputDir(c, !resume.empty(), runDir));
  }
  return errors.status();
}

/// Moves an earlier preparation in `runDir` aside while a new one is made
/// there: its train.sh may still continue its run. Returns where it went
/// ("": there was none, or only an empty directory).
Expected<std::string> setAsideRunDir(const std::string &runDir) {
  if (Status s = checkSetAsideRunDir(runDir); !s)
    return s;
  std::error_code ec;
  if (!fs::exists(runDir, ec) || fs::is_empty(runDir, ec))
    return std::string();
  const std::string aside = setAsidePath(runDir, long(::getpid()));
  fs::rename(runDir, aside, ec);
  if (ec)
    return fail(runDir + ": cannot move the earlier run's preparation aside to " + aside +
                " while the new one is made: " + ec.message());
  return aside;
}

/// Where mtrun's refusal is of the checkpoint in Trinity's
/// dist_checkpointing_path, which the run resumes by itself (not
/// resume_from_checkpoint): what continues it and what starts anew, in
/// mtc train's keys rather than mtrun's flags; else "".
std::string distResumeNote(const TrainConfig &c, const std::vector<std::string> &cmd,
                           const std::string &resume) {
  auto it = std::find(cmd.begin(), cmd.end(), "--resume");
  if (!resume.empty() || it == cmd.end() || c.distCheckpointingPath.empty())
    return "";
  return "; the run resumes dist_checkpointing_path " + c.distCheckpointingPath +
         ", as use_dist_checkpointing does: give the settings of the run that saved it to "
         "continue it, or another dist_checkpointing_path to start a new run from "
         "model_name_or_path";
}

/// The run prepared in `runDir` (local rank 0, or the one process) and
/// accepted by `mtrun --check`, or nothing changed: an earlier preparation
/// there is set aside meanwhile and put back, intact, when anything is
/// refused (a failed step, or mtrun refusing the weights, the data or the
/// checkpoint to resume); what this command created is removed again.
/// Under a launcher the node's other ranks are told either way.
Expected<std::vector<std::string>> prepareAccepted(const TrainConfig &c,
                                                   const TrainCommandOptions &o,
                                                   const Launch &launch,
                                                   const std::string &runDir,
                                                   const std::string &resume) {
  const bool launched = !launch.by.empty();
  std::error_code ec;
  const bool newOutputDir = !fs::exists(c.outputDir, ec);
  // The highest directory create_directories makes: output_dir's parents too.
  fs::path created;
  for (fs::path p = fs::absolute(runDir, ec); !p.empty() && !fs::exists(p, ec);
       p = p.parent_path())
    created = p;
  auto aside = setAsideRunDir(runDir);
  if (!aside)
    return aside.status();
  const bool newRunDir = !fs::exists(runDir, ec);
  fs::create_directories(runDir, ec);
  if (ec)
    return fail(runDir + ": cannot create: " + ec.message());
  Status begun = launched ? beginPreparation(runDir) : Status::ok();
  Expected<std::vector<std::string>> cmd =
      begun ? prepareRun(c, o, runDir, resume, launched ? 1 : c.parallel.worldSize)
            : Expected<std::vector<std::string>>(begun);
  if (cmd) { // mtrun's own checks, before this preparation replaces an earlier one
    std::vector<std::string> check = *cmd;
    check.push_back("--check");
    // How it ended too: a crash prints no error of its own above.
    if (auto code = runChild(check, ""); !code || *code != 0)
      cmd = fail("mtrun refused the prepared run (" +
                 (code ? "its error is above; " + describeExit(*code) : code.message()) + ")" +
                 distResumeNote(c, *cmd, resume) +
                 (aside->empty() ? std::string()
                                 : "; " + runDir + " holds the earlier run's preparation "
                                   "again, unchanged"));
  }
  if (cmd) {
    if (!aside->empty())
      fs::remove_all(*aside, ec);
  } else if (!aside->empty() || (!launched && newRunDir)) {
    fs::remove_all(runDir, ec);
    if (!aside->empty())
      fs::rename(*aside, runDir, ec);
  }
  if (launched) // the other ranks read the outcome in runDir
    if (Status s = endPreparation(runDir, launch, cmd ? "" : cmd.status().message()); !s)
      return s;
  if (!cmd && !launched) {
    if (newOutputDir)
      fs::remove(c.outputDir, ec); // only where it is empty again
    // Then the directories above it this command made (output_dir and its
    // parents), each only where it is empty again.
    for (fs::path p = fs::absolute(runDir, ec).parent_path();
         !created.empty() && p.string().size() >= created.string().size(); p = p.parent_path())
      if (fs::exists(p, ec) && !fs::remove(p, ec))
        break;
  }
  return cmd;
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
  auto launch = launchFromEnvironment();
  if (!launch)
    return report(launch.status());
  TrainConfig c;
  std::string runDir, resume;
  if (Status s = readRun(o, *launch, *overrides, c, runDir, resume); !s)
    return report(s);
  const bool launched = !launch->by.empty();
  // Under a launcher, local rank 0 prepares this node's copy of the run and
  // every rank then runs mtrun, which finds its rank in the same variables.
  if (launched && launch->localRank != 0) {
    std::error_code ec;
    fs::create_directories(runDir, ec);
    if (Status s = awaitPreparation(runDir, *launch, o.launchTimeout); !s)
      return report(s);
    Status ran = runCommand({"/bin/sh", runDir + "/train.sh"}, "mtrun (" + runDir + "/train.sh)",
                            c.exitSignalHandler);
    return ran ? true : report(ran);
  }
  auto cmd = prepareAccepted(c, o, *launch, runDir, resume);
  if (!cmd)
    return report(cmd.status());
  if (o.prepareOnly)
    return true;
  const auto before = finalStateTime(c.outputDir);
  Status ran = runCommand(*cmd, "mtrun", c.exitSignalHandler);
  if (!ran)
    return report(ran);
  // Only rank 0 writes output_dir, and nodes need not share a file system:
  // on several nodes no node can tell alone.
  if (!launched || launch->oneNode)
    llvm::outs() << finalModelLine(c.outputDir, before) << "\n";
  return true;
}

} // namespace mt
