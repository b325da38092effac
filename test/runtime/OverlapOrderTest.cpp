// The issue order of the CUDA backend's overlapped tensor-parallel
// collectives (runtime/plan/OverlapOrder.h): weight-gradient GEMMs run
// while the next collective does, never across a conflict in memory.
#include "runtime/plan/OverlapOrder.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace mt::plan {
namespace {

/// A program of (op, inputs, outputs) instructions; buffer b spans bytes
/// [100·b, 100·b + 100) unless `shared` puts it elsewhere.
struct Builder {
  Program program;
  std::map<uint32_t, ByteRange> shared;
  std::set<int> collectives;

  void add(const std::string &op, std::vector<uint32_t> in, std::vector<uint32_t> out) {
    Instruction *i = program.add_instructions();
    i->set_op(op);
    for (uint32_t id : in)
      i->add_inputs(id);
    for (uint32_t id : out)
      i->add_outputs(id);
    if (op == "reduce_scatter" || op == "all_gather")
      collectives.insert(program.instructions_size() - 1);
  }
  std::vector<int> order() const {
    return deferWeightGradients(
        program, [&](int i) { return collectives.count(i) > 0; },
        [&](uint32_t id) {
          auto it = shared.find(id);
          return it != shared.end() ? it->second : ByteRange{100 * id, 100 * id + 100};
        });
  }
};

TEST(OverlapOrderTest, WeightGradientRunsDuringTheReduceScatterOfTheInputGradient) {
  // A column-parallel linear's backward as the plan orders it: the weight
  // gradient first, then the input gradient and its reduce-scatter.
  Builder b;
  b.add("linear_grad_weight", {1, 2}, {3}); // x, dy -> dW
  b.add("fill_zero", {}, {4});
  b.add("linear_grad_input", {2, 5}, {4}); // dy, W -> dx
  b.add("reduce_scatter", {4}, {6});
  b.add("add_rmsnorm_grad", {6}, {7});
  EXPECT_EQ(b.order(), (std::vector<int>{1, 2, 3, 0, 4}));
  // The reduce-scatter's result may reuse the bytes of the GEMM's dy (dead
  // after it in the plan's order): the backend writes it only where the
  // compute stream waits, after the GEMM. What the collective reads must
  // not be what the GEMM writes.
  b.shared[6] = {200, 300}; // buffer 2's bytes
  EXPECT_EQ(b.order(), (std::vector<int>{1, 2, 3, 0, 4}));
  Builder c;
  c.add("linear_grad_weight", {1, 2}, {3});
  c.add("reduce_scatter", {3}, {4});
  EXPECT_EQ(c.order(), (std::vector<int>{0, 1}));
}

TEST(OverlapOrderTest, InputGradientRunsDuringTheGatherOfTheRecomputedInput) {
  // Recomputed layernorm: the input is gathered again in backward, right
  // before the weight gradient that reads it.
  Builder b;
  b.add("rmsnorm", {1}, {2});
  b.add("all_gather", {2}, {3});
  b.add("linear_grad_weight", {3, 4}, {5});
  b.add("fill_zero", {}, {6});
  b.add("linear_grad_input", {4, 7}, {6});
  b.add("reduce_scatter", {6}, {8});
  b.add("add_rmsnorm_grad", {8}, {9});
  EXPECT_EQ(b.order(), (std::vector<int>{0, 1, 3, 4, 5, 2, 6}));
}

TEST(OverlapOrderTest, AWeightGradientNeverPassesWhatSharesItsMemory) {
  // The zero-filled buffer reuses the bytes of the gradient's input x (x is
  // dead after it in the plan's order): the GEMM must read x first.
  Builder b;
  b.shared[4] = {150, 250}; // overlaps buffer 1 (x) at [100, 200)
  b.add("linear_grad_weight", {1, 2}, {3});
  b.add("fill_zero", {}, {4});
  b.add("linear_grad_input", {2, 5}, {4});
  b.add("reduce_scatter", {4}, {6});
  EXPECT_EQ(b.order(), (std::vector<int>{0, 1, 2, 3}));
  // Nor an instruction that reads the gradient it adds to, nor one that
  // writes it; the ones deferred before the conflicting one go first, in
  // their order.
  Builder c;
  c.add("linear_grad_weight", {1, 2}, {3});
  c.add("linear_grad_weight", {1, 4}, {5});
  c.add("linear_grad_weight", {1, 6}, {7});
  c.add("scale", {5}, {8}); // reads the second gradient
  c.add("reduce_scatter", {9}, {10});
  EXPECT_EQ(c.order(), (std::vector<int>{0, 1, 3, 4, 2}));
  Builder d;
  d.add("linear_grad_weight", {1, 2}, {3});
  d.add("fill_zero", {}, {3});
  d.add("reduce_scatter", {9}, {10});
  EXPECT_EQ(d.order(), (std::vector<int>{0, 1, 2}));
}

// A kernel workspace the plan gives an instruction (Instruction.workspace)
// may reuse the bytes of a deferred weight gradient's input: the GEMM must
// run before it, as before an output there.
TEST(OverlapOrderTest, AWeightGradientNeverPassesAWorkspaceOnItsMemory) {
  Builder b;
  b.add("linear_grad_weight", {1, 2}, {3});
  b.add("attention_grad", {4}, {5});
  b.add("reduce_scatter", {5}, {6});
  EXPECT_EQ(b.order(), (std::vector<int>{1, 2, 0}));
  b.program.mutable_instructions(1)->set_workspace(7);
  b.shared[7] = {150, 250}; // overlaps buffer 1 (x) at [100, 200)
  EXPECT_EQ(b.order(), (std::vector<int>{0, 1, 2}));
}

TEST(OverlapOrderTest, WithoutAnOverlappedCollectiveTheOrderIsThePlans) {
  Builder b;
  b.add("linear_grad_weight", {1, 2}, {3});
  b.add("linear_grad_input", {2, 5}, {4});
  b.add("all_reduce", {4}, {4}); // on the compute stream: not overlapped
  EXPECT_EQ(b.order(), (std::vector<int>{0, 1, 2}));
  // After the last collective, the deferred ones end the program in order.
  Builder c;
  c.add("reduce_scatter", {9}, {10});
  c.add("linear_grad_weight", {1, 2}, {3});
  c.add("linear_grad_input", {2, 5}, {4});
  c.add("linear_grad_weight", {1, 4}, {6});
  EXPECT_EQ(c.order(), (std::vector<int>{0, 2, 1, 3}));
}

} // namespace
} // namespace mt::plan
