// One optimizer step of a rank's training job: the batch into the inputs,
// the schedule's forward and backward passes, the step's loss, the
// optimizer; and the --dump-logits copy of the logits.
#include "runtime/exec/TrainingRun.h"

#include "runtime/exec/ContextParallelBatch.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/OpRegistry.h"

#include <charconv>
#include <string>

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

} // namespace

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

} // namespace mt::exec
