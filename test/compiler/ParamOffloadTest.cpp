// param_offload's rewrite of a program (compiler/plan/ParamOffload.h) on a
// hand-made plan: a copy to the device before each run of a weight's uses,
// runs split where a nested layer uses its own weights in between, and a
// copy back only after a run that writes the weight.
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

} // namespace
} // namespace mt
