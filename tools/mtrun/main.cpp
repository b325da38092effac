// mtrun: executes a plan written by `mtc compile`.
#include "runtime/comm/RankEnvironment.h"
#include "runtime/comm/Launcher.h"
#include "runtime/exec/Trainer.h"
#include "runtime/support/OutputPath.h"
#include "runtime/support/Wording.h"
#include "tools/common/CommandLine.h"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace {

/// mtrun --nproc: checks once what every rank would refuse alike, divides
/// the cores among the ranks, and relaunches this command without the
/// launcher's flags as `nproc` local ranks; returns the job's exit code.
mt::Expected<int> launchRanks(const mt::exec::TrainOptions &o, int nproc,
                              std::optional<int> threadsPerRank, int argc, char **argv) {
  if (mt::Status s = mt::exec::checkRun(o, nproc); !s)
    return s;
  auto threads = mt::comm::chooseRankThreads(nproc, mt::comm::availableCores(), threadsPerRank,
                                             std::getenv("OMP_NUM_THREADS"));
  if (!threads)
    return threads.status();
  std::cerr << "mtrun: " << threads->note << "\n";
  auto self = mt::comm::currentExecutable();
  if (!self)
    return self.status();
  std::vector<std::string> args = {*self};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool launcherFlag = false;
    for (const std::string flag : {"--nproc", "--threads-per-rank"}) {
      if (arg == flag)
        ++i; // and its value
      launcherFlag |= arg == flag || arg.rfind(flag + "=", 0) == 0;
    }
    if (!launcherFlag)
      args.push_back(arg);
  }
  return mt::comm::launchLocal(nproc, args, std::chrono::milliseconds(0), std::cerr,
                               threads->threads, o.exit.signalHandler);
}

/// What the command line sets beyond TrainOptions, and the options whose
/// presence is checked after parsing.
struct CommandLine {
  mt::exec::TrainOptions o;
  int64_t eos = -1;
  int nproc = 0;
  double commTimeout = 300;
  std::string exportDtype = "auto";
  std::optional<int> threadsPerRank;
  bool check = false;
  CLI::Option *exportHf = nullptr, *exportDtypeOption = nullptr, *hfOutput = nullptr;
};

/// The plan, the data and the run's settings.
void addRunOptions(CLI::App &app, CommandLine &c) {
  mt::exec::TrainOptions &o = c.o;
  app.add_option("plan", o.planDir, "plan directory")->required();
  // Required but by --check (checked in finishOptions).
  app.add_option("--data", o.dataPath,
                 "token file (mt-tokenize writes one) or prepared SFT data (mt-prepare-sft); "
                 "required but by --check --load")
      ->check(mt::tools::nonEmptyPath);
  app.add_option("--steps", o.steps,
                 "the optimizer step the run ends after, counted from the start of "
                 "training: a resumed run continues to it (default: the plan's train_steps)");
  app.add_option("--seed", o.seed, "seed of the weights and of the data order (default 1234)")
      ->check(mt::tools::nonNegative);
  app.add_option("--lr", o.lr, "peak learning rate (overrides the plan's)");
  app.add_option("--eos-id", c.eos, "end-of-document token: no loss across documents")
      ->check(CLI::Range(int64_t(0), int64_t(UINT32_MAX)));
  app.add_option("--metrics", o.metricsPath,
                 "JSON-lines metrics file, one line per step (replaces a metrics file; a "
                 "resumed run keeps its lines up to the checkpoint's step and appends)")
      ->check(mt::tools::nonEmptyPath);
  app.add_option("--load", o.loadHf, "Hugging Face checkpoint directory to start from (with "
                 "--resume: only the experts' spelling of the exports)")
      ->check(mt::tools::nonEmptyPath);
  app.add_option("--resume", o.resumeDir,
                 "checkpoint written by --save (or a checkpoint-N of --hf-output, whose "
                 "mtc-state/ it reads) to continue: the run takes its seed, "
                 "--eos-id and --lr from it (given, they must match) and refuses a plan or "
                 "data of another run; the parallel layout may differ; it overrides "
                 "--overwrite-output-dir (as transformers' resume_from_checkpoint does); "
                 "given twice (train.sh of a resumed run, and again), the last one counts")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->check(mt::tools::nonEmptyPath);
}

