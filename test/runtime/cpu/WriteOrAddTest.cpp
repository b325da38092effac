// The write-or-add rule (plan::addsIntoOutputs) on compiled plans, run one
// instruction at a time on the CPU executor: every output of an op the rule
// calls a writer is written whole without being read (NaN put there first
// does not change the result), every output of an adder is added to (a 1
// put there first comes out 1 larger), and every added-to buffer was
// written earlier in its program (a fill_zero or a writer) unless it is a
// main gradient, which the runtime zeroes at the start of a step. The CUDA
// lowering relies on exactly this (plan::outputUse). The plans come from
// compile-plans.sh (a ctest fixture).
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/exec/Memory.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanIO.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace mt {
namespace {

using Bytes = std::vector<std::byte>;

/// Whether two buffers share memory (one arena, overlapping byte ranges).
bool overlap(const plan::Buffer &a, const plan::Buffer &b) {
  return a.arena() == b.arena() && a.offset_bytes() < b.offset_bytes() + b.size_bytes() &&
         b.offset_bytes() < a.offset_bytes() + a.size_bytes();
}

class WriteOrAdd : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    auto plan = plan::readPlanDirectory(std::string(MT_RULE_PLAN_DIR) + "/" + GetParam());
    ASSERT_TRUE(plan.isOk()) << plan.message();
    // Each instruction of the two programs becomes a program of its own.
    for (int k = 0, programs = plan->programs_size(); k < programs; ++k) {
      const plan::Program p = plan->programs(k); // a copy: programs grow below
      for (int i = 0; i < p.instructions_size(); ++i) {
        plan::Program *one = plan->add_programs();
        one->set_name(p.name() + "." + std::to_string(i));
        *one->add_instructions() = p.instructions(i);
      }
    }
    plan_ = std::move(*plan);
    auto memory = exec::HostMemory::create(plan_);
    ASSERT_TRUE(memory.isOk()) << memory.message();
    memory_ = std::move(*memory);
    auto executor = cpu::CpuExecutor::create(plan_, *memory_);
    ASSERT_TRUE(executor.isOk()) << executor.message();
    executor_ = std::make_unique<cpu::CpuExecutor>(std::move(*executor));
    fillState();
  }

  /// Small random weights and optimizer state, a batch within the vocabulary.
  void fillState() {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> weight(-0.1f, 0.1f), moment(0.001f, 0.01f);
    for (const plan::Buffer &b : plan_.buffers()) {
      if (b.arena() != plan::PARAMETERS && b.arena() != plan::OPTIMIZER)
        continue;
      float *p = memory_->f32(b.id());
      for (int64_t i = 0; i < memory_->elements(b.id()); ++i)
        p[i] = b.arena() == plan::PARAMETERS ? weight(rng) : moment(rng);
    }
    const plan::Bindings &bind = plan_.bindings();
    const int64_t vocab = plan_.training().vocab_size();
    for (uint32_t ids : {bind.input_ids(), bind.labels()})
      for (int64_t i = 0; i < memory_->elements(ids); ++i)
        memory_->i32(ids)[i] = int32_t(rng() % uint32_t(vocab));
    std::fill_n(memory_->f32(bind.loss_mask()), memory_->elements(bind.loss_mask()), 1.0f);
    if (bind.has_position_ids()) // documents of 5 tokens (neat_packing plans)
      for (int64_t i = 0; i < memory_->elements(bind.position_ids()); ++i)
        memory_->i32(bind.position_ids())[i] = int32_t(i % 5);
    *memory_->f32(bind.loss_scale()) = 0.5f;
    *memory_->i64(bind.step()) = 1;
  }

  Bytes read(uint32_t id) const {
    const std::byte *p = memory_->data(id);
    return Bytes(p, p + plan_.buffers(id).size_bytes());
  }
  void write(uint32_t id, const Bytes &bytes) {
    std::memcpy(memory_->data(id), bytes.data(), bytes.size());
  }
  void run(const std::string &name) {
    auto r = executor_->run(name);
    ASSERT_TRUE(r.isOk()) << r.message();
  }

  /// Checks instruction `index` of `program` and leaves its results in memory.
  void checkInstruction(const plan::Program &program, int index, std::set<uint32_t> &written);

  plan::Plan plan_;
  std::unique_ptr<exec::HostMemory> memory_;
  std::unique_ptr<cpu::CpuExecutor> executor_;
};

