// What a Hugging Face Trainer user finds in output_dir: checkpoint-N
// directories (sharded safetensors, config.json, tokenizer files,
// trainer_state.json, and mtc's own state for an exact resume), the final
// model, trainer_log.jsonl as training goes and training_loss.svg.
#ifndef MT_RUNTIME_EXEC_HFOUTPUTS_H
#define MT_RUNTIME_EXEC_HFOUTPUTS_H

#include "runtime/exec/Memory.h"
#include "runtime/exec/RankContext.h"
#include "runtime/exec/RunState.h"
#include "runtime/exec/Weights.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace mt::exec {

/// The transformers TrainingArguments that shape output_dir.
struct HfOutputOptions {
  std::string outputDir;               // "": no HF outputs
  int64_t saveSteps = 0;               // a checkpoint-N every N steps (0: only the final model)
  int64_t saveTotalLimit = 0;          // keep the newest N checkpoint-N (0: all)
  int64_t loggingSteps = 1;            // a log_history entry every N steps
  uint64_t maxShardBytes = 5000000000; // save_pretrained's max_shard_size ("5GB")
  std::string tokenizerDir;            // tokenizer files are copied from here ("": none)
  int64_t samplesPerEpoch = 0;         // for "epoch" in the logs (0: not reported)
  int64_t microBatch = 0;              // trainer_state's train_batch_size (per device)
  ExportDtype exportDtype = ExportDtype::Auto; // the models' tensors (TrainOptions')
  /// transformers' overwrite_output_dir: a new run (no resume) removes the
  /// checkpoint-N and the final model an earlier mtc run left in outputDir
  /// before its first step (removeEarlierCheckpoints, removeEarlierFinalModel).
  bool overwriteOutputDir = false;
  bool plotLoss = true; // training_loss.svg at the end (LLaMA-Factory's plot_loss)
};

/// The directory inside checkpoint-N that holds mtc's checkpoint (weights,
/// AdamW state, trainer.json): `mtrun --resume checkpoint-N/mtc-state`.
inline constexpr const char *kMtcStateDir = "mtc-state";

/// The checkpoint-N directories of `dir` (N of at most 18 digits), oldest
/// (smallest N) first; none where `dir` cannot be read.
std::vector<std::pair<int64_t, std::filesystem::path>> checkpoints(const std::string &dir);

/// A new run with overwrite_output_dir: removes the checkpoint-N
/// directories (N digits) an earlier mtc run left in `outputDir` and
/// returns their names, in order of N. Left there, save_total_limit would
/// remove the new run's checkpoints first (the smallest N) and a resume
/// would pick the earlier run's newest. A checkpoint-N without mtc-state/
/// (another tool's) is an error and nothing is removed; so is one that
/// cannot be removed (the error names it).
Expected<std::vector<std::string>> removeEarlierCheckpoints(const std::string &outputDir);

/// A new run with overwrite_output_dir: removes the final model an earlier
/// run left at the top of `outputDir` (model safetensors and their index,
/// config.json, the tokenizer files, trainer_state.json, training_loss.svg)
/// and returns the names removed. Left there, a run that ends early would
/// leave them beside its own checkpoints and trainer_log.jsonl, as if they
/// were its model. Nothing is removed where `outputDir` is one of `inputs`
/// (the --load or --tokenizer-dir directory), or where the model files
/// there are not all mtc's (their safetensors headers say so): another
/// tool's model, such as a download, stays as it is.
std::vector<std::string> removeEarlierFinalModel(const std::string &outputDir,
                                                 const std::vector<std::string> &inputs);

/// The files of a model directory that are the tokenizer's and are copied
/// into every checkpoint: tokenizer.json, tokenizer_config.json,
/// special_tokens_map.json, vocab.json, merges.txt, tokenizer.model,
/// added_tokens.json, chat_template.jinja, generation_config.json.
const std::vector<std::string> &tokenizerFileNames();

/// transformers' rule for a new run (no `resumeDir`) into
/// `options.outputDir`: one holding checkpoint-N needs overwriteOutputDir,
/// else the new run's checkpoints would mix with the earlier run's (the
/// newest may be the other's) and save_total_limit would prune those. The
/// error names the newest and the three ways on.
Status checkNewRunOutputDir(const HfOutputOptions &options, const std::string &resumeDir);

/// One optimizer step as the logs record it. learningRate is the rate the
/// step used (transformers' log_history has the next step's: its scheduler
/// has stepped when it logs).
struct LoggedStep {
  int64_t step;
  double loss, gradNorm, learningRate;
  double elapsedSeconds; // since the run (this process) started
  int64_t stepsThisRun;  // steps this process ran, this one included
};

/// Writes output_dir as transformers' Trainer does, on world rank 0; the
/// savers are collective (every rank calls them) because the weights are
/// gathered.
class HfRunOutputs {
public:
  /// `resumeDir`: the mtc-state of the checkpoint the run resumes ("" for
  /// none), saved after step `resumedStep`: the log_history of its
  /// checkpoint's trainer_state.json is carried on, and trainer_log.jsonl
  /// keeps its records up to that step (those after it, logged before the
  /// run was interrupted, are logged again) and is appended to. A new run
  /// starts trainer_log.jsonl empty. `globalBatch` samples per step;
  /// `maxSteps`: the run's last step.
  static Expected<HfRunOutputs> open(const HfOutputOptions &options, const std::string &resumeDir,
                                     int64_t resumedStep, int64_t globalBatch, int64_t maxSteps,
                                     bool writer);

  /// Appends the step to trainer_log.jsonl (every step; LLaMA-Factory's
  /// LogCallback fields) and, every logging_steps, to log_history with the
  /// mean loss since the last entry (transformers' Trainer._maybe_log_save_evaluate).
  Status logStep(const LoggedStep &step);

  bool saveDue(int64_t step) const {
    return options_.saveSteps > 0 && step % options_.saveSteps == 0;
  }

  /// Writes output_dir/checkpoint-`step` atomically (config.json, sharded
  /// model, tokenizer files, trainer_state.json, mtc-state/), then removes
  /// the oldest checkpoint-N beyond save_total_limit.
  Status saveCheckpoint(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                        const RunState &state);

  /// The final model, trainer_state.json and (with plotLoss)
  /// training_loss.svg in output_dir.
  Status finish(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                int64_t step);

private:
  HfOutputOptions options_;
  int64_t globalBatch_ = 0, maxSteps_ = 0;
  bool writer_ = false;
  /// log_history: (step, mean loss since the previous entry, grad_norm,
  /// learning_rate).
  struct LogEntry {
    int64_t step;
    double loss, gradNorm, learningRate;
  };
  std::vector<LogEntry> history_;
  double lossSum_ = 0;
  int64_t lossCount_ = 0;

  Status writeModel(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                    const std::string &dir) const;
  Status writeTrainerState(const std::string &dir, int64_t step) const;
  Status writeLossCurve() const;
  double epochAt(int64_t step) const;
  Status prune() const;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_HFOUTPUTS_H
