// The schedule the plan carries (compiler/plan/PipelineSchedule.h:
// emitSchedule) as the runtime reads it (runtime/plan/PlanSchedule.h): the
// actions each stage replays, and the messages between stages in the order
// the schedule makes them.
#include "compiler/plan/PipelineSchedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

namespace mt {
namespace {

/// A plan with the programs of a pipeline as the plan emitter lays them
/// out: forward.v receives buffer v - 1 from v - 1 and sends buffer v to
/// v + 1; backward.v receives the gradient 1000 + v from v + 1 and sends
/// 1000 + v - 1 to v - 1; then optimizer.s for each stage.
plan::Plan pipelinePlan(int64_t pp, int64_t vpp, int64_t microBatches) {
  plan::Plan plan;
  plan.mutable_mesh()->set_pp(pp);
  plan.mutable_training()->set_micro_batches_per_step(microBatches);
  const int64_t stages = pp * vpp;
  auto transfer = [](plan::Program &program, const char *op, uint32_t buffer, int64_t peer) {
    plan::Instruction &in = *program.add_instructions();
    in.set_op(op);
    (std::string(op) == "send" ? in.add_inputs(buffer) : in.add_outputs(buffer));
    plan::Attribute &a = *in.add_attributes();
    a.set_name("peer_virtual_stage");
    a.set_i(peer);
  };
  for (bool backward : {false, true})
    for (int64_t v = 0; v < stages; ++v) {
      plan::Program &p = *plan.add_programs();
      p.set_name((backward ? "backward." : "forward.") + std::to_string(v));
      p.set_virtual_stage(int32_t(v));
      p.set_stage(int32_t(v % pp));
      if (!backward) {
        if (v > 0)
          transfer(p, "recv", uint32_t(v - 1), v - 1);
        if (v + 1 < stages)
          transfer(p, "send", uint32_t(v), v + 1);
      } else {
        if (v + 1 < stages)
          transfer(p, "recv", uint32_t(1000 + v), v + 1);
        if (v > 0)
          transfer(p, "send", uint32_t(1000 + v - 1), v - 1);
      }
    }
  for (int64_t s = 0; s < pp; ++s) {
    plan::Program &p = *plan.add_programs();
    p.set_name("optimizer." + std::to_string(s));
    p.set_virtual_stage(-1);
    p.set_stage(int32_t(s));
  }
  return plan;
}

// The plan carries, per stage, the compiler's order of forwards and
// backwards with their programs and slots, and the optimizer step last; the
// runtime reads back exactly that order.
TEST(EmittedSchedule, CarriesTheCompilersOrderForEveryStage) {
  const int64_t pp = 4, vpp = 2, micro = 8;
  plan::Plan plan = pipelinePlan(pp, vpp, micro);
  ASSERT_TRUE(emitSchedule(plan, pp, vpp, micro));
  const auto order = pipelineSchedule(pp, vpp, micro);
  auto read = pipelineActions(plan);
  ASSERT_TRUE(read) << read.message();
  ASSERT_EQ(plan.schedule_size(), pp);
  for (int64_t s = 0; s < pp; ++s) {
    const plan::StageSchedule &stage = plan.schedule(int(s));
    EXPECT_EQ(stage.stage(), s);
    ASSERT_EQ(stage.actions_size(), int(order[s].size()) + 1);
    int64_t slots = 0;
    const auto slotOf = activationSlots(order[s], micro, slots);
    EXPECT_EQ(stage.activation_slots(), slots);
    std::set<int64_t> loaded;
    for (size_t i = 0; i < order[s].size(); ++i) {
      const plan::Action &a = stage.actions(int(i));
      const PipelineAction &want = order[s][i];
      const int64_t v = want.chunk * pp + s;
      EXPECT_EQ(a.kind(), want.forward ? plan::Action::FORWARD : plan::Action::BACKWARD);
      EXPECT_EQ(a.micro_batch(), want.microBatch);
      EXPECT_EQ(a.virtual_stage(), v);
      EXPECT_EQ(plan.programs(int(a.program())).name(),
                (want.forward ? "forward." : "backward.") + std::to_string(v));
      EXPECT_EQ(a.slot(), slotOf[want.microBatch]);
      EXPECT_EQ(a.load_inputs(), loaded.insert(want.microBatch).second);
      EXPECT_EQ(a.adds_loss(), want.forward && v == pp * vpp - 1);
      EXPECT_EQ(read->at(s)[i].forward, want.forward);
      EXPECT_EQ(read->at(s)[i].microBatch, want.microBatch);
      EXPECT_EQ(read->at(s)[i].chunk, want.chunk);
    }
    const plan::Action &last = *stage.actions().rbegin();
    EXPECT_EQ(last.kind(), plan::Action::OPTIMIZER_STEP);
    EXPECT_EQ(plan.programs(int(last.program())).name(), "optimizer." + std::to_string(s));
  }
}

// Without pp: one stage, forward_backward per micro-batch, each loading its
// inputs and adding its loss, then optimizer_step.
TEST(EmittedSchedule, OneStageRunsEachMicroBatchThenTheOptimizer) {
  plan::Plan plan;
  plan.add_programs()->set_name("forward_backward");
  plan.add_programs()->set_name("optimizer_step");
  ASSERT_TRUE(emitSchedule(plan, 1, 1, 3));
  ASSERT_EQ(plan.schedule_size(), 1);
  const plan::StageSchedule &stage = plan.schedule(0);
  EXPECT_EQ(stage.activation_slots(), 1);
  ASSERT_EQ(stage.actions_size(), 4);
  for (int m = 0; m < 3; ++m) {
    EXPECT_EQ(stage.actions(m).kind(), plan::Action::FORWARD_BACKWARD);
    EXPECT_EQ(stage.actions(m).micro_batch(), m);
    EXPECT_EQ(stage.actions(m).program(), 0u);
    EXPECT_TRUE(stage.actions(m).load_inputs() && stage.actions(m).adds_loss());
  }
  EXPECT_EQ(stage.actions(3).kind(), plan::Action::OPTIMIZER_STEP);
  EXPECT_EQ(stage.actions(3).program(), 1u);
}

TEST(EmittedSchedule, NamesAMissingProgram) {
  plan::Plan plan = pipelinePlan(2, 1, 2);
  plan.mutable_programs(1)->set_name("renamed");
  Status s = emitSchedule(plan, 2, 1, 2);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "the plan has no program 'forward.1' for its schedule");
}

// Every layout: the messages between two stages are received in the order
// they are produced (what NCCL needs: it matches a pair's sends and
// receives in posting order), even where activations of one chunk and
// gradients of another travel the same way (interleaving); they are the
// boundaries between virtual stages on that way times the micro-batches,
// each once.
TEST(PipelineMessages, EveryLayoutReceivesInTheOrderItProduces) {
  for (int64_t pp : {2, 3, 4, 8})
    for (int64_t vpp : {1, 2, 3})
      for (int64_t micro : {pp, 2 * pp, 3 * pp, 2 * pp + 1}) {
        if (vpp > 1 && micro % pp != 0) // interleaving needs whole rounds
          continue;
        SCOPED_TRACE(testing::Message() << "pp " << pp << " vpp " << vpp << " micro " << micro);
        plan::Plan plan = pipelinePlan(pp, vpp, micro);
        Status emitted = emitSchedule(plan, pp, vpp, micro);
        ASSERT_TRUE(emitted) << emitted.message();
        for (int64_t from = 0; from < pp; ++from)
          for (int64_t to = 0; to < pp; ++to) {
            if (from == to)
              continue;
            SCOPED_TRACE(testing::Message() << from << " -> " << to);
            const auto sent = pipelineMessages(plan, from, true)[to];
            const auto received = pipelineMessages(plan, to, false)[from];
            EXPECT_EQ(sent, received);
            int64_t boundaries = 0;
            for (int64_t v = 0; v + 1 < pp * vpp; ++v)
              boundaries += (v % pp == from && (v + 1) % pp == to) +
                            ((v + 1) % pp == from && v % pp == to);
            EXPECT_EQ(int64_t(received.size()), boundaries * micro);
            EXPECT_EQ(std::set(received.begin(), received.end()).size(), received.size());
          }
      }
}

// 1F1B on two stages: activations go 0 -> 1 and gradients 1 -> 0, each in
// micro-batch order; a schedule where stage 0 runs its backwards in another
// order receives the gradients in another order than stage 1 sends them.
TEST(PipelineMessages, FollowTheScheduleOrder) {
  plan::Plan plan = pipelinePlan(2, 1, 4);
  ASSERT_TRUE(emitSchedule(plan, 2, 1, 4));
  using Messages = std::vector<PipelineMessage>;
  EXPECT_EQ(pipelineMessages(plan, 0, true)[1], (Messages{{0, 0}, {1, 0}, {2, 0}, {3, 0}}));
  EXPECT_EQ(pipelineMessages(plan, 1, true)[0],
            (Messages{{0, 1000}, {1, 1000}, {2, 1000}, {3, 1000}}));
  auto &actions = *plan.mutable_schedule(0)->mutable_actions();
  auto isBackward = [](int64_t m) {
    return [m](const plan::Action &a) {
      return a.kind() == plan::Action::BACKWARD && a.micro_batch() == m;
    };
  };
  auto b0 = std::find_if(actions.begin(), actions.end(), isBackward(0));
  auto b1 = std::find_if(actions.begin(), actions.end(), isBackward(1));
  ASSERT_TRUE(b0 != actions.end() && b1 != actions.end());
  std::iter_swap(b0, b1);
  EXPECT_NE(pipelineMessages(plan, 0, false)[1], pipelineMessages(plan, 1, true)[0]);
}

} // namespace
} // namespace mt