/// Checkpoints, exports and the Hugging Face outputs.
void addOutputOptions(CLI::App &app, CommandLine &c) {
  mt::exec::TrainOptions &o = c.o;
  auto *save = app.add_option("--save", o.saveDir,
                              "checkpoint directory (replaces a checkpoint atomically; may be "
                              "the --resume one)")
      ->check(mt::tools::nonEmptyPath);
  app.add_option("--save-every", o.saveEvery, "with --save: save every K steps (0: at the end)")
      ->needs(save)->check(mt::tools::nonNegative);
  c.exportHf = app.add_option("--export-hf", o.exportHf,
                 "write model.safetensors + config.json here at the end (replaces an export); "
                 "experts in the spelling of the --load checkpoint (fused as transformers 5 "
                 "holds them, or one tensor per expert)")
      ->check(mt::tools::nonEmptyPath);
  c.exportDtypeOption = app.add_option("--export-dtype", c.exportDtype,
                 std::string("dtype of the tensors of --export-hf and of --hf-output's models: ") +
                     mt::exec::exportDtypeChoices() +
                     " (auto: the model config's dtype / torch_dtype, float32 where it names "
                     "none); the fp32 masters rounded to nearest even, and config.json says it")
      ->capture_default_str();
  c.hfOutput = app.add_option(
      "--hf-output", o.hf.outputDir,
      "output_dir as transformers' Trainer writes it (mtc train runs mtrun with it): "
      "checkpoint-N/ (sharded safetensors, config.json, tokenizer files, trainer_state.json, "
      "mtc-state/ to --resume), the final model, trainer_log.jsonl, training_loss.svg")
      ->check(mt::tools::nonEmptyPath);
  c.hfOutput->group("Hugging Face outputs");
  app.add_option("--save-steps", o.hf.saveSteps, "checkpoint-N every N steps (0: at the end only)")
      ->needs(c.hfOutput)->group("Hugging Face outputs")->check(mt::tools::nonNegative);
  app.add_option("--save-total-limit", o.hf.saveTotalLimit,
                 "keep the newest N checkpoint-N (0: all)")
      ->needs(c.hfOutput)->group("Hugging Face outputs")->check(mt::tools::nonNegative);
  app.add_flag("--overwrite-output-dir", o.hf.overwriteOutputDir,
               "a new run removes the checkpoint-N and the final model an earlier mtc run left "
               "in --hf-output before its first step (transformers' overwrite_output_dir; "
               "a checkpoint-N without mtc-state/ is an error; not with --resume)")
      ->needs(c.hfOutput)->group("Hugging Face outputs");
  app.add_flag("!--no-plot-loss", o.hf.plotLoss,
               "write no training_loss.svg at the end (LLaMA-Factory's plot_loss: false)")
      ->needs(c.hfOutput)->group("Hugging Face outputs");
  app.add_option("--logging-steps", o.hf.loggingSteps, "log_history entry every N steps")
      ->needs(c.hfOutput)->group("Hugging Face outputs")->check(mt::tools::positive)
      ->capture_default_str();
  app.add_option("--max-shard-size", o.hf.maxShardBytes,
                 "bytes per safetensors shard (save_pretrained's max_shard_size)")
      ->needs(c.hfOutput)->group("Hugging Face outputs")->check(mt::tools::positive)
      ->capture_default_str();
  app.add_option("--tokenizer-dir", o.hf.tokenizerDir,
                 "model directory whose tokenizer files each checkpoint gets a copy of")
      ->needs(c.hfOutput)->group("Hugging Face outputs")->check(CLI::ExistingDirectory)
      ->check(mt::tools::nonEmptyPath);
}

