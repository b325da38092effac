// The training job of one rank (runtime/exec/Trainer.cpp: setting up,
// the loop and its outputs; TrainingSteps.cpp: one optimizer step's
// passes and loss). Internal to the trainer: Trainer.h is its interface.
#ifndef MT_RUNTIME_EXEC_TRAININGRUN_H
#define MT_RUNTIME_EXEC_TRAININGRUN_H

#include "runtime/exec/Backends.h"
#include "runtime/exec/EarlyExit.h"
#include "runtime/exec/HfOutputs.h"
#include "runtime/exec/PipelineChannels.h"
#include "runtime/exec/PipelineTimeline.h"
#include "runtime/exec/RankContext.h"
#include "runtime/exec/RunState.h"
#include "runtime/exec/StepReport.h"
#include "runtime/exec/Trainer.h"
#include "runtime/io/Dataset.h"
#include "runtime/plan/plan.pb.h"

#include <chrono>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <vector>

namespace mt::exec {

using Clock = std::chrono::steady_clock;

/// Discards what non-zero ranks would print.
struct NullStream : std::ostream {
  NullStream() : std::ostream(nullptr) {}
};

/// One training job on this rank: what it owns between steps.
class TrainingRun {
public:
  TrainingRun(const TrainOptions &o, std::ostream &rankZeroLog)
      : o_(o), rankZeroLog_(rankZeroLog) {}

  Status prepare();
  /// The steps, under `signals` (installed by train()); `watch` decides
  /// after each whether the run ends there.
  Expected<TrainSummary> run(StopSignals &signals, const ExitWatch &watch);
  /// What prepare() checks that needs no rank: the outputs, the plan (started
  /// as `ranks` processes), the
  /// flags against a --resume checkpoint (read alone: an interrupted save
  /// is repaired, as rank 0 would), the data (its header: the ranks scan
  /// its ids), and the steps to run.
  Status checkAlone(int64_t ranks);

private:
  /// The settings the run continues with, from the flags and, when
  /// resuming, the checkpoint (read into `checkpoint`).
  Status chooseSettings(std::optional<RunState> &checkpoint);
  /// A note where --save holds a checkpoint of another run, which the
  /// first save replaces.
  void noteReplacedCheckpoint();
  /// Where the run stands and ends: the checkpoint's progress, after checking
  /// that it belongs to this run; the last step.
  Status placeRun(const std::optional<RunState> &checkpoint);
  /// chooseSettings, openData and placeRun, in order.
  Status settleRun();
  Status openData();
  Status initializeWeights();
  /// What run() keeps between steps for the summary and the logs.
  struct Progress {
    TrainSummary summary;
    std::deque<double> recent; // the last 20 losses
    Clock::time_point started{};
  };
  /// output_dir's transformers-style outputs (--hf-output), when asked:
  /// overwrite_output_dir's removals first.
  Expected<std::optional<HfRunOutputs>> openHfOutputs();
  /// After a step: the summary, metrics, log line and log_history; errors:
  /// a metrics line not written, or too many skipped steps in a row.
  /// `ending`: the run ends after this step (its last, or an early end).
  Status recordStep(const StepRecord &rec, Progress &progress, std::optional<HfRunOutputs> &hf,
                    bool ending);
  /// After step `step`: the --save checkpoint and the Hugging Face
  /// outputs' checkpoint-N where due, or wherever the run ends (`ending`
  /// or the last step).
  Status saveCheckpoints(int64_t step, std::optional<HfRunOutputs> &hf, bool ending);
  /// After the run's steps: the profile and timeline and, unless it ended
  /// early (`ended`), --export-hf and the Hugging Face outputs' final model.
  Status finishRun(std::optional<HfRunOutputs> &hf, const ExitReason &ended);
  /// The executor's weights and optimizer state into host memory, once
  /// after step `step`.
  Status readStateAfter(int64_t step) {
    if (stateReadAfter_ == step)
      return Status::ok();
    stateReadAfter_ = step;
    return executor_->readState();
  }
  /// The line of a run that ends after `step` for `reason`.
  void reportEarlyEnd(int64_t step, const ExitReason &reason);
  /// trainer.json after step `step`.
  RunState stateAfter(int64_t step) const;
  /// One optimizer step: every micro-batch's forward and backward, the
  /// optimizer; returns what the step reports.
  Expected<StepRecord> step(int64_t step);
  /// What a step's micro-batches add on this rank (0 on a stage without
  /// the loss): their weighted losses (and its lm, aux and z terms) and,
  /// per token, their loss tokens.
  struct StepSums {
    double loss = 0, tokens = 0, lm = 0, aux = 0, z = 0;
  };
  /// The forward and backward passes of one step: the actions of this
  /// rank's schedule before the optimizer step, in the plan's order.
  Expected<StepSums> microBatchPasses(int64_t step);
  /// The step's loss from this rank's sums, as the plan's StepLoss says.
  Expected<StepLoss> reduceLoss(int64_t step, StepSums sums);
  Status fillInputs(int64_t step, int64_t micro);
  std::ostream &log() { return rank_ && rank_->rank() == 0 ? rankZeroLog_ : quiet_; }
  Status loadPlan();
  /// Copies the logits (the cross-entropy's first input) when the
  /// cross-entropy has read them, before their memory is reused.
  std::function<void(int)> logitsDumper();
  Status writeLogits();
  std::vector<float> logits_;
  std::vector<int64_t> logitsShape_;

  const TrainOptions &o_;
  std::ostream &rankZeroLog_;
  StopSignals *signals_ = nullptr; // run()'s, while it runs
  NullStream quiet_;
  plan::Plan plan_;
  std::unique_ptr<RankContext> rank_;
  std::unique_ptr<io::Dataset> dataset_;
  std::unique_ptr<HostMemory> memory_;
  std::unique_ptr<Executor> executor_;
  // Made by the executor, gone before it and before rank_.
  std::unique_ptr<PipelineChannels> pipeline_;
  PipelineTimeline timeline_;
  // The schedule this rank replays (its pipeline stage's).
  const plan::StageSchedule *schedule_ = nullptr;
  std::ofstream metrics_;
  RunSettings settings_;
  RunIdentity identity_;
  int64_t done_ = 0; // steps done before this run (resumed checkpoints)
  std::optional<double> checkpointLastLoss_, lastLoss_; // RunState::lastLoss
  // --export-hf writes the experts as --load-hf's checkpoint spelled them.
  HfExpertLayout expertLayout_ = HfExpertLayout::PerExpert;
  int64_t last_ = 0; // the step the run ends after
  int64_t stateReadAfter_ = -1; // the step readStateAfter last read after
  int64_t skipped_ = 0, skippedInARow_ = 0; // since the start of training
  bool checkingAlone_ = false; // checkAlone(): a launcher's check, before the ranks
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_TRAININGRUN_H
