// The plan instruction table generated from ODS (runtime/plan/OpTable.inc):
// its notations, the loader's attribute checks that follow it, and the
// resolution of a backend's kernel table (PerOp) with its error for an
// instruction the backend has no kernel for.
#include "runtime/plan/OpRegistry.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace mt::plan {
namespace {

TEST(OpTable, EveryEntryIsIndexedByItsIdAndCountsEachOperand) {
  ASSERT_EQ(allOps().size(), kOpCount);
  for (const OpSignature &op : allOps()) {
    EXPECT_EQ(&signature(op.id), &op) << op.name;
    EXPECT_EQ(findOp(op.name), &op) << op.name;
    if (!op.elements.empty()) { // one count per input and output (the generator checks it)
      EXPECT_EQ(int(op.elements.size()), op.maxInputs + op.outputs) << op.name;
    }
  }
}

TEST(OpTable, OpsLowerToTheirInstruction) {
  ASSERT_NE(findOpLoweredFrom("mt.zeros"), nullptr);
  EXPECT_EQ(findOpLoweredFrom("mt.zeros")->name, "fill_zero");
  EXPECT_EQ(findOpLoweredFrom("mt.linear_grad_weight")->id, Op::linear_grad_weight);
  EXPECT_EQ(findOpLoweredFrom("mt.reshape"), nullptr); // an alias, no instruction
  EXPECT_EQ(findOpLoweredFrom(""), nullptr);           // "accumulate" has no op
  EXPECT_TRUE(signature(Op::linear_grad_weight).addsIntoOutputs);
  EXPECT_FALSE(signature(Op::linear).addsIntoOutputs);
}

TEST(OpTable, ElementCountsFollowTheAttributes) {
  Instruction instr;
  instr.set_op("linear");
  for (auto [name, value] : {std::pair{"tokens", 6}, {"in", 4}, {"out", 3}}) {
    auto *a = instr.add_attributes();
    a->set_name(name);
    a->set_i(value);
  }
  const OpSignature &linear = signature(Op::linear);
  EXPECT_EQ(linear.counts(Attrs(instr)), (std::vector<int64_t>{24, 12, 18}));
  auto *bias = instr.add_attributes();
  bias->set_name("has_bias");
  bias->set_i(1);
  EXPECT_EQ(linear.counts(Attrs(instr)), (std::vector<int64_t>{24, 12, 3, 18}));
}

/// An instruction of `op` with the integer attributes `ints`.
Instruction withInts(const char *op, std::initializer_list<std::pair<const char *, int>> ints) {
  Instruction instr;
  instr.set_op(op);
  for (auto [name, value] : ints) {
    auto *a = instr.add_attributes();
    a->set_name(name);
    a->set_i(value);
  }
  return instr;
}

TEST(OpTable, OptionalPositionIdsComeAfterTheInputs) {
  // varlen: attention's [batch, seq] position ids follow q, k, v (and the
  // backward's log-sum-exp), before the outputs.
  Instruction instr = withInts("attention", {{"batch", 2}, {"seq", 3}, {"kv_seq", 3},
                                             {"heads", 1}, {"kv_heads", 1}, {"head_dim", 4}});
  const OpSignature &attention = signature(Op::attention);
  EXPECT_EQ(attention.counts(Attrs(instr)), (std::vector<int64_t>{24, 24, 24, 24, 6}));
  auto *positions = instr.add_attributes();
  positions->set_name("position_ids");
  positions->set_i(1);
  EXPECT_EQ(attention.counts(Attrs(instr)), (std::vector<int64_t>{24, 24, 24, 6, 24, 6}));
}

TEST(OpTable, ElementCountsDivideByOneAttribute) {
  // moe_exchange_counts: each rank's share of the experts, experts/parts.
  const OpSignature &exchange = signature(Op::moe_exchange_counts);
  EXPECT_EQ(exchange.counts(Attrs(withInts("moe_exchange_counts", {{"experts", 8}, {"parts", 2}}))),
            (std::vector<int64_t>{8, 2, 2, 8, 4}));
  // A zero divisor counts as 1 instead of dividing by zero.
  EXPECT_EQ(exchange.counts(Attrs(withInts("moe_exchange_counts", {{"experts", 8}, {"parts", 0}})))
                .back(),
            8);
}

TEST(OpSpec, ParsesAttributesAndRefusesMalformedOnes) {
  std::vector<AttrSpec> attrs;
  std::string error;
  ASSERT_TRUE(parseAttributes("n eps:f axis:s? reduce=sum|max", attrs, error)) << error;
  ASSERT_EQ(attrs.size(), 4u);
  EXPECT_TRUE(attrs[0].required);
  EXPECT_EQ(attrs[1].kind, AttrKind::Float);
  EXPECT_FALSE(attrs[2].required);
  EXPECT_EQ(attrs[3].choices, (std::vector<std::string>{"sum", "max"}));

  std::vector<AttrSpec> bad;
  EXPECT_FALSE(parseAttributes("n eps:d", bad, error));
  EXPECT_EQ(error, "attribute 'eps:d' has kind 'd'; valid kinds are i, f, s");
  bad.clear();
  EXPECT_FALSE(parseAttributes("n n:f", bad, error));
  EXPECT_EQ(error, "attribute 'n' is declared twice");

  std::vector<ElementCount> counts;
  EXPECT_FALSE(parseElements("n; eps*2", attrs, counts, error));
  EXPECT_EQ(error, "element count 'eps*2': 'eps' is neither a number nor an integer "
                   "attribute of the instruction");
  counts.clear();
  EXPECT_FALSE(parseElements("n/eps", attrs, counts, error));
  EXPECT_EQ(error, "element count 'n/eps': the divisor 'eps' is not an integer attribute of "
                   "the instruction");
}

/// One instruction of `op` with the attributes `set` adds.
Status check(const std::string &op, int inputs, int outputs,
             const std::function<void(Instruction &)> &set) {
  Plan plan;
  for (int i = 0; i < inputs + outputs; ++i)
    plan.add_buffers()->add_shape(1);
  Program program;
  program.set_name("optimizer_step");
  Instruction *instr = program.add_instructions();
  instr->set_op(op);
  for (int i = 0; i < inputs; ++i)
    instr->add_inputs(uint32_t(i));
  for (int i = 0; i < outputs; ++i)
    instr->add_outputs(uint32_t(inputs + i));
  set(*instr);
  return checkInstruction(plan, program, 0);
}

void addFloat(Instruction &instr, const char *name, double value) {
  auto *a = instr.add_attributes();
  a->set_name(name);
  a->set_f(value);
}

TEST(OpTable, LoaderRefusesUndeclaredAttributesAndWrongKinds) {
  EXPECT_TRUE(check("clip_coefficient", 1, 1, [](Instruction &i) { addFloat(i, "max_norm", 1); }));
  Status undeclared = check("clip_coefficient", 1, 1, [](Instruction &i) {
    addFloat(i, "max_norm", 1);
    addFloat(i, "max_nrom", 2);
  });
  ASSERT_FALSE(undeclared);
  EXPECT_NE(undeclared.message().find("attribute 'max_nrom' is not one of clip_coefficient's: "
                                      "max_norm (float)"),
            std::string::npos)
      << undeclared.message();
  Status wrongKind = check("clip_coefficient", 1, 1, [](Instruction &i) {
    auto *a = i.add_attributes();
    a->set_name("max_norm");
    a->set_i(1);
  });
  ASSERT_FALSE(wrongKind);
  EXPECT_NE(wrongKind.message().find("missing float attribute 'max_norm'"), std::string::npos)
      << wrongKind.message();
  Status none = check("sqrt", 1, 1, [](Instruction &i) { addFloat(i, "eps", 1); });
  ASSERT_FALSE(none);
  EXPECT_NE(none.message().find("attribute 'eps' is not one of sqrt's: it has none"),
            std::string::npos)
      << none.message();
}

// An instruction's planned workspace: an f32 ACTIVATIONS buffer that is
// none of its operands.
TEST(OpTable, LoaderChecksTheWorkspace) {
  Plan plan;
  for (int i = 0; i < 3; ++i) {
    Buffer *b = plan.add_buffers();
    b->add_shape(1);
    b->set_arena(ACTIVATIONS);
    b->set_dtype(F32);
    b->set_name(i == 2 ? "attention_workspace" : "x");
  }
  Program program;
  program.set_name("forward_backward");
  Instruction *instr = program.add_instructions();
  instr->set_op("sqrt");
  instr->add_inputs(0);
  instr->add_outputs(1);
  instr->set_workspace(2);
  EXPECT_TRUE(checkInstruction(plan, program, 0));
  auto fails = [&](const std::string &what) {
    Status s = checkInstruction(plan, program, 0);
    ASSERT_FALSE(s);
    EXPECT_NE(s.message().find(what), std::string::npos) << s.message();
  };
  instr->set_workspace(3);
  fails("workspace buffer 3 out of range (the plan has 3 buffers)");
  instr->set_workspace(1);
  fails("workspace buffer 1 'x' is also an input or output of the instruction");
  instr->set_workspace(2);
  plan.mutable_buffers(2)->set_dtype(I32);
  fails("workspace buffer 2 'attention_workspace' is not an f32 buffer of the ACTIVATIONS "
        "arena");
  plan.mutable_buffers(2)->set_dtype(F32);
  plan.mutable_buffers(2)->set_arena(PARAMETERS);
  fails("workspace buffer 2 'attention_workspace' is not an f32 buffer of the ACTIVATIONS "
        "arena");
}

TEST(OpTable, MissingKernelIsAnErrorNamingTheOpAndBackend) {
  PerOp<const char *> kernels;
  kernels[Op::add] = "add kernel";
  Program program;
  program.set_name("forward_backward");
  program.add_instructions()->set_op("add");
  auto resolved = resolveKernels(program, kernels, "TestBackend");
  ASSERT_TRUE(resolved) << resolved.message();
  ASSERT_EQ(resolved->size(), 1u);
  EXPECT_STREQ(*(*resolved)[0], "add kernel");

  program.add_instructions()->set_op("rmsnorm");
  auto missing = resolveKernels(program, kernels, "TestBackend");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.message(),
            "program 'forward_backward' instruction 1: op 'rmsnorm' has no TestBackend kernel");
}

} // namespace
} // namespace mt::plan
