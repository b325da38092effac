// The write-or-add rule of plan instructions (runtime/plan/OpRegistry.h):
// which ops add into their outputs, and what a backend kernel that can
// only write, only add, or do either must do with an output (the decision
// the CUDA lowering takes for every output).
#include "runtime/plan/OpRegistry.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace mt::plan {
namespace {

TEST(OutputUse, BackwardOpsAndAccumulateAddEveryOtherOpWrites) {
  // The backward ops the autodiff and fuse passes emit
  // (dialects/mt/MtGradOps.td) and the accumulation of a value used twice; the CPU kernels' behaviour on
  // compiled plans is checked by WriteOrAddTest. The cross-entropy
  // gradients write: the plan may give them the logits' own buffer.
  const std::set<std::string> adders = {
      "embedding_grad", "linear_grad_input", "linear_grad_weight", "bias_grad",
      "rmsnorm_grad", "add_rmsnorm_grad", "layernorm_grad", "rotary_grad", "attention_grad",
      "attention_block_grad", "attention_merge_grad",
      "swiglu_grad", "gelu_grad", "moe_router_grad", "moe_permute_grad",
      "moe_unpermute_grad", "moe_grouped_mlp_grad", "sigmoid_gate_grad", "accumulate"};
  for (const std::string &op : adders)
    EXPECT_NE(findOp(op), nullptr) << op << " is not an op of the plan format";
  for (const OpSignature &op : allOps())
    EXPECT_EQ(addsIntoOutputs(op.name), adders.count(op.name) == 1) << op.name;
}

TEST(OutputUse, DecisionTable) {
  using K = KernelOutput;
  using U = OutputUse;
  struct Row {
    const char *op;
    bool zeroFilled;
    K kernel;
    U use;
  };
  // A writer writes (over a fill, which it replaces); a writer's output is
  // never added to. An adder adds to earlier values, or into a fill; a
  // kernel that can write replaces the fill instead (0 + g = g).
  const Row rows[] = {
      {"linear", false, K::Writes, U::Write},
      {"linear", false, K::WritesOrAdds, U::Write},
      {"linear", false, K::Adds, U::ErrorMustWriteButAdds},
      {"linear", true, K::Writes, U::WriteOverZeroFill},
      {"linear", true, K::WritesOrAdds, U::WriteOverZeroFill},
      {"linear", true, K::Adds, U::ErrorMustWriteButAdds},
      {"rmsnorm_grad", false, K::Writes, U::ErrorMustAddButWrites},
      {"rmsnorm_grad", false, K::WritesOrAdds, U::AddToEarlierValues},
      {"rmsnorm_grad", false, K::Adds, U::AddToEarlierValues},
      {"rmsnorm_grad", true, K::Writes, U::WriteOverZeroFill},
      {"rmsnorm_grad", true, K::WritesOrAdds, U::WriteOverZeroFill},
      {"rmsnorm_grad", true, K::Adds, U::AddIntoZeroFill},
      {"accumulate", false, K::Adds, U::AddToEarlierValues},
      {"accumulate", true, K::Writes, U::WriteOverZeroFill},
  };
  for (const Row &r : rows)
    EXPECT_EQ(outputUse(r.op, r.zeroFilled, r.kernel), r.use)
        << r.op << " zeroFilled " << r.zeroFilled << " kernel " << int(r.kernel);
}

} // namespace
} // namespace mt::plan
