// A fixture for the offload rewrites' tests (GradOffloadTest.cpp,
// ParamOffloadTest.cpp): a hand-made plan, its BufferPlanner and one program
// built instruction by instruction, listed back as text.
#ifndef MT_TEST_COMPILER_HANDMADEPROGRAM_H
#define MT_TEST_COMPILER_HANDMADEPROGRAM_H

#include "compiler/plan/BufferPlanner.h"
#include "runtime/plan/OpRegistry.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mt {

/// Buffers are f32 [rows x 4]; `program_` is empty until add() is called.
class HandMadeProgramTest : public ::testing::Test {
protected:
  mlir::RankedTensorType f32(int64_t rows) {
    return mlir::RankedTensorType::get({rows, 4}, mlir::Float32Type::get(&context_));
  }
  /// An instruction `op` reading `inputs` and writing `outputs`.
  void add(plan::Op op, std::vector<uint32_t> inputs, std::vector<uint32_t> outputs) {
    plan::Instruction &in = *program_.add_instructions();
    in.set_op(plan::signature(op).name);
    for (uint32_t id : inputs)
      in.add_inputs(id);
    for (uint32_t id : outputs)
      in.add_outputs(id);
  }
  /// The program as "op(inputs)->(outputs)" lines.
  std::vector<std::string> listing() const {
    std::vector<std::string> lines;
    for (const plan::Instruction &in : program_.instructions()) {
      std::string line = in.op() + "(";
      for (uint32_t id : in.inputs())
        line += plan_.buffers(id).name() + ",";
      line += ")->(";
      for (uint32_t id : in.outputs())
        line += plan_.buffers(id).name() + ",";
      lines.push_back(line + ")");
    }
    return lines;
  }

  mlir::MLIRContext context_;
  plan::Plan plan_;
  BufferPlanner planner_{plan_};
  plan::Program program_;
};

} // namespace mt

#endif // MT_TEST_COMPILER_HANDMADEPROGRAM_H
