// param_offload's rewrite of a program (compiler/plan/ParamOffload.h) on a
// hand-made plan: a copy to the device before each run of a weight's uses,
// runs split where a nested layer uses its own weights in between, and a
// copy back only after a run that writes the weight; two views of one
// weight staged at once, refused where one of them is written.
#include "compiler/plan/ParamOffload.h"
#include "test/compiler/HandMadeProgram.h"

#include "runtime/plan/OpRegistry.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

class ParamOffloadTest : public HandMadeProgramTest {};

TEST_F(ParamOffloadTest, StagesEachRunOfUsesAndSplitsAroundANestedLayer) {
  const uint32_t x = planner_.addBuffer("x", f32(4), plan::ACTIVATIONS);
  const uint32_t y = planner_.addBuffer("y", f32(4), plan::ACTIVATIONS);
  const uint32_t w1 = planner_.addBuffer("w1", f32(4), plan::PARAMETERS);
  const uint32_t w2 = planner_.addBuffer("w2", f32(4), plan::PARAMETERS);
  program_.set_name("forward_backward");
  add(plan::Op::add, {x, w1}, {y}); // layer 1 forward
  add(plan::Op::add, {y, w2}, {x}); // layer 2 forward
  add(plan::Op::linear, {x, w2}, {y}); // layer 2 backward: w2's run goes on
  add(plan::Op::linear, {y, w1}, {x}); // layer 1 backward: all of w2 lies between
  ParamOffload offload(planner_, plan_);
  ASSERT_TRUE(offload.rewrite(program_)) << "rewrite failed";
  const std::vector<std::string> want = {
      "copy_to_device(w1,)->(staged:w1,)", "add(x,staged:w1,)->(y,)",
      "copy_to_device(w2,)->(staged:w2,)", "add(y,staged:w2,)->(x,)",
      "linear(x,staged:w2,)->(y,)",           "copy_to_device(w1,)->(staged:w1,)",
      "linear(y,staged:w1,)->(x,)"};
  EXPECT_EQ(listing(), want);
  // w1's two runs have staged copies of their own, in the device arena.
  EXPECT_NE(program_.instructions(1).inputs(1), program_.instructions(6).inputs(1));
  EXPECT_EQ(planner_.arenaOf(program_.instructions(6).inputs(1)), plan::STAGED_WEIGHTS);
  offload.moveWeights();
  EXPECT_EQ(planner_.arenaOf(w1), plan::HOST_WEIGHTS);
  EXPECT_EQ(planner_.arenaOf(w2), plan::HOST_WEIGHTS);
  EXPECT_EQ(planner_.arenaOf(x), plan::ACTIVATIONS);
}

TEST_F(ParamOffloadTest, CopiesBackOnlyARunThatWritesTheWeight) {
  const uint32_t w = planner_.addBuffer("w", f32(2), plan::PARAMETERS);
  const uint32_t g = planner_.addBuffer("g", f32(2), plan::GRADIENTS);
  const uint32_t m = planner_.addBuffer("m", f32(2), plan::OPTIMIZER);
  const uint32_t v = planner_.addBuffer("v", f32(2), plan::OPTIMIZER);
  program_.set_name("optimizer_step");
  add(plan::Op::adamw, {w, g, m, v}, {w, m, v});
  ParamOffload offload(planner_, plan_);
  ASSERT_TRUE(offload.rewrite(program_)) << "rewrite failed";
  const std::vector<std::string> want = {
      "copy_to_device(w,)->(staged:w,)",
      "adamw(staged:w,g,m,v,)->(staged:w,m,v,)",
      "copy_to_host(staged:w,)->(w,)"};
  EXPECT_EQ(listing(), want);
}

TEST_F(ParamOffloadTest, RefusesTwoViewsOfOneWeightStagedAtOnceWhenOneIsWritten) {
  const uint32_t gate = planner_.addBuffer("gate", f32(2), plan::PARAMETERS);
  const uint32_t up = planner_.addBuffer("up", f32(2), plan::PARAMETERS);
  Expected<uint32_t> both = planner_.addPackedView("gate_up", f32(4), {gate, up});
  ASSERT_TRUE(both) << both.message();
  const uint32_t x = planner_.addBuffer("x", f32(2), plan::ACTIVATIONS);
  const uint32_t y = planner_.addBuffer("y", f32(2), plan::ACTIVATIONS);
  program_.set_name("optimizer_step");
  // The two runs interleave (neither holds all of the other's uses, so
  // neither splits): the member's staged copy would miss the view's write.
  add(plan::Op::scale, {x}, {*both}); // writes the packed view
  add(plan::Op::add, {x, up}, {y});   // reads its member while the view is staged
  add(plan::Op::scale, {x}, {*both});
  add(plan::Op::add, {x, up}, {y});
  Status s = ParamOffload(planner_, plan_).rewrite(program_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "param_offload: program 'optimizer_step' uses 'up' "
                         "(instructions 1..3) and 'gate_up' (0..2), views of one weight, at once, "
                         "and writes one");
}

// overlap_param_gather's all-gather runs after the program, when the staged
// copy it would write is gone (ParallelConfig refuses the two together).
TEST_F(ParamOffloadTest, RefusesADeferredUseOfAStagedWeight) {
  const uint32_t w = planner_.addBuffer("w", f32(2), plan::PARAMETERS);
  const uint32_t shard = planner_.addBuffer("shard", f32(1), plan::ACTIVATIONS);
  program_.set_name("optimizer_step");
  add(plan::Op::all_gather, {shard}, {w});
  auto *deferred = program_.mutable_instructions(0)->add_attributes();
  deferred->set_name("deferred");
  deferred->set_i(1);
  Status s = ParamOffload(planner_, plan_).rewrite(program_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "param_offload: program 'optimizer_step' instruction 0 (all_gather) "
                         "uses 'w' deferred to after the program (overlap_param_gather), after "
                         "its staged copy is gone");
}

TEST_F(ParamOffloadTest, StagesTwoViewsOfOneWeightThatAreOnlyRead) {
  const uint32_t gate = planner_.addBuffer("gate", f32(2), plan::PARAMETERS);
  const uint32_t up = planner_.addBuffer("up", f32(2), plan::PARAMETERS);
  Expected<uint32_t> both = planner_.addPackedView("gate_up", f32(4), {gate, up});
  ASSERT_TRUE(both) << both.message();
  const uint32_t x = planner_.addBuffer("x", f32(4), plan::ACTIVATIONS);
  const uint32_t y = planner_.addBuffer("y", f32(2), plan::ACTIVATIONS);
  program_.set_name("forward_backward");
  add(plan::Op::linear, {x, *both}, {x});
  add(plan::Op::add, {y, up}, {y});
  add(plan::Op::linear, {x, *both}, {x});
  add(plan::Op::add, {y, up}, {y});
  ASSERT_TRUE(ParamOffload(planner_, plan_).rewrite(program_)) << "rewrite failed";
  const std::vector<std::string> want = {
      "copy_to_device(gate_up,)->(staged:gate_up,)", "linear(x,staged:gate_up,)->(x,)",
      "copy_to_device(up,)->(staged:up,)",           "add(y,staged:up,)->(y,)",
      "linear(x,staged:gate_up,)->(x,)",             "add(y,staged:up,)->(y,)"};
  EXPECT_EQ(listing(), want);
}

} // namespace
} // namespace mt