/// Logs, ending early, launching, the backend and diagnostics.
void addControlOptions(CLI::App &app, CommandLine &c) {
  mt::exec::TrainOptions &o = c.o;
  app.add_option("--dump-logits", o.dumpLogits,
                 "write the logits and input ids of the first micro-batch (safetensors)")
      ->check(mt::tools::nonEmptyPath);
  app.add_option("--log-interval", o.logInterval,
                 "a log line at every step divisible by N (Megatron-Core's log_interval), and "
                 "at the first, last and skipped steps (on a terminal: a progress line every "
                 "step)")
      ->capture_default_str()->check(mt::tools::positive);
  app.add_option("--max-skipped-steps", o.maxSkippedSteps,
                 "stop after this many steps in a row with a non-finite gradient norm")
      ->capture_default_str()->check(mt::tools::positive);
  app.add_flag("--exit-signal-handler", o.exit.signalHandler,
               "SIGTERM, SIGINT or SIGHUP ends the run after the step it arrives in, every "
               "rank after the same step, saving --save's checkpoint (and --hf-output's "
               "checkpoint-N) there to --resume; another signal, a second or more later, "
               "stops at once (Megatron-LM's --exit-signal-handler). Without it a signal "
               "stops the run at once, naming the newest checkpoint")
      ->group("Ending early");
  app.add_option("--exit-duration-in-mins", o.exit.durationMinutes,
                 "end the run, saving as --exit-signal-handler does, after the first step "
                 "that finishes this many minutes after training started (Megatron-LM's)")
      ->group("Ending early")->check(mt::tools::positive);
  app.add_option("--exit-interval", o.exit.interval,
                 "end the run, saving as --exit-signal-handler does, after the first step "
                 "divisible by N (Megatron-LM's)")
      ->group("Ending early")->check(mt::tools::positive);
  app.add_flag("--check", c.check,
               "check the run as its ranks would before training (outputs, plan, data, "
               "--resume against the plan and data, --load's tensor names and shapes) and "
               "exit, writing nothing but the repair the run would make of a --resume "
               "checkpoint that a killed save left (never a running save's): mtc train's "
               "test before it keeps a prepared run; without --data, the plan and --load "
               "alone");
  app.add_option("--nproc", c.nproc, "start this many local ranks (the plan's world size)")
      ->check(mt::tools::positive);
  app.add_option("--threads-per-rank", c.threadsPerRank,
                 "with --nproc: CPU threads of each rank (default: the cores divided among "
                 "the ranks, or OMP_NUM_THREADS where set)");
  app.add_option("--comm-timeout", c.commTimeout,
                 "seconds the rendezvous or a collective may wait for the other ranks: past "
                 "it every waiting rank stops with an error naming the rank, group, program "
                 "and instruction (CPU: Gloo's timeouts; CUDA: a watchdog aborts NCCL)")
      ->capture_default_str()->check(mt::tools::positive);
  app.add_option("--backend", o.backend,
                 "cuda (bf16, one GPU per rank, NCCL; plans with dp, tp, sp, pp, cp and ep, "
                 "MoE layers not under tp or cp), cpu "
                 "(fp32 reference), or auto: cuda where a GPU is visible (a plan the CUDA "
                 "backend does not run is then refused, naming --backend cpu), else cpu")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  app.add_option("--timeline", o.timelinePath,
                 "pipelines: write the last step's measured stage timeline (SVG) here and "
                 "compare its bubble with the schedule's prediction")
      ->check(mt::tools::nonEmptyPath);
  app.add_flag("--overwrite", o.overwrite,
               "outputs may replace an mtc output of another kind or a file mtc did not "
               "write (never an input)");
  app.footer(mt::io::kOutputRulesHelp);
  app.add_flag("--profile", o.profile,
               "CUDA: time every instruction with events and print where a step's time goes");
  app.add_option("--attention-backend", o.attentionBackend,
                 "CUDA: attention on cudnn (cuDNN's fused flash attention), mtc (our "
                 "kernels; the only one for documents packed in a row), or auto: cudnn where "
                 "it runs the shape and its workspace fits, else mtc (default: "
                 "MT_ATTENTION_BACKEND, else auto; cuDNN's backward is deterministic where "
                 "the plan's deterministic_mode says, MT_ATTENTION_DETERMINISTIC=0|1 "
                 "overrides)")
      ->check(CLI::IsMember({"auto", "cudnn", "mtc"}));
  app.add_flag("--profile-comm", o.profileComm,
               "CUDA: time the communication with events on the streams (graphs still "
               "replay) and print, per step, what compute did not hide: the collectives on "
               "the compute stream, the dp reduction's tail after backward and the "
               "optimizer's wait, pipelines' transfers and measured bubble beside the "
               "schedule's");
}

