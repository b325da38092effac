// The CPU training loop.
#include "runtime/exec/Trainer.h"

#include "runtime/cpu/CpuExecutor.h"
#include "runtime/exec/Initialization.h"
#include "runtime/exec/Sharding.h"
#include "runtime/exec/Weights.h"
#include "runtime/io/Dataset.h"
#include "runtime/plan/PlanIO.h"

#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <iomanip>

namespace mt::exec {
namespace {

using Clock = std::chrono::steady_clock;

void overrideLearningRate(plan::Plan &plan, double lr) {
  for (auto &program : *plan.mutable_programs())
    for (auto &instr : *program.mutable_instructions()) {
      if (instr.op() != "lr_schedule")
        continue;
      double oldMax = plan::Attrs(instr).f("max_lr");
      for (auto &a : *instr.mutable_attributes()) {
        if (a.name() == "max_lr")
          a.set_f(lr);
        else if (a.name() == "min_lr" && oldMax > 0)
          a.set_f(a.f() * lr / oldMax); // keep the schedule's min/max ratio
      }
    }
}

/// Each rank initializes its slice from the global element indices, so
/// every layout starts from the same full weights.
void initializeParameters(const plan::Plan &plan, HostMemory &memory, uint64_t seed,
                          const RankContext &rank) {
  for (const plan::Parameter &p : plan.parameters()) {
    float *local = memory.f32(p.param_buffer());
    int64_t shard = p.sharded() ? rank.coordinate(p.shard_axis()) : 0;
    forEachSegment(p, shard, [&](uint64_t l, uint64_t g, uint64_t n) {
      initializeRange(seed, p, g, local + l, n);
    });
  }
}

/// Discards what non-zero ranks would print.
struct NullStream : std::ostream {
  NullStream() : std::ostream(nullptr) {}
};

struct StepRecord {
  int64_t step;
  double loss, gradNorm, lr, tokensPerSecond;
  bool skipped;
  std::string skipReason;
};

void writeMetrics(std::ofstream &out, const StepRecord &r, int64_t tokens) {
  out << std::setprecision(9) << "{\"step\": " << r.step << ", \"loss\": " << r.loss
      << ", \"grad_norm\": " << (std::isfinite(r.gradNorm) ? r.gradNorm : -1.0)
      << ", \"lr\": " << r.lr << ", \"tokens\": " << tokens
      << ", \"tokens_per_s\": " << std::setprecision(6) << r.tokensPerSecond
      << ", \"skipped\": " << (r.skipped ? "true" : "false") << "}\n";
  out.flush();
}

void report(std::ostream &log, const StepRecord &r, int64_t last, double etaSeconds,
            bool bar) {
  std::ostringstream line;
  line << "step " << r.step << "/" << last << "  loss " << std::fixed << std::setprecision(4)
       << r.loss << "  grad_norm " << std::setprecision(3) << r.gradNorm << "  lr "
       << std::scientific << std::setprecision(2) << r.lr << std::fixed << "  "
       << std::setprecision(0) << r.tokensPerSecond << " tok/s  ETA "
       << std::setprecision(0) << etaSeconds << " s";
  if (r.skipped)
    line << "  SKIPPED (" << r.skipReason << ")";
  if (bar) {
    int width = 24, done = int(width * double(r.step) / double(last));
    log << "\r[" << std::string(done, '#') << std::string(width - done, '.') << "] "
        << line.str() << "   " << std::flush;
    if (r.step == last)
      log << "\n";
  } else {
    log << line.str() << "\n";
  }
}

} // namespace

Expected<TrainSummary> train(const TrainOptions &o, std::ostream &rankZeroLog) {
  auto loaded = plan::readPlanDirectory(o.planDir);
  if (!loaded)
    return loaded.status();
  plan::Plan plan = std::move(*loaded);
  auto info = comm::rankFromEnvironment();
  if (!info)
    return info.status();
  auto rankOr = RankContext::create(plan.mesh(), *info, o.commTimeout);
  if (!rankOr)
    return rankOr.status();
  const RankContext &rank = **rankOr;
  NullStream quiet;
  std::ostream &log = rank.rank() == 0 ? rankZeroLog : quiet;
  if (o.lr) {
    if (!(*o.lr > 0))
      return Status::error("--lr must be > 0, got " + std::to_string(*o.lr));
    overrideLearningRate(plan, *o.lr);
  }
  const plan::Training &t = plan.training();
  int64_t steps = o.steps.value_or(t.train_steps());
  if (steps < 1)
    return Status::error("--steps must be >= 1, got " + std::to_string(steps));
  if (o.dataPath.empty())
    return Status::error("--data is required: a token file (see `mt-tokenize --help`)");
  auto file = io::openTokenFile(o.dataPath);
  if (!file)
    return file.status();
  if (Status s = io::checkTokenIds(*file, uint64_t(t.vocab_size())); !s)
    return s;
  io::DatasetOptions dataOptions;
  dataOptions.seqLen = t.seq();
  dataOptions.seed = o.seed;
  dataOptions.eosId = o.eosId;
  auto dataset = io::Dataset::create(std::move(*file), dataOptions);
  if (!dataset)
    return dataset.status();

  HostMemory memory(plan);
  auto executor = cpu::CpuExecutor::create(plan, memory, &rank);
  if (!executor)
    return executor.status();
  int64_t done = 0;
  if (!o.resumeDir.empty()) {
    auto state = loadCheckpoint(plan, memory, &rank, o.resumeDir);
    if (!state)
      return state.status();
    done = state->step;
    log << "resumed from " << o.resumeDir << " after step " << done << "\n";
  } else if (!o.loadHf.empty()) {
    if (Status s = loadHfWeights(plan, memory, &rank, o.loadHf); !s)
      return s;
    log << "loaded weights from " << o.loadHf << "\n";
  } else {
    initializeParameters(plan, memory, o.seed, rank);
  }

  std::ofstream metrics;
  if (!o.metricsPath.empty() && rank.rank() == 0) {
    metrics.open(o.metricsPath, std::ios::trunc);
    if (!metrics)
      return Status::error(o.metricsPath + ": cannot write the metrics file");
  }
  const plan::Bindings &b = plan.bindings();
  int64_t microBatches = t.micro_batches_per_step(), tokens = t.global_batch() * t.seq();
  int64_t dpSize = rank.axisSize("dp"), dpRank = rank.coordinate("dp");
  comm::Communicator *dpGroup = rank.group("dp");
  io::BatchLayout layout{t.micro_batch(), microBatches, dpSize};
  int64_t rows = t.micro_batch() * t.seq();
  TrainSummary summary;
  std::deque<double> recent;
  auto started = Clock::now();
  int64_t skippedInARow = 0;
  int64_t last = done + steps;
  for (int64_t step = done + 1; step <= last; ++step) {
    auto stepStart = Clock::now();
    memory.clear(plan::GRADIENTS);
    double loss = 0;
    for (int64_t micro = 0; micro < microBatches; ++micro) {
      io::BatchCoord coord{step - 1, micro, dpRank};
      if (Status s = dataset->fillBatch(
              layout, coord, {memory.i32(b.input_ids()), size_t(rows)},
              {memory.i32(b.labels()), size_t(rows)}, {memory.f32(b.loss_mask()), size_t(rows)});
          !s)
        return s;
      *memory.f32(b.loss_scale()) = float(1.0 / double(microBatches));
      auto r = executor->run("forward_backward");
      if (!r)
        return r.status();
      loss += *memory.f32(b.loss()) / double(microBatches);
    }
    if (dpGroup) { // the step's loss is the mean over data-parallel ranks
      float sum = float(loss);
      if (Status s = dpGroup->allReduce(&sum, 1, comm::ReduceOp::Sum); !s)
        return s;
      loss = double(sum) / double(dpSize);
    }
    *memory.i64(b.step()) = step;
    auto r = executor->run("optimizer_step");
    if (!r)
      return r.status();
    double seconds = std::chrono::duration<double>(Clock::now() - stepStart).count();
    StepRecord rec{step, loss, *memory.f32(b.grad_norm()),
                   r->skipped ? 0.0 : *memory.f32(b.learning_rate()),
                   double(tokens) / seconds, r->skipped, r->skipReason};
    summary.skipped += r->skipped;
    skippedInARow = r->skipped ? skippedInARow + 1 : 0;
    if (step == done + 1)
      summary.firstLoss = loss;
    summary.lastLoss = loss;
    recent.push_back(loss);
    if (recent.size() > 20)
      recent.pop_front();
    if (metrics.is_open())
      writeMetrics(metrics, rec, tokens);
    double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    double eta = elapsed / double(step - done) * double(last - step);
    if (o.progressBar || r->skipped || step == last || (step - done) % 10 == 1)
      report(log, rec, last, eta, o.progressBar);
    if (skippedInARow >= o.maxSkippedSteps)
      return Status::error(std::to_string(skippedInARow) + " steps in a row were skipped "
                           "(gradient norm not finite); stopping at step " +
                           std::to_string(step));
    if (!o.saveDir.empty() && o.saveEvery > 0 && step % o.saveEvery == 0)
      if (Status s = saveCheckpoint(plan, memory, &rank, o.saveDir, {step, o.seed}); !s)
        return s;
  }
  summary.steps = steps;
  for (double l : recent)
    summary.meanLastLosses += l / double(recent.size());
  if (!o.saveDir.empty() && (o.saveEvery <= 0 || last % o.saveEvery != 0))
    if (Status s = saveCheckpoint(plan, memory, &rank, o.saveDir, {last, o.seed}); !s)
      return s;
  if (!o.exportHf.empty())
    if (Status s = exportHf(plan, memory, &rank, o.exportHf); !s)
      return s;
  return summary;
}

} // namespace mt::exec
