// Kernel workspaces planned with the activations (BufferPlanner::
// addWorkspace, Instruction.workspace): bytes free while their instruction
// runs, never a larger activation peak, on hand-made plans.
#include "test/compiler/HandMadeProgram.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

class WorkspacePlanningTest : public HandMadeProgramTest {
protected:
  /// Records the liveness of program_ as the emitter does (inputs and
  /// outputs, and the workspace at its instruction) and plans the offsets.
  uint64_t plan() {
    for (int i = 0; i < program_.instructions_size(); ++i)
      for (uint32_t id : plan::buffersTouched(program_.instructions(i)))
        planner_.touch(id, i);
    planner_.finishProgram();
    EXPECT_TRUE(planner_.assignOffsets());
    for (const plan::Arena &a : plan_.arenas())
      if (a.kind() == plan::ACTIVATIONS)
        return a.size_bytes();
    return 0;
  }
  bool overlap(uint32_t a, uint32_t b) const {
    const plan::Buffer &x = plan_.buffers(a), &y = plan_.buffers(b);
    return x.offset_bytes() < y.offset_bytes() + y.size_bytes() &&
           y.offset_bytes() < x.offset_bytes() + x.size_bytes();
  }
};

// a (8 rows) and b (8 rows) peak together at instruction 1; by instruction 2
// a is dead, and its bytes serve c and c's workspace (placed after the
// other activations, largest first) without raising the peak.
TEST_F(WorkspacePlanningTest, TakesBytesFreeWhileItsInstructionRuns) {
  const uint32_t a = planner_.addBuffer("a", f32(8), plan::ACTIVATIONS);
  const uint32_t b = planner_.addBuffer("b", f32(8), plan::ACTIVATIONS);
  const uint32_t c = planner_.addBuffer("c", f32(1), plan::ACTIVATIONS);
  add(plan::Op::scale, {}, {a});
  add(plan::Op::scale, {a}, {b});
  add(plan::Op::scale, {b}, {c});
  const uint32_t w = planner_.addWorkspace("w", f32(4), *program_.mutable_instructions(2));
  const uint64_t peak = plan();
  EXPECT_EQ(peak, 2 * 8 * 4 * 4u); // a and b: the workspace added nothing
  ASSERT_TRUE(program_.instructions(2).has_workspace());
  EXPECT_EQ(program_.instructions(2).workspace(), w);
  EXPECT_EQ(plan_.buffers(w).size_bytes(), 4 * 4 * 4u);
  EXPECT_FALSE(overlap(w, b)); // live at instruction 2
  EXPECT_FALSE(overlap(w, c));
  EXPECT_TRUE(overlap(w, a)); // dead by then: its bytes reused
}

// Where no bytes are free below the peak, the workspace is taken back: the
// instruction has none (the backend's shared one serves it), the buffer is
// empty and the peak is what the other activations need.
TEST_F(WorkspacePlanningTest, NeverRaisesThePeak) {
  const uint32_t a = planner_.addBuffer("a", f32(8), plan::ACTIVATIONS);
  const uint32_t b = planner_.addBuffer("b", f32(8), plan::ACTIVATIONS);
  add(plan::Op::scale, {}, {a});
  add(plan::Op::scale, {a}, {b});
  const uint32_t w = planner_.addWorkspace("w", f32(1), *program_.mutable_instructions(1));
  EXPECT_EQ(plan(), 2 * 8 * 4 * 4u);
  EXPECT_FALSE(program_.instructions(1).has_workspace());
  EXPECT_EQ(plan_.buffers(w).size_bytes(), 0u);
  ASSERT_EQ(plan_.buffers(w).shape_size(), 1);
  EXPECT_EQ(plan_.buffers(w).shape(0), 0);
}

} // namespace
} // namespace mt
