// grad_offload's rewrite of a program (compiler/plan/GradOffload.h) on a
// hand-made plan: the copies around each run of device uses, the host
// reader that splits runs, the distributed optimizer's reduced shards, and
// the two refusals (a host instruction that
// writes a gradient; two views of one gradient staged at once).
#include "compiler/plan/GradOffload.h"
#include "test/compiler/HandMadeProgram.h"

#include "runtime/plan/OpRegistry.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

class GradOffloadTest : public HandMadeProgramTest {};

TEST_F(GradOffloadTest, StagesEachRunOfDeviceUsesAndLeavesHostReadsOnTheHost) {
  const uint32_t x = planner_.addBuffer("x", f32(2), plan::ACTIVATIONS);
  const uint32_t g = planner_.addBuffer("g", f32(2), plan::GRADIENTS);
  const uint32_t norm = planner_.addBuffer("norm", f32(1), plan::ACTIVATIONS);
  program_.set_name("p");
  add(plan::Op::all_reduce, {g}, {g});  // a device run that writes: copied back
  add(plan::Op::sum_squares, {g}, {norm}); // on the host: reads g itself
  add(plan::Op::sqrt, {norm}, {x});
  add(plan::Op::scale, {g}, {x});        // a device run that only reads: not copied back
  GradOffload offload(planner_, plan_, /*hostAdamW=*/false);
  ASSERT_TRUE(offload.rewrite(program_)) << "rewrite failed";
  const std::vector<std::string> want = {
      "copy_to_device(g,)->(staged:g,)", "all_reduce(staged:g,)->(staged:g,)",
      "copy_to_host(staged:g,)->(g,)",   "sum_squares(g,)->(norm,)",
      "sqrt(norm,)->(x,)",               "copy_to_device(g,)->(staged:g,)",
      "scale(staged:g,)->(x,)"};
  EXPECT_EQ(listing(), want);
  // The two runs have staged copies of their own, in the device arena.
  EXPECT_NE(program_.instructions(1).inputs(0), program_.instructions(6).inputs(0));
  EXPECT_EQ(planner_.arenaOf(program_.instructions(6).inputs(0)), plan::STAGED_GRADIENTS);
  offload.moveGradients();
  EXPECT_EQ(planner_.arenaOf(g), plan::HOST_GRADIENTS);
}

// The distributed optimizer: the bucket is staged around its reduce-scatter
// on the device; the reduced shard becomes a main gradient, on the host
// (the bucket's host_grad_buffer), which the norm reads there and AdamW on
// the device through a staged copy of its own.
TEST_F(GradOffloadTest, KeepsTheDistributedOptimizersReducedShardsOnTheHost) {
  const uint32_t bucket = planner_.addBuffer("bucket", f32(4), plan::GRADIENTS);
  const uint32_t shard = planner_.addBuffer("shard", f32(2), plan::ACTIVATIONS);
  const uint32_t w = planner_.addBuffer("w", f32(2), plan::ACTIVATIONS);
  const uint32_t norm = planner_.addBuffer("norm", f32(1), plan::ACTIVATIONS);
  plan_.add_buckets()->set_grad_buffer(bucket);
  program_.set_name("optimizer_step");
  add(plan::Op::reduce_scatter, {bucket}, {shard});
  add(plan::Op::sum_squares, {shard}, {norm});
  add(plan::Op::adamw, {w, shard}, {w});
  GradOffload offload(planner_, plan_, /*hostAdamW=*/false);
  ASSERT_TRUE(offload.rewrite(program_)) << "rewrite failed";
  const std::vector<std::string> want = {
      "copy_to_device(bucket,)->(staged:bucket,)",
      "copy_to_device(shard,)->(staged:shard,)",
      "reduce_scatter(staged:bucket,)->(staged:shard,)",
      "copy_to_host(staged:shard,)->(shard,)",
      "sum_squares(shard,)->(norm,)",
      "copy_to_device(shard,)->(staged:shard,)",
      "adamw(w,staged:shard,)->(w,)"};
  EXPECT_EQ(listing(), want);
  EXPECT_EQ(plan_.buckets(0).host_grad_buffer(), shard);
  offload.moveGradients();
  EXPECT_EQ(planner_.arenaOf(bucket), plan::HOST_GRADIENTS);
  EXPECT_EQ(planner_.arenaOf(shard), plan::HOST_GRADIENTS);
}

TEST_F(GradOffloadTest, RefusesAHostInstructionThatWritesAGradient) {
  const uint32_t g = planner_.addBuffer("g", f32(2), plan::GRADIENTS);
  program_.set_name("optimizer_step");
  add(plan::Op::sum_squares, {g}, {g});
  Status s = GradOffload(planner_, plan_, false).rewrite(program_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "grad_offload: program 'optimizer_step' instruction 0 (sum_squares) "
                         "writes 'g' on the host; only device instructions write gradients");
}

TEST_F(GradOffloadTest, RefusesTwoViewsOfOneGradientStagedAtOnce) {
  const uint32_t gate = planner_.addBuffer("gate", f32(2), plan::GRADIENTS);
  const uint32_t up = planner_.addBuffer("up", f32(2), plan::GRADIENTS);
  Expected<uint32_t> both = planner_.addPackedView("gate_up", f32(4), {gate, up});
  ASSERT_TRUE(both) << both.message();
  const uint32_t x = planner_.addBuffer("x", f32(2), plan::ACTIVATIONS);
  program_.set_name("forward_backward");
  add(plan::Op::scale, {x}, {*both});
  add(plan::Op::scale, {x}, {up});
  add(plan::Op::scale, {x}, {*both});
  Status s = GradOffload(planner_, plan_, false).rewrite(program_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "grad_offload: program 'forward_backward' uses 'gate_up' "
                         "(instructions 0..2) and 'up' (1..1), views of one gradient, at once");
}

} // namespace
} // namespace mt
