// The training loop of both backends (the executor and its pipeline channels
// come from the backend).
#include "runtime/exec/Trainer.h"

#include "runtime/exec/Backends.h"
#include "runtime/exec/ContextParallelBatch.h"
#include "runtime/exec/Initialization.h"
#include "runtime/exec/PipelineChannels.h"
#include "runtime/exec/PipelineTimeline.h"
#include "runtime/exec/Sharding.h"
#include "runtime/exec/StepReport.h"
#include "runtime/exec/Weights.h"
#include "runtime/io/Dataset.h"
#include "runtime/support/OutputPath.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/CheckedMath.h"
#include "runtime/support/Wording.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <optional>
#include <sstream>

namespace mt::exec {
namespace {

/// The fp32 `f` as the double its shortest decimal reads as (0.003f gives
/// 0.003, not 0.003000000026): the learning rate the logs and
/// trainer_state.json show is the one the schedule was given.
double shortestDecimal(float f) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, f).ptr;
  return std::strtod(std::string(text, end).c_str(), nullptr);
}

using Clock = std::chrono::steady_clock;

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
  last_ = o_.steps.value_or(plan_.training().train_steps());
  if (last_ < 1)
    return Status::error("the plan's train_steps is " + std::to_string(last_) +
                         ": give --steps");
  if (std::string note = pastScheduleNote(plan_, last_); !note.empty() && last_ > done_)
    log() << "note: " << note << "\n";
  if (last_ > done_)
    return Status::ok();
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
  auto dataset = io::Dataset::open(o_.dataPath, options, modelVocab);
  if (!dataset)
    return dataset.status();
  // Attention over packed documents needs the documents' boundaries, and
  // data that has them must not be trained across them.
  if (plan_.bindings().has_position_ids() != dataset->hasPositionIds())
    return Status::error(
        o_.dataPath + (dataset->hasPositionIds()
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

std::function<void(int)> TrainingRun::logitsDumper() {
  const plan::Program &program = plan_.programs(0);
  return [this, &program](int i) {
    const plan::Instruction &instr = program.instructions(i);
    if (!plan::isOp(instr, plan::Op::cross_entropy))
      return;
    uint32_t id = instr.inputs(0);
    const float *data = memory_->f32(id);
    logits_.assign(data, data + memory_->elements(id));
    const plan::Buffer &b = plan_.buffers(id);
    logitsShape_.assign(b.shape().begin(), b.shape().end());
  };
}

Status TrainingRun::writeLogits() {
  if (rank_->axisSize("tp") > 1)
    return Status::error("--dump-logits needs a plan without tensor parallelism (each tp "
                         "rank holds a slice of the vocabulary)");
  if (rank_->axisSize("cp") > 1)
    return Status::error("--dump-logits needs a plan without context parallelism (each cp "
                         "rank holds two chunks of the sequence)");
  if (rank_->rank() != 0)
    return Status::ok();
  const plan::Bindings &b = plan_.bindings();
  std::vector<float> ids(memory_->elements(b.input_ids()));
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = float(memory_->i32(b.input_ids())[i]);
  const plan::Buffer &idBuffer = plan_.buffers(b.input_ids());
  std::vector<int64_t> idShape(idBuffer.shape().begin(), idBuffer.shape().end());
  return io::writeSafetensors(o_.dumpLogits,
                              {{"logits", io::Dtype::F32, logitsShape_, logits_.data()},
                               {"input_ids", io::Dtype::F32, idShape, ids.data()}},
                              {{"step", std::to_string(done_ + 1)}, {"micro_batch", "0"}});
}

Status TrainingRun::fillInputs(int64_t step, int64_t micro) {
  const plan::Training &t = plan_.training();
  const plan::Bindings &b = plan_.bindings();
  HostMemory &m = *memory_;
  size_t rows = size_t(t.micro_batch() * t.seq());
  io::BatchLayout layout{t.micro_batch(), t.micro_batches_per_step(), rank_->axisSize("dp")};
  io::BatchCoord coord{step - 1, micro, rank_->coordinate("dp")};
  *m.f32(b.loss_scale()) = float(plan_.step_loss().loss_scale());
  if (rank_->axisSize("cp") > 1) {
    // The rank's chunks of the sequence (its loss is its share of the
    // micro-batch's: the plan weighs it, mt-partition-cp).
    size_t local = size_t(t.micro_batch() * t.seq() / rank_->axisSize("cp"));
    std::span<int32_t> positions;
    if (b.has_position_ids())
      positions = {m.i32(b.position_ids()), local};
    if (Status s = fillContextParallelBatch(
            *dataset_, layout, coord, t.seq(), {rank_->coordinate("cp"), rank_->axisSize("cp")},
            {m.i32(b.input_ids()), local}, {m.i32(b.labels()), local},
            {m.f32(b.loss_mask()), local}, positions);
        !s)
      return s;
    return executor_->inputsWritten();
  }
  std::span<int32_t> positions;
  if (b.has_position_ids())
    positions = {m.i32(b.position_ids()), rows};
  if (Status s = dataset_->fillBatch(layout, coord, {m.i32(b.input_ids()), rows},
                                     {m.i32(b.labels()), rows}, {m.f32(b.loss_mask()), rows},
                                     positions);
      !s)
    return s;
  return executor_->inputsWritten();
}

Expected<TrainingRun::StepSums> TrainingRun::microBatchPasses(int64_t step) {
  StepSums sums;
  if (pipeline_)
    timeline_.beginStep(step);
  for (int i = 0; i + 1 < schedule_->actions_size(); ++i) { // the last: the optimizer
    const plan::Action &a = schedule_->actions(i);
    memory_->setSlot(a.slot());
    if (a.load_inputs())
      if (Status s = fillInputs(step, a.micro_batch()); !s)
        return s;
    executor_->setPipeline(pipeline_.get(), a.micro_batch());
    const std::string &program = plan_.programs(int(a.program())).name();
    bool dump = !o_.dumpLogits.empty() && step == done_ + 1 && a.micro_batch() == 0;
    auto started = Clock::now();
    auto received = pipeline_ ? pipeline_->receiveTime() : Clock::duration{};
    if (auto r = executor_->run(program, dump ? logitsDumper() : nullptr); !r)
      return r.status();
    if (pipeline_) // the program's receives come first
      timeline_.record(started, started + (pipeline_->receiveTime() - received), Clock::now());
    if (dump)
      if (Status s = writeLogits(); !s)
        return s;
    if (!a.adds_loss())
      continue;
    const plan::Bindings &b = plan_.bindings();
    const double weight = plan_.step_loss().micro_batch_weight();
    sums.loss += *memory_->f32(b.loss()) * weight;
    if (plan_.step_loss().per_token_loss())
      sums.tokens += *memory_->f32(b.num_tokens());
    if (b.has_lm_loss()) {
      sums.lm += *memory_->f32(b.lm_loss()) * weight;
      sums.aux += *memory_->f32(b.aux_loss()) * weight;
      if (b.has_z_loss())
        sums.z += *memory_->f32(b.z_loss()) * weight;
    }
  }
  if (pipeline_)
    if (Status s = pipeline_->flush(); !s)
      return s;
  memory_->setSlot(0);
  return sums;
}

Expected<StepLoss> TrainingRun::reduceLoss(int64_t step, StepSums sums) {
  const plan::StepLoss &rule = plan_.step_loss();
  const bool terms = plan_.bindings().has_lm_loss();
  // The terms reduce as the loss does, in the same all-reduce.
  const int count = plan_.bindings().has_z_loss() ? 5 : terms ? 4 : rule.per_token_loss() ? 2 : 1;
  for (const plan::StepLoss::Reduction &r : rule.reductions()) {
    comm::Communicator *group = rank_->group(r.axis());
    if (!group) // an axis of size 1
      continue;
    float all[5] = {float(sums.loss), float(sums.tokens), float(sums.lm), float(sums.aux),
                    float(sums.z)};
    if (Status s = group->allReduceHost(all, count, comm::ReduceOp::Sum); !s)
      return Status::error(rank_->describe() + " step " + std::to_string(step) + ", the loss's " +
                           r.reduce() + " over " + r.axis() + ": " + s.message());
    const double n = r.reduce() == "mean" ? double(group->size()) : 1.0;
    sums = {double(all[0]) / n, double(all[1]) / n, double(all[2]) / n, double(all[3]) / n,
            double(all[4]) / n};
  }
  // Per token: each a sum over the step's loss tokens, divided by them.
  auto value = [&](double sum) {
    if (!rule.per_token_loss())
      return sum;
    return sums.tokens == 0 ? 0.0 : sum / sums.tokens;
  };
  StepLoss loss{value(sums.loss), std::nullopt, std::nullopt, std::nullopt};
  if (terms)
    loss.lmLoss = value(sums.lm), loss.auxLoss = value(sums.aux);
  if (plan_.bindings().has_z_loss())
    loss.zLoss = value(sums.z);
  return loss;
}

Expected<StepRecord> TrainingRun::step(int64_t step) {
  const plan::Training &t = plan_.training();
  const plan::Bindings &b = plan_.bindings();
  HostMemory &m = *memory_;
  auto start = Clock::now();
  if (Status s = executor_->clearGradients(); !s)
    return s;
  auto passes = microBatchPasses(step);
  if (!passes)
    return passes.status();
  auto loss = reduceLoss(step, *passes);
  if (!loss)
    return loss.status();
  // The optimizer's step counts updates, as Megatron-Core's scheduler and
  // torch's AdamW do: a skipped step advances neither the schedule nor the
  // bias correction.
  *m.i64(b.step()) = step - skipped_;
  if (Status s = executor_->inputsWritten(); !s)
    return s;
  const plan::Action &optimizer = schedule_->actions(schedule_->actions_size() - 1);
  auto r = executor_->run(plan_.programs(int(optimizer.program())).name());
  if (!r)
    return r.status();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return StepRecord{step, *loss, *m.f32(b.grad_norm()),
                    r->skipped ? 0.0 : shortestDecimal(*m.f32(b.learning_rate())),
                    double(t.global_batch() * t.seq()) / seconds, r->skipped, r->skipReason};
}

Expected<std::optional<HfRunOutputs>> TrainingRun::openHfOutputs() {
  if (o_.hf.outputDir.empty())
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

} // namespace

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
