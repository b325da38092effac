// The state of a training run that a checkpoint's trainer.json carries: how
// far the run got, the settings that decide its future, and the identity of
// the run (model, data, batch, schedule) that a resumed run must share.
#ifndef MT_RUNTIME_EXEC_RUNSTATE_H
#define MT_RUNTIME_EXEC_RUNSTATE_H

#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mt::exec {

/// Settings chosen when a run starts that decide the rest of it; a resumed
/// run takes them from its checkpoint.
struct RunSettings {
  static constexpr uint64_t kDefaultSeed = 1234;
  uint64_t seed = kDefaultSeed;  // initial weights and the data order
  std::optional<uint32_t> eosId; // end-of-document token: loss mask
  std::optional<double> peakLr;  // --lr: replaces the plan's max_lr
};

/// What must be equal for a checkpoint to continue under a plan, by name:
/// "model.<key>" for every key of the model's Hugging Face config (but
/// `_*`, `transformers_version`, `torch_dtype`, `dtype`: metadata),
/// "seq", "global_batch", "train_steps", "vocab_size", "<op>.<attribute>"
/// for the LR schedule, clipping and AdamW hyperparameters of the
/// optimizer programs (an array where parameters differ, e.g. weight
/// decay), "data.tokens" and "data.fingerprint" (io::sampledFingerprint, as
/// hex). Values are JSON text. The parallel layout
/// (mesh, micro-batch size, micro-batches per step) is not part of it: a
/// checkpoint resumes under any layout of the same run.
using RunIdentity = std::map<std::string, std::string>;

/// The identity of the run `plan` (with any --lr override applied) makes on
/// a token file of `dataTokens` tokens whose sampledFingerprint is
/// `dataFingerprint`.
RunIdentity runIdentity(const plan::Plan &plan, uint64_t dataTokens, uint64_t dataFingerprint);

/// One line "  <key>: checkpoint <a>, this run <b>" per key whose values
/// differ ("absent" for a missing key); empty when the identities are equal.
std::string identityDifferences(const RunIdentity &checkpoint, const RunIdentity &current);

/// What --load should tell about the Hugging Face directory `dir` beside
/// the plan's model config (plan.hf_config_json): "" where its config.json
/// has every key the two share equal (metadata aside: dtype,
/// transformers_version, keys starting with '_'; a key spelled otherwise by
/// another transformers version, as rope_parameters' rope_theta, is not
/// compared); else one note, naming the keys that differ with both values,
/// or saying that config.json is missing or not a JSON object. The weights'
/// shapes are checked where they load.
std::string loadedConfigNote(const plan::Plan &plan, const std::string &dir);

/// Writes as values the sizes a Hugging Face config may give as null and
/// that transformers (and so mtc import-hf) resolves from the others:
/// `num_key_value_heads` null is `num_attention_heads`, `head_dim` null is
/// `hidden_size / num_attention_heads`. (import-hf accepts those nulls only
/// for the classes that resolve them so: compiler/hf/HfConfig.cpp, readHeads.)
/// An export states the sizes it was trained with, and --load compares them.
void resolveNullSizes(nlohmann::json &config);

/// A checkpoint's trainer.json.
struct RunState {
  int64_t step = 0;            // optimizer steps done
  int64_t consumedSamples = 0; // samples of the data order read: step x global batch
  int64_t skippedSteps = 0;    // steps skipped (gradient norm not finite), in all
  int64_t skippedInARow = 0;   // consecutive skipped steps ending at `step`
  RunSettings settings;
  RunIdentity identity;
  /// The loss of step `step` as --metrics logs it (its "loss"), by which a
  /// resumed run knows its own metrics file; nullopt when it was not finite,
  /// or in a checkpoint of an mtrun that did not record it.
  std::optional<double> lastLoss;
  /// Written in format 2: by an mtrun whose Megatron-style schedule may
  /// have run one update ahead of Megatron-Core's (update k at the rate
  /// after k updates; format 3 marks the fixed offset).
  bool scheduleOneAhead = false;
};

/// trainer.json's format: 3 since update k runs at the rate after k - 1
/// updates, as Megatron-Core's OptimizerParamScheduler and transformers'
/// LambdaLR give it; format 2 is read too (RunState::scheduleOneAhead); a
/// file without a format (older mtrun) is refused.
inline constexpr int kRunStateFormat = 3;

/// Writes `state` as JSON to `path`; an error if the file cannot be opened
/// or written completely.
Status writeRunState(const std::string &path, const RunState &state);

/// Reads and checks a trainer.json: every field present with its type, and
/// consumed_samples = step x the identity's global_batch. Errors name the
/// path and the field.
Expected<RunState> readRunState(const std::string &path);

/// The command-line flags that may also be in a checkpoint (nullopt: not
/// given).
struct RunFlags {
  std::optional<uint64_t> seed;
  std::optional<uint32_t> eosId;
  std::optional<double> peakLr;
};

/// The settings a run continues with: each flag not given takes the
/// checkpoint's value; a given flag that contradicts it (--lr: the peak
/// learning rate the checkpoint's run trained with) is an error naming the
/// flag, both values and `checkpointDir`.
Expected<RunSettings> resumedSettings(const RunFlags &flags, const RunState &checkpoint,
                                      const std::string &checkpointDir);

/// The lines of the metrics file at `path` (one JSON object per step) whose
/// "step" is at most `step`: what a run resumed after `step` keeps of it
/// before appending its own (none when the file is absent). Where the
/// checkpoint recorded its `lastLoss` and the file holds step records, the
/// file's line of `step` must log that loss: otherwise the file is another
/// run's, which keeping only its first lines would destroy, and the error
/// (naming `option`, the path and both losses) leaves it as it is.
Expected<std::vector<std::string>> metricsUpTo(const std::string &path, int64_t step,
                                               std::optional<double> lastLoss,
                                               const std::string &option);

/// --lr: sets what the plan's peak_learning_rate names (each target
/// attribute to lr x its ratio).
void overrideLearningRate(plan::Plan &plan, double lr);

/// A run that ends after step `last`, past the plan's train_steps: "--steps
/// N runs past ... keep the schedule's final learning rate X" ("" when it
/// does not, or the plan has no schedule).
std::string pastScheduleNote(const plan::Plan &plan, int64_t last);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_RUNSTATE_H
