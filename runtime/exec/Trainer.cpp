// A rank's training job: setting it up from the plan, the data and the
// flags, the loop and its outputs (one step's passes: TrainingSteps.cpp).
#include "runtime/exec/Trainer.h"

#include "runtime/exec/Initialization.h"
#include "runtime/exec/Sharding.h"
#include "runtime/exec/TrainingRun.h"
#include "runtime/exec/Weights.h"
#include "runtime/support/OutputPath.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/CheckedMath.h"
#include "runtime/support/Wording.h"

#include <cmath>
#include <sstream>

namespace mt::exec {
namespace {

/// Each rank initializes its slice from the global element indices, so
/// every layout starts from the same full weights.
void initializeParameters(const plan::Plan &plan, HostMemory &memory, uint64_t seed,
                          const RankContext &rank) {
  for (const plan::Parameter &p : plan.parameters()) {
    if (!plan::stageHolds(p, rank.coordinate("pp")))
      continue;
    float *local = memory.f32(p.param_buffer());
    forEachSegment(p, splitCoordinates(p, &rank), [&](uint64_t l, uint64_t g, uint64_t n) {
      initializeRange(seed, p, g, local + l, n);
    });
  }
}

} // namespace

Status TrainingRun::loadPlan() {
  if (Status s = checkTrainOutputs(o_); !s)
    return s;
  auto loaded = plan::readPlanDirectory(o_.planDir);
  if (!loaded)
    return loaded.status();
  plan_ = std::move(*loaded);
  return Status::ok();
}

Status TrainingRun::settleRun() {
  std::optional<RunState> checkpoint;
  if (Status s = chooseSettings(checkpoint); !s)
    return s;
  if (Status s = openData(); !s)
    return s;
  return placeRun(checkpoint);
}

Status TrainingRun::checkAlone(int64_t ranks) {
  checkingAlone_ = true;
  if (Status s = loadPlan(); !s)
    return s;
  if (int64_t planRanks = plan::worldSize(plan_.mesh()); ranks > 0 && planRanks != ranks)
    return Status::error("--nproc " + std::to_string(ranks) + " starts " +
                         countOf(ranks, "rank") + ", but " + o_.planDir + " is a plan for " +
                         countOf(planRanks, "rank") + " (pp x dp x cp x tp; ep folds over "
                         "them); run `mtrun --nproc " + std::to_string(planRanks) +
                         "` or recompile the plan");
  // Without data (mtc train's check before its data step): the plan and
  // --load alone.
  if (!o_.dataPath.empty())
    if (Status s = settleRun(); !s)
      return s;
  // --load's tensors by their headers: a missing or mis-shaped one is
  // refused before the ranks start (and before mtc train keeps the run).
  if (o_.resumeDir.empty() && !o_.loadHf.empty())
    return checkHfWeights(plan_, o_.loadHf);
  return Status::ok();
}

Status TrainingRun::prepare() {
  if (Status s = loadPlan(); !s)
    return s;
  auto backend = chooseBackend(o_.backend, plan_, !o_.dumpLogits.empty());
  if (!backend)
    return backend.status();
  auto info = comm::rankFromEnvironment();
  if (!info)
    return info.status();
  auto rank = RankContext::create(plan_.mesh(), *info, o_.commTimeout, connectFor(*backend));
  if (!rank)
    return rank.status();
  rank_ = std::move(*rank);
  if (Status s = rank_->checkCollectiveGroups(plan_); !s)
    return s;
  if (Status s = settleRun(); !s)
    return s;
  bool pipelined = plan_.training().virtual_stages() > 1;
  if (pipelined && !o_.dumpLogits.empty())
    return Status::error("--dump-logits needs a plan without pipeline parallelism");
  if (!pipelined && !o_.timelinePath.empty())
    return Status::error("--timeline needs a pipeline-parallel plan (compile with --pp)");
  if (*backend == "cpu" && plan_.training().grad_reduce_in_bf16())
    return Status::error("the plan reduces the dp gradients in bf16 (grad_reduce_in_fp32: "
                         "false, mtc's --grad-reduce-in-bf16), which the CPU backend does not: "
                         "use --backend cuda, or compile the plan without it");
  if (*backend == "cuda" && !o_.dumpLogits.empty())
    return Status::error("--dump-logits reads the logits in host memory: use --backend cpu");
  if (*backend == "cuda" && !o_.timelinePath.empty())
    return Status::error("--timeline measures the stages on the host, and the CUDA backend "
                         "waits for pipeline transfers on the GPU: use --backend cpu");
  // A pipeline keeps each micro-batch in flight on this stage in a slot of
  // its own (the schedule's), reused once the micro-batch's last backward
  // has run.
  schedule_ = &plan_.schedule(int(pipelined ? rank_->coordinate("pp") : 0));
  auto memory = HostMemory::create(
      plan_, schedule_->activation_slots(),
      *backend == "cuda" ? HostMemory::Arenas::HostSide : HostMemory::Arenas::All,
      rank_->describe());
  if (!memory)
    return memory.status();
  memory_ = std::move(*memory);
  if (o_.profileComm && o_.profile)
    return Status::error("--profile and --profile-comm: give one (--profile waits for every "
                         "instruction, which hides no communication)");
  if (o_.profileComm && *backend != "cuda")
    return Status::error("--profile-comm times the CUDA backend's streams; this run uses "
                         "--backend " + *backend + " (give --backend cuda)");
  auto executor = createExecutor(*backend, plan_, *memory_, rank_.get(), o_);
  if (!executor && o_.backend == "auto" && *backend == "cuda")
    return Status::error(executor.message() + " (--backend auto chose the CUDA backend, as a "
                         "GPU is visible; --backend cpu runs this plan on the CPU backend)");
  if (!executor)
    return executor.status();
  executor_ = std::move(*executor);
  if (pipelined) {
    auto channels = executor_->openPipeline();
    if (!channels)
      return channels.status();
    pipeline_ = std::move(*channels);
  }
  log() << "backend: " << *backend << "\n";
  if (Status s = initializeWeights(); !s)
    return s;
  if (Status s = executor_->stateWritten(); !s)
    return s;
  // optimizer_offload: the host master weights start as the weights written.
  if (schedule_->has_master_weights_program())
    if (auto r = executor_->run(plan_.programs(int(schedule_->master_weights_program())).name());
        !r)
      return r.status();
  if (!o_.metricsPath.empty() && rank_->rank() == 0) {
    // A resumed run keeps the earlier lines up to its checkpoint's step.
    std::vector<std::string> kept;
    if (!o_.resumeDir.empty()) {
      auto upTo = metricsUpTo(o_.metricsPath, done_, checkpointLastLoss_, "--metrics");
      if (!upTo)
        return upTo.status();
      kept = std::move(*upTo);
    }
    return openMetrics(metrics_, o_.metricsPath, kept);
  }
  return Status::ok();
}

Status TrainingRun::chooseSettings(std::optional<RunState> &checkpoint) {
  if (o_.lr && !(*o_.lr > 0 && std::isfinite(*o_.lr)))
    return Status::error("--lr must be > 0, got " + std::to_string(*o_.lr));
  if (o_.lr && !fitsFp32(*o_.lr)) {
    std::ostringstream lr;
    lr << *o_.lr;
    return Status::error("--lr " + lr.str() + " " + kOutsideFp32);
  }
  if (o_.steps && *o_.steps < 1)
    return Status::error("--steps must be >= 1, got " + std::to_string(*o_.steps));
  if (o_.logInterval < 1)
    return Status::error("--log-interval must be >= 1, got " + std::to_string(o_.logInterval));
  if (o_.resumeDir.empty()) {
    settings_ = {o_.seed.value_or(RunSettings::kDefaultSeed), o_.eosId, o_.lr};
  } else {
    auto state = readCheckpointState(rank_.get(), o_.resumeDir);
    if (!state)
      return state.status();
    auto settings = resumedSettings({o_.seed, o_.eosId, o_.lr}, *state, o_.resumeDir);
    if (!settings)
      return settings.status();
    settings_ = *settings;
    checkpoint = std::move(*state);
  }
  if (settings_.peakLr)
    overrideLearningRate(plan_, *settings_.peakLr);
  return Status::ok();
}

void TrainingRun::noteReplacedCheckpoint() {
  // --save replaces what is there (its rule: a checkpoint of mtc); one of
  // another run is said, since nothing of this run's would bring it back.
  if (o_.saveDir.empty() || o_.saveDir == o_.resumeDir ||
      !std::filesystem::is_regular_file(o_.saveDir + "/trainer.json"))
    return;
  auto there = readRunState(o_.saveDir + "/trainer.json");
  if (!there)
    return;
  if (std::string diff = identityDifferences(there->identity, identity_); !diff.empty())
    log() << "note: --save " << o_.saveDir << " holds a checkpoint of another run (step "
          << there->step << "), which this run's first save replaces:" << diff << "\n";
}

Status TrainingRun::placeRun(const std::optional<RunState> &checkpoint) {
  identity_ = runIdentity(plan_, dataset_->tokenCount(), dataset_->fingerprint());
  if (checkpoint) {
    if (std::string diff = identityDifferences(checkpoint->identity, identity_); !diff.empty())
      return Status::error(
          o_.resumeDir + " is a checkpoint of another run than this plan on --data " +
          o_.dataPath + " (a checkpoint continues the same model, data, global batch and "
          "schedule, under any parallel layout; --load " + o_.resumeDir +
          " starts from its weights instead):" + diff);
    done_ = checkpoint->step;
    checkpointLastLoss_ = checkpoint->lastLoss;
    skipped_ = checkpoint->skippedSteps;
    skippedInARow_ = checkpoint->skippedInARow;
    // Format 2 also holds checkpoints of the offset already fixed, and
    // transformers' (hf_*) schedules never had it: a possibility, said so.
    auto style = identity_.find("lr_schedule.style");
    if (checkpoint->scheduleOneAhead &&
        (style == identity_.end() || style->second.find("hf_") == std::string::npos))
      log() << "note: " << o_.resumeDir << " is a checkpoint of format 2: if the mtrun that "
            << "wrote it predates Megatron-Core's schedule offset (update k at the rate after "
            << "k - 1 updates), its updates ran one step ahead, and this run's first update "
            << "repeats the rate of the checkpoint's last\n";
  }
  noteReplacedCheckpoint();
  last_ = o_.steps.value_or(plan_.training().train_steps());
  if (last_ < 1)
    return Status::error("the plan's train_steps is " + std::to_string(last_) +
                         ": give --steps");
  if (std::string note = pastScheduleNote(plan_, last_); !note.empty() && last_ > done_)
    log() << "note: " << note << "\n";
  if (last_ > done_)
    return Status::ok();
  // A finished run's checkpoint exported as it is (another dtype, say):
  // no step, so no weight changes.
  if (last_ == done_ && !o_.exportHf.empty()) {
    log() << "note: the checkpoint " << o_.resumeDir << " is at step " << done_
          << ", where the run ends: nothing to train; --export-hf writes its weights\n";
    return Status::ok();
  }
  std::string after = "the checkpoint " + o_.resumeDir + " is already after step " +
                      std::to_string(done_);
  if (o_.steps)
    return Status::error("--steps " + std::to_string(last_) + " ends the run at step " +
                         std::to_string(last_) + ", but " + after + " (--steps counts from "
                         "the start of the run, not from the checkpoint): give --steps > " +
                         std::to_string(done_));
  return Status::error(after + ", the end of the plan's schedule (train_steps " +
                       std::to_string(last_) + "): nothing to run; --steps N > " +
                       std::to_string(done_) + " trains on past it at the schedule's final "
                       "learning rate");
}

RunState TrainingRun::stateAfter(int64_t step) const {
  return {step,     step * plan_.training().global_batch(), skipped_, skippedInARow_,
          settings_, identity_, lastLoss_};
}

Status TrainingRun::openData() {
  if (o_.dataPath.empty())
    return Status::error("--data is required: a token file (see `mt-tokenize --help`) or "
                         "prepared SFT data (see `mt-prepare-sft --help`)");
  uint64_t modelVocab = uint64_t(plan_.training().vocab_size());
  io::DatasetOptions options;
  options.seqLen = plan_.training().seq();
  options.seed = settings_.seed;
  options.eosId = settings_.eosId;
  options.checkEveryId = !checkingAlone_; // the ranks scan the ids
  // The dataset's errors start with its path: the option goes before it.
  auto dataset = io::Dataset::open(o_.dataPath, options, modelVocab);
  if (!dataset)
    return Status::error("--data " + dataset.status().message());
  // Attention over packed documents needs the documents' boundaries, and
  // data that has them must not be trained across them.
  if (plan_.bindings().has_position_ids() != dataset->hasPositionIds())
    return Status::error(
        "--data " + o_.dataPath + (dataset->hasPositionIds()
                           ? ": the data packs documents with position ids (neat_packing), "
                             "but the plan was compiled without them: import the model with "
                             "--neat-packing (mtc train does) and compile again"
                           : ": the plan takes position ids (compiled for neat_packing), but "
                             "the data has none: prepare it with neat_packing"));
  dataset_ = std::make_unique<io::Dataset>(std::move(*dataset));
  return Status::ok();
}

Status TrainingRun::initializeWeights() {
  if (!o_.resumeDir.empty()) {
    if (Status s = loadCheckpoint(plan_, *memory_, rank_.get(), o_.resumeDir); !s)
      return s;
    // The weights are the checkpoint's; --load still names the spelling
    // the exports keep.
    if (!o_.loadHf.empty()) {
      auto layout = hfExpertLayout(o_.loadHf);
      if (!layout)
        return layout.status();
      expertLayout_ = *layout;
    }
    log() << "resumed from " << o_.resumeDir << " after step " << done_ << " (seed "
          << settings_.seed << ", " << done_ * plan_.training().global_batch()
          << " samples read); running to step " << last_ << "\n";
  } else if (!o_.loadHf.empty()) {
    if (Status s = loadHfWeights(plan_, *memory_, rank_.get(), o_.loadHf, &expertLayout_); !s)
      return s;
    log() << "loaded weights from " << o_.loadHf << "\n";
    if (std::string note = loadedConfigNote(plan_, o_.loadHf); !note.empty())
      log() << "note: " << note << "\n";
  } else {
    initializeParameters(plan_, *memory_, settings_.seed, *rank_);
  }
  return Status::ok();
}

Expected<std::optional<HfRunOutputs>> TrainingRun::openHfOutputs() {
  // A checkpoint exported as it is (no step): --hf-output's log, final model
  // and checkpoints stay as the run left them.
  if (o_.hf.outputDir.empty() || last_ == done_)
    return std::optional<HfRunOutputs>();
  if (o_.hf.overwriteOutputDir && o_.resumeDir.empty() && rank_->rank() == 0) {
    auto removed = removeEarlierCheckpoints(o_.hf.outputDir);
    if (!removed)
      return removed.status();
    for (const std::string &name :
         removeEarlierFinalModel(o_.hf.outputDir, {o_.loadHf, o_.hf.tokenizerDir}))
      removed->push_back(name);
    if (!removed->empty()) {
      log() << "overwrite_output_dir: removed the earlier run's";
      for (const std::string &name : *removed)
        log() << " " << name;
      log() << " from " << o_.hf.outputDir << "\n";
    }
  }
  HfOutputOptions options = o_.hf;
  options.samplesPerEpoch = dataset_->numSamples();
  options.microBatch = plan_.training().micro_batch();
  options.exportDtype = o_.exportDtype;
  auto opened = HfRunOutputs::open(options, o_.resumeDir, done_,
                                   plan_.training().global_batch(), last_, rank_->rank() == 0);
  if (!opened)
    return opened.status();
  return std::optional<HfRunOutputs>(std::move(*opened));
}

Status TrainingRun::recordStep(const StepRecord &rec, Progress &p,
                               std::optional<HfRunOutputs> &hf, bool ending) {
  const int64_t s = rec.step;
  p.summary.skipped += rec.skipped;
  skipped_ += rec.skipped;
  skippedInARow_ = rec.skipped ? skippedInARow_ + 1 : 0;
  if (s == done_ + 1)
    p.summary.firstLoss = rec.loss.loss;
  p.summary.lastLoss = rec.loss.loss;
  lastLoss_ = std::isfinite(rec.loss.loss) ? std::optional<double>(rec.loss.loss) : std::nullopt;
  p.recent.push_back(rec.loss.loss);
  if (p.recent.size() > 20)
    p.recent.pop_front();
  if (metrics_.is_open()) {
    writeMetrics(metrics_, rec, plan_.training().global_batch() * plan_.training().seq());
    if (!metrics_) // a full disk: the record would be lost silently
      return Status::error("--metrics " + o_.metricsPath + ": cannot write step " +
                           std::to_string(s) + "'s line (disk full?)");
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - p.started).count();
  double eta = elapsed / double(s - done_) * double(last_ - s);
  if (hf)
    if (Status st = hf->logStep({s, rec.loss.loss, rec.gradNorm, rec.lr, elapsed, s - done_}); !st)
      return st;
  if (o_.progressBar || rec.skipped || ending || s == done_ + 1 || s % o_.logInterval == 0)
    report(log(), rec, last_, eta, o_.progressBar);
  if (skippedInARow_ >= o_.maxSkippedSteps)
    return Status::error(countOf(skippedInARow_, "step") + " in a row " +
                         (skippedInARow_ == 1 ? "was" : "were") +
                         " skipped (gradient norm not finite); stopping at step " +
                         std::to_string(s));
  return Status::ok();
}

Expected<TrainSummary> TrainingRun::run(StopSignals &signals, const ExitWatch &watch) {
  signals_ = &signals;
  Progress progress;
  progress.started = Clock::now();
  auto hf = openHfOutputs();
  if (!hf)
    return hf.status();
  const ExitOptions &exit = o_.exit;
  if ((exit.signalHandler || exit.durationMinutes > 0 || exit.interval > 0) &&
      o_.saveDir.empty() && !*hf)
    log() << "note: the run may end early (--exit-*), and nothing would be saved there: give "
             "--save DIR to continue it with --resume\n";
  ExitReason ended;
  int64_t s = done_ + 1;
  for (; s <= last_; ++s) {
    signals.stepStarted(s, last_);
    auto rec = step(s);
    if (!rec)
      return rec.status();
    if (s < last_) {
      auto reason = watch.check(s, rank_->world());
      if (!reason)
        return reason.status();
      ended = *reason;
    }
    if (Status st = recordStep(*rec, progress, *hf, s == last_ || bool(ended)); !st)
      return st;
    if (Status st = saveCheckpoints(s, *hf, bool(ended)); !st)
      return st;
    if (ended) {
      reportEarlyEnd(s, ended);
      progress.summary.endedEarly = ended.text;
      break;
    }
  }
  TrainSummary &summary = progress.summary;
  summary.steps = std::min(s, last_) - done_;
  for (double l : progress.recent)
    summary.meanLastLosses += l / double(progress.recent.size());
  if (Status st = finishRun(*hf, ended); !st)
    return st;
  return summary;
}

Status TrainingRun::saveCheckpoints(int64_t s, std::optional<HfRunOutputs> &hf, bool ending) {
  const bool atEnd = ending || s == last_;
  const bool save = !o_.saveDir.empty() && (atEnd || (o_.saveEvery > 0 && s % o_.saveEvery == 0));
  const bool hfSave = hf && (atEnd || hf->saveDue(s)); // transformers saves at the end too
  if (!save && !hfSave)
    return Status::ok();
  signals_->saving(s);
  if (Status st = readStateAfter(s); !st)
    return st;
  if (save) {
    if (Status st = saveCheckpoint(plan_, *memory_, rank_.get(), o_.saveDir, stateAfter(s)); !st)
      return st;
    log() << "saved the checkpoint of step " << s << " to " << o_.saveDir << "\n";
  }
  if (hfSave)
    if (Status st = hf->saveCheckpoint(plan_, *memory_, rank_.get(), stateAfter(s)); !st)
      return st;
  signals_->saved(s);
  return Status::ok();
}

void TrainingRun::reportEarlyEnd(int64_t s, const ExitReason &reason) {
  std::ostream &out = log();
  out << "ended after step " << s << " of " << last_ << ": " << reason.text;
  if (!o_.saveDir.empty())
    out << "; continue with --resume " << o_.saveDir;
  else if (!o_.hf.outputDir.empty())
    out << "; continue with --resume " << o_.hf.outputDir << "/checkpoint-" << s
        << " (mtc train: resume_from_checkpoint: true)";
  else
    out << "; no checkpoint was saved (--save DIR keeps the run's state)";
  if (!o_.exportHf.empty())
    out << "; --export-hf " << o_.exportHf << " is written when the run reaches step " << last_;
  out << "\n";
}

Status TrainingRun::finishRun(std::optional<HfRunOutputs> &hf, const ExitReason &ended) {
  log() << executor_->profileReport();
  if (!o_.timelinePath.empty()) {
    auto line = timeline_.publish(*rank_, plan_, o_.timelinePath);
    if (!line)
      return line.status();
    if (!line->empty())
      log() << *line << "\n";
  }
  if (ended)
    return Status::ok();
  if (!o_.exportHf.empty()) {
    if (Status st = readStateAfter(last_); !st)
      return st;
    if (Status st = exportHf(plan_, *memory_, rank_.get(), o_.exportHf, expertLayout_,
                             o_.exportDtype);
        !st)
      return st;
    log() << "wrote the Hugging Face model (config.json, safetensors) to " << o_.exportHf
          << "\n";
  }
  if (hf)
    if (Status st = hf->finish(plan_, *memory_, rank_.get(), last_); !st)
      return st;
  return Status::ok();
}

Status checkTrainOutputs(const TrainOptions &o) {
  using io::OutputKind;
  if (Status s = checkNewRunOutputDir(o.hf, o.resumeDir); !s)
    return s;
  return io::checkOutputs({{"--metrics", o.metricsPath, OutputKind::Metrics},
                           {"--save", o.saveDir, OutputKind::Checkpoint},
                           {"--export-hf", o.exportHf, OutputKind::HfExport},
                           {"--dump-logits", o.dumpLogits, OutputKind::LogitsDump},
                           {"--timeline", o.timelinePath, OutputKind::PipelineSvg}},
                          {{"the plan", o.planDir},
                           {"--data", o.dataPath},
                           {"--load", o.loadHf},
                           {"--resume", o.resumeDir, OutputKind::Checkpoint}},
                          o.overwrite);
}

Status checkRun(const TrainOptions &options, int64_t ranks) {
  NullStream quiet;
  return TrainingRun(options, quiet).checkAlone(ranks);
}

Expected<TrainSummary> train(const TrainOptions &options, std::ostream &log) {
  auto rank = comm::rankFromEnvironment();
  StopSignals signals(options.exit.signalHandler, !rank || rank->rank == 0);
  // The duration counts from here, setup included, as Megatron-LM's
  // exit_duration_in_mins counts from pretrain()'s start.
  ExitWatch watch(options.exit, signals);
  TrainingRun run(options, log);
  if (Status s = run.prepare(); !s)
    return s;
  return run.run(signals, watch);
}

} // namespace mt::exec
