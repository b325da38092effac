// TrainConfig: the front-end for LLaMA-Factory-style training YAML (its
// own keys, MCoreAdapter's Megatron keys, and Trinity-RFT's `megatron:`
// block), mapped onto mtc's parallel layout and optimizer schedule.
#ifndef MT_COMPILER_CONFIG_TRAINCONFIG_H
#define MT_COMPILER_CONFIG_TRAINCONFIG_H

#include "compiler/config/MoeOptions.h"
#include "compiler/config/ParallelConfig.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mt {

/// The configuration errors of one run, collected so that a single run names
/// every wrong key (each message says where the key was given, its value and
/// what is valid) before any work is done.
class ConfigErrors {
public:
  /// Records `s` (nothing when it is ok) as an error of `key` ("": of no
  /// single key).
  void add(const std::string &key, const Status &s);
  /// Records the error of `e`, if it holds one.
  template <typename T> void add(const std::string &key, const Expected<T> &e) {
    if (!e)
      add(key, e.status());
  }
  /// Records that `key` asks for what this version of mtc does not do.
  void refuse(const std::string &key, const std::string &message) {
    refusals_.push_back(message);
    keys_.insert(key);
  }
  /// Whether an error named `key`: later checks of that key are skipped, as
  /// its value was not read and they would judge a stand-in.
  bool failed(const std::string &key) const { return keys_.count(key) != 0; }
  bool empty() const { return errors_.empty() && refusals_.empty(); }
  /// All of them in one message (ok when none): a single error as it is,
  /// several listed under "N configuration errors:", then the refusals
  /// under "N keys ask for what this version of mtc does not do:".
  Status status() const;

private:
  std::vector<std::string> errors_, refusals_;
  std::set<std::string> keys_;
};

/// A training run as LLaMA-Factory's keys describe it (defaults are
/// transformers' TrainingArguments' and LLaMA-Factory's). Megatron keys
/// land in `parallel`.
struct TrainConfig {
  // Model and data (LLaMA-Factory's ModelArguments / DataArguments).
  std::string modelNameOrPath;   // a local Hugging Face model directory
  /// train_from_scratch: random weights (the seed's), not the directory's.
  bool trainFromScratch = false;
  std::string stage = "sft";     // "sft" or "pt"
  std::string dataset;           // comma-separated names (dataset_info.json) or files
  std::string datasetDir = "data";
  std::string chatTemplate;      // `template`
  int64_t cutoffLen = 2048;      // tokens per sample: the plan's sequence length
  int64_t maxSamples = 0;        // 0: all
  bool packing = false, neatPacking = false, trainOnPrompt = false, maskHistory = false;
  // Outputs.
  std::string outputDir;
  bool overwriteOutputDir = false;
  /// plot_loss: training_loss.svg at the end (mtc draws it unless told not
  /// to; LLaMA-Factory's default is false and its examples set true).
  bool plotLoss = true;
  int64_t loggingSteps = 500, saveSteps = 500, saveTotalLimit = 0; // 0: keep all
  std::string resumeFromCheckpoint; // "": none, "true": the newest in output_dir
  // Ending early (Megatron-LM's exit arguments; mtrun's --exit-*).
  bool exitSignalHandler = false;
  double exitDurationInMins = 0; // 0: no limit
  int64_t exitInterval = 0;      // 0: none
  /// infer_dtype: the dtype of the saved models' tensors (mtrun
  /// --export-dtype): auto (the model config's), float32, bfloat16, float16.
  std::string inferDtype = "auto";
  // Batch and schedule (transformers' TrainingArguments).
  int64_t perDeviceTrainBatchSize = 8, gradientAccumulationSteps = 1;
  double numTrainEpochs = 3.0;
  int64_t maxSteps = -1; // > 0 overrides num_train_epochs
  double learningRate = 5e-5;
  std::string lrSchedulerType = "linear";
  std::optional<double> minLr, minLrRate; // lr_scheduler_kwargs (cosine_with_min_lr)
  std::optional<double> numCycles;        // lr_scheduler_kwargs (the cosines; 0.5 only)
  double warmupRatio = 0.0;
  int64_t warmupSteps = 0;
  double weightDecay = 0.0, adamBeta1 = 0.9, adamBeta2 = 0.999, adamEpsilon = 1e-8;
  double maxGradNorm = 1.0;
  bool bf16 = false, fp16 = false;
  uint64_t seed = 42;
  // Trinity-RFT: mtc's own checkpoints (reshardable) as the start and target.
  bool useDistCheckpointing = false;
  std::string distCheckpointingPath;
  /// The Megatron keys (tensor_model_parallel_size, ...).
  ParallelConfig parallel;
  /// Megatron-Core's moe_* routing keys, applied when the model is imported.
  MoeOptions moe;
  /// "key: why" for every key given that names what mtc always does, for
  /// --explain.
  std::vector<std::string> alwaysDone;
  /// Where each given key was set ("file:line:col" or "command line"),
  /// in order, for --explain.
  std::vector<std::pair<std::string, std::string>> givenAt;