/// The checks CLI11 cannot make, and TrainOptions' remaining fields;
/// returns 1 after printing an error, else 0.
int finishOptions(CommandLine &c) {
  mt::exec::TrainOptions &o = c.o;
  if (o.dataPath.empty() && !(c.check && !o.loadHf.empty() && o.resumeDir.empty())) {
    std::cerr << "error: --data is required: a token file (mt-tokenize) or prepared SFT data "
                 "(mt-prepare-sft)"
              << (c.check ? "; --check without it checks the plan and --load alone (not "
                            "--resume, whose checkpoint names its data)"
                          : "")
              << "\n";
    return 1;
  }
  if (auto dtype = mt::exec::parseExportDtype(c.exportDtype, "--export-dtype"); dtype) {
    o.exportDtype = *dtype;
  } else {
    std::cerr << "error: " << dtype.message() << "\n";
    return 1;
  }
  // CLI11's needs() asks for every option named; either output will do.
  if (c.exportDtypeOption->count() && !c.exportHf->count() && !c.hfOutput->count()) {
    std::cerr << "error: --export-dtype sets the dtype of the models --export-hf and "
                 "--hf-output write; give --export-hf DIR (or --hf-output DIR), or drop "
                 "--export-dtype\n";
    return 1;
  }
  if (c.threadsPerRank && c.nproc == 0) {
    std::cerr << "error: --threads-per-rank needs --nproc (a rank started by torchrun, Slurm "
                 "or OpenMPI takes OMP_NUM_THREADS from its environment)\n";
    return 1;
  }
  o.commTimeout = std::chrono::milliseconds(int64_t(c.commTimeout * 1000));
  if (c.eos >= 0)
    o.eosId = uint32_t(c.eos);
  // A checkpoint-N of --hf-output keeps what --save writes in mtc-state/.
  if (!o.resumeDir.empty() && !std::filesystem::exists(o.resumeDir + "/trainer.json") &&
      std::filesystem::exists(o.resumeDir + "/mtc-state/trainer.json"))
    o.resumeDir += "/mtc-state";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"mtrun: run the training plan that `mtc compile -o plan/` wrote.\n"
               "One process per rank: --nproc N starts N local ranks; under torchrun,\n"
               "Slurm or OpenMPI each process reads its rank from the environment and\n"
               "the ranks meet at MASTER_ADDR:MASTER_PORT, where rank 0 serves the\n"
               "rendezvous over TCP (or in the directory MT_RENDEZVOUS).\n"
               "Backends: cpu (fp32 reference), cuda (one GPU per rank: LOCAL_RANK's)."};
  CommandLine c;
  addRunOptions(app, c);
  addOutputOptions(app, c);
  addControlOptions(app, c);
  // mtc train's train.sh gives these and passes the user's arguments after
  // its own: given twice, the last counts, as --resume does.
  for (const char *name : {"--seed", "--hf-output", "--save-steps", "--save-total-limit",
                           "--logging-steps", "--log-interval", "--max-shard-size",
                           "--export-dtype", "--tokenizer-dir", "--backend", "--load"})
    app.get_option(name)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  mt::tools::addVersionFlag(app, "mtrun");
  if (auto exitCode = mt::tools::parseCommandLine(app, argc, argv))
    return *exitCode;
  if (int code = finishOptions(c))
    return code;
  mt::exec::TrainOptions &o = c.o;
  if (c.check) {
    if (mt::Status s = mt::exec::checkRun(o, c.nproc); !s) {
      std::cerr << "error: " << s.message() << "\n";
      return 1;
    }
    return 0;
  }
  if (c.nproc > 0) {
    auto code = launchRanks(o, c.nproc, c.threadsPerRank, argc, argv);
    if (!code) {
      std::cerr << "error: " << code.message() << "\n";
      return 1;
    }
    return *code;
  }
  const bool reporter = [] {
    auto rank = mt::comm::rankFromEnvironment();
    return !rank || rank->rank == 0;
  }();
  // train.sh of mtc train passes --load and may carry --overwrite-output-dir;
  // with --resume the run continues the checkpoint (transformers' Trainer:
  // resume_from_checkpoint wins over the model's weights and
  // overwrite_output_dir), said once.
  if (!o.loadHf.empty() && !o.resumeDir.empty() && reporter)
    std::cerr << "note: with --resume the weights are the checkpoint's; --load gives only the "
                 "experts' spelling of the exports\n";
  if (o.hf.overwriteOutputDir && !o.resumeDir.empty()) {
    o.hf.overwriteOutputDir = false;
    if (reporter)
      std::cerr << "note: --overwrite-output-dir does nothing with --resume: the resumed run "
                   "keeps the checkpoints in --hf-output\n";
  }
  o.progressBar = isatty(STDERR_FILENO);
  auto summary = mt::exec::train(o, std::cerr);
  if (!summary) {
    std::cerr << "error: " << summary.message() << "\n";
    return 1;
  }
  // Rank 0 reports, whichever launcher (mtrun --nproc, torchrun, Slurm,
  // OpenMPI) set the rank; train() has already accepted the environment.
  if (!reporter)
    return 0;
  if (summary->steps == 0) { // a checkpoint exported as it is
    std::cout << "trained 0 steps: the checkpoint's weights were exported\n";
    return 0;
  }
  std::cout << "trained " << mt::countOf(summary->steps, "step") << " (" << summary->skipped
            << " skipped): loss " << summary->firstLoss << " -> " << summary->lastLoss
            << " (mean of the last " << mt::countOf(std::min<int64_t>(20, summary->steps), "step")
            << " " << summary->meanLastLosses << ")";
  if (!summary->endedEarly.empty())
    std::cout << "; ended early: " << summary->endedEarly;
  std::cout << "\n";
  return 0;
}
