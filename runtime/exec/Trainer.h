// The training loop of mtrun: data, steps of the plan's programs, metrics,
// progress, checkpoints and export.
#ifndef MT_RUNTIME_EXEC_TRAINER_H
#define MT_RUNTIME_EXEC_TRAINER_H

#include "runtime/exec/EarlyExit.h"
#include "runtime/exec/HfOutputs.h"
#include "runtime/support/Status.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

namespace mt::exec {

struct TrainOptions {
  std::string planDir;
  std::string dataPath;           // token file (runtime/io/TokenFile.h)
  /// The step the run ends after, counted from the start of training, so a
  /// resumed run continues to it (default: the plan's train_steps).
  std::optional<int64_t> steps;
  // Settings a resumed run takes from its checkpoint when not given; given,
  // they must equal the checkpoint's (runtime/exec/RunState.h).
  std::optional<uint64_t> seed;   // weights and data order (default 1234)
  std::optional<double> lr;       // overrides the schedule's peak
  std::optional<uint32_t> eosId;  // masks predictions across documents
  std::string metricsPath;        // JSON lines, one per step
  std::string loadHf;             // initial weights from a HF checkpoint
  std::string resumeDir;          // a checkpoint written by --save
  std::string saveDir;
  int64_t saveEvery = 0;          // 0: save at the end only (if saveDir)
  std::string exportHf;           // HF checkpoint written at the end
  /// The dtype of the tensors of --export-hf and of the HF outputs' models.
  ExportDtype exportDtype = ExportDtype::Auto;
  /// output_dir as transformers' Trainer writes it (mtc train's); its
  /// outputDir is checked by the caller (mtc train), not by checkTrainOutputs.
  HfOutputOptions hf;
  std::string dumpLogits;         // safetensors of the first micro-batch's logits
  int64_t maxSkippedSteps = 10;   // consecutive NaN/Inf steps before stopping
  std::chrono::milliseconds commTimeout{std::chrono::minutes(5)}; // per collective
  bool progressBar = false;       // a terminal line, else log lines
  /// Log lines (without progressBar): the run's first step, every step
  /// divisible by it (Megatron-Core's log_interval), skipped steps and the
  /// last.
  int64_t logInterval = 10;
  /// "cpu", "cuda", or "auto": cuda where this mtrun has the CUDA backend,
  /// a GPU is visible and the plan has one rank; else cpu.
  std::string backend = "auto";
  bool profile = false;           // CUDA: time each instruction class
  /// CUDA: attention's implementation, "auto", "cudnn" or "mtc"
  /// (cuda::AttentionBackend); empty: MT_ATTENTION_BACKEND, else auto.
  std::string attentionBackend;
  bool profileComm = false;       // CUDA: exposed communication per step (CommProfile.h)
  std::string timelinePath;       // pipelines: SVG of the last step's measured timeline
  /// Outputs may also replace an mtc output of another kind, or a file mtc
  /// did not write (never an input): io::checkOutputs.
  bool overwrite = false;
  /// Ending before the last step: Megatron-LM's exit arguments.
  ExitOptions exit;
};

/// The steps this process ran (a resumed run: those after the checkpoint).
struct TrainSummary {
  int64_t steps = 0, skipped = 0;
  double firstLoss = 0, lastLoss = 0, meanLastLosses = 0;
  /// Why the run ended before its last step (ExitOptions), or empty.
  std::string endedEarly;
};

/// Refuses output paths (--metrics, --save, --export-hf, --dump-logits,
/// --timeline) whose writing would destroy an input of the run (the plan,
/// --data, --load, --resume; --save may replace the --resume checkpoint)
/// or anything mtc did not write (io::checkOutputs). train() runs it
/// first; a launcher runs it once before starting the ranks.
Status checkTrainOutputs(const TrainOptions &options);

/// The checks every rank of a run makes alike (its outputs, the plan and its
/// rank count against the `ranks` the launcher starts (0: any), the flags
/// against a --resume checkpoint, the data, the steps to run, --load's
/// tensor names and shapes), made once by a launcher (mtrun --nproc) before
/// it starts the ranks, so that such an error is told once, and by mtrun
/// --check; prints nothing and writes nothing. Without options.dataPath
/// (`mtrun --check --load`, before mtc train's data step): the plan, its
/// rank count and --load alone.
Status checkRun(const TrainOptions &options, int64_t ranks);

/// Runs the whole job on this rank (the rank comes from the environment:
/// mtrun --nproc, torchrun, Slurm or OpenMPI); `log` receives progress on
/// rank 0.
Expected<TrainSummary> train(const TrainOptions &options, std::ostream &log);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_TRAINER_H