  /// The data-parallel size the run will have: parallel.dp if given, else
  /// Megatron-Core's world size / (tp x pp x cp) (expert parallelism folds
  /// over the same ranks and does not divide the data), else the fewest
  /// ranks that hold ep x etp.
  int64_t dataParallelSize() const;
  /// Where the world size came from, for the notes under a layout error
  /// ("NPROC_PER_NODE 2", "torchrun's WORLD_SIZE 8"); "" when mtc train
  /// chose the fewest ranks of the layout.
  std::string worldSource;
  /// per_device_train_batch_size x gradient_accumulation_steps x dp.
  int64_t globalBatchSize() const {
    return perDeviceTrainBatchSize * gradientAccumulationSteps * dataParallelSize();
  }

  /// The parallel layout to compile: `parallel` with micro_batch_size =
  /// per_device_train_batch_size, seq_length = cutoff_len and the global
  /// batch above.
  ParallelConfig layout() const;

  /// Optimizer steps per pass over `datasetSamples` samples (rows of
  /// prepared sft data, or cutoff_len chunks of a token stream):
  /// max(1, floor(samples / global batch)). This is the trainer the seeds
  /// run (USE_MCA=1: MCoreAdapter's McaTrainer._prepare_train_loop, whose
  /// data loader has drop_last=True: floor(floor(samples / (per_device x
  /// dp)) / gradient_accumulation_steps), the same number), and what mtrun
  /// reads: full global batches only. transformers' own Trainer counts a
  /// last partial batch as a step (ceil) instead.
  int64_t stepsPerEpoch(int64_t datasetSamples) const;

  /// The warning for data smaller than one step ("" when it is not):
  /// every step reads globalBatchSize() samples of the data order (which
  /// goes on into the next epoch's shuffle), so with fewer samples than that
  /// each step holds some of them twice or more. Names both numbers, the
  /// keys that make the global batch and that more data helps.
  /// transformers' Trainer would take a smaller last batch instead; the
  /// run is still a run (a smoke test on a few rows), hence a warning.
  std::string repeatedSamplesWarning(int64_t datasetSamples) const;

  /// A warm-up (warmup_steps or warmup_ratio) given with lr_scheduler_type
  /// constant, which has none (transformers' get_constant_schedule; its
  /// constant_with_warmup has one): the warning, or "".
  std::string warmupIgnoredWarning() const;

  /// The run's optimizer steps: max_steps when > 0, else
  /// ceil(num_train_epochs x stepsPerEpoch) (McaTrainer's and transformers'
  /// max_steps for epoch-based training). Errors: epochs without
  /// `datasetSamples`, or epochs that give no step.
  Expected<int64_t> trainSteps(std::optional<int64_t> datasetSamples) const;

  /// The optimizer and schedule of transformers' Trainer: train_steps as
  /// trainSteps(); warmup = warmup_steps, or ceil(warmup_ratio x steps)
  /// (TrainingArguments.get_warmup_steps); lr_scheduler_type becomes
  /// the "hf_"-prefixed style of mt.lr_schedule.
  Expected<OptimizerConfig> optimizer(std::optional<int64_t> datasetSamples) const;

