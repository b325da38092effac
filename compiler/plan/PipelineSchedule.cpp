// 1F1B and interleaved 1F1B schedules and their activation slots.
#include "compiler/plan/PipelineSchedule.h"

#include <algorithm>
#include <map>
#include <string>

namespace mt {
namespace {

/// Megatron-Core's interleaved order: the k-th forward (or backward) of a
/// stage runs chunk (k / pp) % vpp (reversed for backward) of micro-batch
/// (k / (pp·vpp))·pp + k % pp.
PipelineAction virtualAction(int64_t k, bool forward, int64_t pp, int64_t vpp) {
  int64_t chunk = (k / pp) % vpp;
  if (!forward)
    chunk = vpp - 1 - chunk;
  return {forward, (k / (pp * vpp)) * pp + k % pp, chunk};
}

} // namespace

std::vector<std::vector<PipelineAction>> pipelineSchedule(int64_t pp, int64_t vpp,
                                                          int64_t microBatches) {
  std::vector<std::vector<PipelineAction>> stages(pp);
  int64_t total = microBatches * vpp;
  for (int64_t s = 0; s < pp; ++s) {
    int64_t warmup = vpp == 1 ? pp - s - 1 : (pp - s - 1) * 2 + (vpp - 1) * pp;
    warmup = std::min(warmup, total);
    auto &out = stages[s];
    int64_t f = 0, b = 0;
    for (; f < warmup; ++f)
      out.push_back(virtualAction(f, true, pp, vpp));
    while (f < total) { // steady state: one forward, one backward
      out.push_back(virtualAction(f++, true, pp, vpp));
      out.push_back(virtualAction(b++, false, pp, vpp));
    }
    while (b < total)
      out.push_back(virtualAction(b++, false, pp, vpp));
  }
  return stages;
}

std::vector<int64_t> activationSlots(const std::vector<PipelineAction> &stage,
                                     int64_t microBatches, int64_t &count) {
  std::vector<int64_t> first(microBatches, -1), last(microBatches, -1);
  for (size_t i = 0; i < stage.size(); ++i) {
    int64_t m = stage[i].microBatch;
    if (first[m] < 0)
      first[m] = int64_t(i);
    last[m] = int64_t(i);
  }
  std::vector<int64_t> slot(microBatches, 0);
  std::vector<bool> busy;
  count = 0;
  for (size_t i = 0; i < stage.size(); ++i) {
    int64_t m = stage[i].microBatch;
    if (first[m] == int64_t(i)) { // the lowest free slot
      int64_t s = 0;
      while (s < int64_t(busy.size()) && busy[s])
        ++s;
      if (s == int64_t(busy.size()))
        busy.push_back(false);
      busy[s] = true;
      slot[m] = s;
      count = std::max(count, int64_t(busy.size()));
    }
    if (last[m] == int64_t(i))
      busy[slot[m]] = false;
  }
  return slot;
}

namespace {

/// Appends an action running the program `name`; an error when the plan
/// has none of that name.
Status appendAction(plan::StageSchedule &stage, const std::map<std::string, uint32_t> &programs,
                    plan::Action::Kind kind, const std::string &name, int64_t microBatch,
                    int32_t virtualStage, int32_t slot) {
  auto it = programs.find(name);
  if (it == programs.end())
    return Status::error("the plan has no program '" + name + "' for its schedule");
  plan::Action &a = *stage.add_actions();
  a.set_kind(kind);
  a.set_program(it->second);
  a.set_micro_batch(microBatch);
  a.set_virtual_stage(virtualStage);
  a.set_slot(slot);
  return Status::ok();
}

/// NCCL matches a pair's sends and receives in the order they are posted:
/// every stage must send its messages to a peer in the order the peer's
/// schedule receives them.
Status checkMessageOrder(const plan::Plan &plan, int64_t pp) {
  std::vector<std::map<int64_t, std::vector<PipelineMessage>>> sent, received;
  for (int64_t s = 0; s < pp; ++s) {
    sent.push_back(pipelineMessages(plan, s, true));
    received.push_back(pipelineMessages(plan, s, false));
  }
  for (int64_t from = 0; from < pp; ++from)
    for (int64_t to = 0; to < pp; ++to)
      if (from != to && sent[from][to] != received[to][from])
        return Status::error("the pipeline schedule makes stage " + std::to_string(from) +
                             "'s messages to stage " + std::to_string(to) +
                             " in another order than that stage receives them, which NCCL "
                             "cannot match");
  return Status::ok();
}

} // namespace

Status emitSchedule(plan::Plan &plan, int64_t pp, int64_t vpp, int64_t microBatches) {
  std::map<std::string, uint32_t> programs;
  for (int i = 0; i < plan.programs_size(); ++i)
    programs[plan.programs(i).name()] = uint32_t(i);
  plan.clear_schedule();
  if (pp <= 1) { // one micro-batch after another, in one slot
    plan::StageSchedule &stage = *plan.add_schedule();
    stage.set_activation_slots(1);
    for (int64_t m = 0; m < microBatches; ++m) {
      if (Status s = appendAction(stage, programs, plan::Action::FORWARD_BACKWARD,
                                  "forward_backward", m, -1, 0);
          !s)
        return s;
      stage.mutable_actions()->rbegin()->set_load_inputs(true);
      stage.mutable_actions()->rbegin()->set_adds_loss(true);
    }
    return appendAction(stage, programs, plan::Action::OPTIMIZER_STEP, "optimizer_step", -1, -1,
                        0);
  }
  const int64_t last = pp * vpp - 1;
  const auto schedule = pipelineSchedule(pp, vpp, microBatches);
  for (int64_t s = 0; s < pp; ++s) {
    plan::StageSchedule &stage = *plan.add_schedule();
    stage.set_stage(int32_t(s));
    int64_t slots = 0;
    const std::vector<int64_t> slotOf = activationSlots(schedule[s], microBatches, slots);
    stage.set_activation_slots(slots);
    std::vector<bool> started(size_t(microBatches), false);
    for (const PipelineAction &a : schedule[s]) {
      const int64_t v = a.chunk * pp + s;
      if (Status st = appendAction(
              stage, programs, a.forward ? plan::Action::FORWARD : plan::Action::BACKWARD,
              (a.forward ? "forward." : "backward.") + std::to_string(v), a.microBatch,
              int32_t(v), int32_t(slotOf[a.microBatch]));
          !st)
        return st;
      plan::Action &added = *stage.mutable_actions()->rbegin();
      added.set_load_inputs(!started[a.microBatch]);
      added.set_adds_loss(a.forward && v == last);
      started[a.microBatch] = true;
    }
    if (Status st = appendAction(stage, programs, plan::Action::OPTIMIZER_STEP,
                                 "optimizer." + std::to_string(s), -1, -1, 0);
        !st)
      return st;
  }
  return checkMessageOrder(plan, pp);
}

} // namespace mt