void WriteOrAdd::checkInstruction(const plan::Program &program, int index,
                                  std::set<uint32_t> &written) {
  const plan::Instruction &in = program.instructions(index);
  const std::string name = program.name() + "." + std::to_string(index);
  const std::string where = name + " (" + in.op() + ")";
  const bool adds = plan::addsIntoOutputs(in.op());
  std::vector<Bytes> before;
  for (uint32_t out : in.outputs()) {
    const plan::Buffer &b = plan_.buffers(out);
    if (adds && b.arena() != plan::GRADIENTS) {
      EXPECT_TRUE(written.count(out)) << where << " adds into %" << out << " '" << b.name()
                                      << "', which nothing wrote before in the program";
    }
    before.push_back(read(out));
  }
  run(name);
  std::vector<Bytes> result;
  for (uint32_t out : in.outputs())
    result.push_back(read(out));

  for (int o = 0; o < in.outputs_size(); ++o) {
    const plan::Buffer &b = plan_.buffers(in.outputs(o));
    bool aliased = false; // in place: what was there is an input
    for (uint32_t other : in.inputs())
      aliased |= overlap(b, plan_.buffers(other));
    for (int p = 0; p < in.outputs_size(); ++p)
      aliased |= p != o && overlap(b, plan_.buffers(in.outputs(p)));
    if (aliased)
      continue;
    for (int p = 0; p < in.outputs_size(); ++p)
      write(in.outputs(p), before[p]);
    const int64_t n = memory_->elements(b.id());
    if (adds) {
      ASSERT_EQ(b.dtype(), plan::F32) << where;
      float *x = memory_->f32(b.id());
      for (int64_t i = 0; i < n; ++i)
        x[i] += 1.0f;
      run(name);
      const float *was = reinterpret_cast<const float *>(before[o].data());
      const float *plain = reinterpret_cast<const float *>(result[o].data());
      double worst = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double err = std::fabs(double(x[i]) - (double(plain[i]) + 1.0));
        const double scale = 1.0 + std::fabs(plain[i]) + std::fabs(was[i]);
        worst = std::max(worst, std::isnan(err) ? INFINITY : err / scale);
      }
      // Adding g to (v + 1) rather than v differs by the roundings of a
      // few fp32 additions: far below the 1 that was added.
      EXPECT_LE(worst, 1e-5) << where << " output " << o << " '" << b.name()
                             << "' does not add into what the buffer held";
    } else {
      std::memset(memory_->data(b.id()), 0xff, b.size_bytes()); // NaN in fp32
      run(name);
      EXPECT_EQ(read(b.id()), result[o]) << where << " output " << o << " '" << b.name()
                                         << "' reads what the buffer held (or leaves some)";
    }
  }
  for (int p = 0; p < in.outputs_size(); ++p) {
    write(in.outputs(p), result[p]);
    written.insert(in.outputs(p));
  }
}

TEST_P(WriteOrAdd, EveryInstructionWritesOrAddsAsItsOpSays) {
  int checked = 0;
  std::set<std::string> ops;
  memory_->clear(plan::GRADIENTS); // as at the start of a step
  for (const char *name : {"forward_backward", "optimizer_step"}) {
    const plan::Program *program = nullptr;
    for (const plan::Program &p : plan_.programs())
      if (p.name() == name)
        program = &p;
    ASSERT_NE(program, nullptr) << name;
    std::set<uint32_t> written;
    for (int i = 0; i < program->instructions_size(); ++i) {
      checkInstruction(*program, i, written);
      if (HasFatalFailure())
        return;
      ++checked;
      ops.insert(program->instructions(i).op());
    }
  }
  // Every instruction of a whole training step, of many kinds, fused ones
  // among them (tiny-llama's two layers make about 100 instructions).
  EXPECT_GT(checked, 90);
  EXPECT_GE(ops.size(), 20u);
  for (const char *op : {"add_rmsnorm", "add_rmsnorm_grad", "cross_entropy_grad"})
    EXPECT_TRUE(ops.count(op)) << op;
  EXPECT_TRUE(ops.count("split_qkv_rotary") || ops.count("split_qkv"));
}

// A plan made in memory with an instruction short of an output is refused
// when the executor is made, naming the program, instruction and counts,
// instead of a kernel reading past the instruction's outputs.
TEST(CpuExecutorChecks, RefusesAnInstructionWithTheWrongOutputCount) {
  auto plan = plan::readPlanDirectory(std::string(MT_RULE_PLAN_DIR) + "/tiny-llama");
  ASSERT_TRUE(plan.isOk()) << plan.message();
  plan::Program *program = plan->mutable_programs(0);
  int index = 0;
  while (program->instructions(index).outputs_size() < 1)
    ++index;
  plan::Instruction *instr = program->mutable_instructions(index);
  const int outputs = instr->outputs_size();
  instr->mutable_outputs()->RemoveLast();
  auto memory = exec::HostMemory::create(*plan);
  ASSERT_TRUE(memory.isOk()) << memory.message();
  auto executor = cpu::CpuExecutor::create(*plan, **memory);
  ASSERT_FALSE(executor.isOk());
  EXPECT_NE(executor.message().find("program '" + program->name() + "' instruction " +
                                    std::to_string(index) + " (" + instr->op()),
            std::string::npos)
      << executor.message();
  EXPECT_NE(executor.message().find(std::to_string(outputs) + " outputs, got"), std::string::npos)
      << executor.message();
}

INSTANTIATE_TEST_SUITE_P(Plans, WriteOrAdd,
                         ::testing::Values("tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-moe",
                                           "tiny-qwen3-neat", "tiny-qwen2-moe"),
                         [](const auto &info) {
                           std::string name = info.param;
                           for (char &c : name)
                             if (c == '-')
                               c = '_';
                           return name;
                         });

} // namespace
} // namespace mt