  /// lr_scheduler_kwargs.num_cycles, where given: the cosines take it, at
  /// transformers' default 0.5 only (the plan's schedule has it built in).
  Status checkNumCycles() const;

  /// The data keys that apply to one stage only, checked against `stage`
  /// before any work; each error (all of them added to `errors`) names
  /// where the key was given. As
  /// LLaMA-Factory's parser (hparams/parser.py), neat_packing, train_on_prompt
  /// and mask_history are refused outside sft. Stage pt also refuses what it
  /// would otherwise ignore: `template` (LLaMA-Factory reads it in pt only to
  /// choose the end-of-text token it appends to each example,
  /// data/processor/pretrain.py; mtc's pt appends none) and `packing: false`
  /// (mtc's pt always concatenates, LLaMA-Factory's default for pt).
  void checkStageKeys(ConfigErrors &errors) const;

  /// "file:line:col: " (or "command line: ") where `key` was last given;
  /// "" when it was not.
  std::string whereGiven(const std::string &key) const;

  /// Where each key of the layout and the optimizer was last given, by its
  /// Megatron-Core name, as withGivenAt (ParallelConfig.h) takes it; the
  /// LLaMA-Factory keys that set one name themselves
  /// (per_device_train_batch_size for micro_batch_size, cutoff_len for
  /// seq_length, learning_rate for lr, ...).
  std::map<std::string, std::string> layoutGivenAt() const;

  /// What a plan alone (`mtc compile --config`) cannot keep, refused rather
  /// than ignored, naming where it was given: bf16: false (a plan holds no
  /// precision; `mtc train` honours it by choosing the CPU backend), as
  /// Megatron-Core's option file refuses it.
  Status checkPlanKeys() const;

  /// Under expert parallelism, how the global batch differs from
  /// MCoreAdapter's comment (dp = world / (tp x pp x cp x ep)), which mtc
  /// does not follow: "" where ep is 1.
  std::string expertParallelBatchNote() const;

  /// Lines for `--explain`: the global batch with the dp used, the steps
  /// (and how epochs over `datasetSamples` give them), and the keys that
  /// name what mtc always does.
  std::string explain(std::optional<int64_t> datasetSamples) const;
};

/// Reads `path` (a LLaMA-Factory YAML; a `megatron:` mapping and its
/// `override_transformer_config:` may appear in it) into `config`, then
/// applies `overrides` (key, value text) in order, as the command line
/// gives them. Errors name the key, and the file:line:col (or "command
/// line"): an unknown key with the nearest known one, a wrong type or value
/// with what is valid, a key mtc cannot honour yet with the reason and the
/// issue that brings it. Every key is read: the errors of all of them are
/// added to `errors`. Returns false when the file cannot be read or is no
/// YAML mapping: the keys are then unknown, and checks of them pointless.
bool loadTrainConfig(const std::string &path,
                     const std::vector<std::pair<std::string, std::string>> &overrides,
                     TrainConfig &config, ConfigErrors &errors);

/// loadTrainConfig with the errors returned as one Status
/// (ConfigErrors::status).
Status loadTrainConfig(const std::string &path,
                       const std::vector<std::pair<std::string, std::string>> &overrides,
                       TrainConfig &config);


/// Splits LLaMA-Factory-style command-line overrides: `--key value`,
/// `--key=value`, `key=value`, and a bare `--flag` (followed by nothing or
/// another `--` word), whose value is "": loadTrainConfig reads it as true
/// for a boolean key and refuses it for a key that takes a string. An
/// argument of another form is an error naming it.
Expected<std::vector<std::pair<std::string, std::string>>>
parseOverrides(const std::vector<std::string> &args);

/// `mtc train`'s words (less its own flags), as LLaMA-Factory's CLI takes
/// them: a first word that is no override (neither `-...` nor `key=...`) is
/// the YAML, removed from `args` and returned; else "" and every key comes
/// from the command line (`src/train.py --model_name_or_path M --stage sft
/// ...`, the seeds' multi-node form).
std::string takeConfigPath(std::vector<std::string> &args);

} // namespace mt

#endif // MT_COMPILER_CONFIG_TRAINCONFIG_H
