// The MoE instructions' string attributes on the CPU backend: an unknown
// load_balancing_type or drop_policy is refused when the executor is made
// (plan::checkInstruction), naming the attribute, the valid values and the
// value given, instead of running as another setting; the decoding both
// backends share (runtime/kernels/MoE.h) refuses it too, naming Megatron's
// option.
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/kernels/MoE.h"
#include "runtime/plan/OpRegistry.h"
#include "test/runtime/cpu/PlanBuilder.h"

#include <gtest/gtest.h>

#include <string>

namespace mt::cpu {
namespace {

constexpr int64_t kTokens = 4, kHidden = 3, kExperts = 4, kTopK = 2;

using Attributes = std::map<std::string, test::PlanBuilder::Value>;

/// One moe_router (or moe_router_grad) instruction over zero-filled buffers.
plan::Plan routerPlan(const std::string &op, const std::string &balancing) {
  test::PlanBuilder b;
  auto x = b.buffer("x", plan::ACTIVATIONS, {kTokens, kHidden});
  auto w = b.buffer("w", plan::PARAMETERS, {kExperts, kHidden});
  auto weights = b.buffer("weights", plan::ACTIVATIONS, {kTokens, kTopK});
  auto aux = b.buffer("aux", plan::ACTIVATIONS, {1});
  auto z = b.buffer("z", plan::ACTIVATIONS, {1});
  Attributes attrs{{"tokens", kTokens},          {"hidden", kHidden},
                   {"experts", kExperts},        {"top_k", kTopK},
                   {"aux_loss_coeff", 0.01},     {"load_balancing_type", balancing}};
  if (op == "moe_router") {
    auto indices = b.buffer("indices", plan::ACTIVATIONS, {kTokens, kTopK}, plan::I32);
    b.instruction("forward_backward", op, {x, w}, {weights, indices, aux, z}, attrs);
  } else {
    auto dx = b.buffer("dx", plan::ACTIVATIONS, {kTokens, kHidden});
    auto dw = b.buffer("dw", plan::GRADIENTS, {kExperts, kHidden});
    b.instruction("forward_backward", op, {x, w, weights, aux, z}, {dx, dw}, attrs);
  }
  return b.build();
}

/// One dropless moe_permute instruction with the given drop_policy.
plan::Plan permutePlan(const std::string &policy) {
  test::PlanBuilder b;
  auto x = b.buffer("x", plan::ACTIVATIONS, {kTokens, kHidden});
  auto probs = b.buffer("probs", plan::ACTIVATIONS, {kTokens, kTopK});
  auto indices = b.buffer("indices", plan::ACTIVATIONS, {kTokens, kTopK}, plan::I32);
  auto permuted = b.buffer("permuted", plan::ACTIVATIONS, {kTokens * kTopK, kHidden});
  auto counts = b.buffer("counts", plan::ACTIVATIONS, {kExperts}, plan::I32);
  auto slotRows = b.buffer("slot_rows", plan::ACTIVATIONS, {kTokens, kTopK}, plan::I32);
  b.instruction("forward_backward", "moe_permute", {x, probs, indices},
                {permuted, counts, slotRows},
                {{"tokens", kTokens},
                 {"hidden", kHidden},
                 {"experts", kExperts},
                 {"top_k", kTopK},
                 {"rows", kTokens * kTopK},
                 {"capacity", int64_t(0)},
                 {"pad_to_capacity", int64_t(0)},
                 {"drop_policy", policy}});
  return b.build();
}

/// Runs the plan's one program; the error message, empty when it ran.
std::string runError(const plan::Plan &p) {
  auto memory = exec::HostMemory::create(p);
  EXPECT_TRUE(memory) << memory.message();
  if (!memory)
    return "no memory";
  // Indices within [0, experts) for the permutation (zero-filled: expert 0
  // twice would not be a router's choice); harmless for the router.
  for (const plan::Buffer &buffer : p.buffers())
    if (buffer.name() == "indices")
      for (int64_t i = 0; i < kTokens * kTopK; ++i)
        (*memory)->i32(buffer.id())[i] = int32_t(i % kTopK);
  auto executor = CpuExecutor::create(p, **memory, nullptr);
  if (!executor)
    return executor.message();
  auto result = executor->run("forward_backward");
  return result ? std::string() : result.message();
}

TEST(MoEAttributes, RouterRunsEveryLoadBalancingType) {
  for (const char *op : {"moe_router", "moe_router_grad"})
    for (const char *type : {"aux_loss", "seq_aux_loss", "none"})
      EXPECT_EQ(runError(routerPlan(op, type)), "") << op << " " << type;
}

TEST(MoEAttributes, RouterRefusesAnUnknownLoadBalancingType) {
  for (const char *op : {"moe_router", "moe_router_grad"}) {
    const plan::Plan p = routerPlan(op, "seq_aux");
    const std::string error = runError(p);
    EXPECT_NE(error.find(std::string("instruction 0 (") + op + "): attribute "
                         "'load_balancing_type' must be one of aux_loss, seq_aux_loss, none, "
                         "got 'seq_aux'"),
              std::string::npos)
        << op << ": " << error;
    auto shape = kernels::routerShapeOf(plan::Attrs(p.programs(0).instructions(0)));
    ASSERT_FALSE(shape) << op;
    EXPECT_NE(shape.message().find("load_balancing_type 'seq_aux' "
                                   "(moe_router_load_balancing_type): expected aux_loss, "
                                   "seq_aux_loss or none"),
              std::string::npos)
        << op << ": " << shape.message();
  }
}

TEST(MoEAttributes, PermuteRunsBothDropPolicies) {
  for (const char *policy : {"probs", "position"})
    EXPECT_EQ(runError(permutePlan(policy)), "") << policy;
}

TEST(MoEAttributes, PermuteRefusesAnUnknownDropPolicy) {
  const plan::Plan p = permutePlan("tokens");
  const std::string error = runError(p);
  EXPECT_NE(error.find("instruction 0 (moe_permute): attribute 'drop_policy' must be one of "
                       "probs, position, got 'tokens'"),
            std::string::npos)
      << error;
  auto policy = kernels::dropPolicyOf(plan::Attrs(p.programs(0).instructions(0)));
  ASSERT_FALSE(policy);
  EXPECT_NE(policy.message().find("drop_policy 'tokens' (moe_token_drop_policy): expected probs "
                                  "or position"),
            std::string::npos)
      << policy.message();
}

/// The shared decoder's other refusals: shapes the router's kernels (CPU
/// and CUDA) cannot take.
TEST(MoEAttributes, RouterShapeRefusesTopKOutsideTheExpertsAndSeqNotDividingTokens) {
  auto decode = [](int64_t topK, int64_t seq) {
    test::PlanBuilder b;
    const plan::Instruction in = b.instruction(
        "forward_backward", "moe_router", {}, {},
        {{"tokens", kTokens}, {"hidden", kHidden}, {"experts", kExperts}, {"top_k", topK},
         {"aux_loss_coeff", 0.01}, {"load_balancing_type", std::string("seq_aux_loss")},
         {"seq", seq}});
    return kernels::routerShapeOf(plan::Attrs(in));
  };
  auto ok = decode(kTopK, 2);
  ASSERT_TRUE(ok) << ok.message();
  EXPECT_EQ(ok->topK, kTopK);
  EXPECT_EQ(ok->seq, 2);
  EXPECT_EQ(ok->loadBalancing, kernels::LoadBalancing::seqAuxLoss);
  EXPECT_EQ(decode(kExperts + 1, 2).message(),
            "top_k 5 (moe_router_topk): expected 1 to experts (4)");
  EXPECT_EQ(decode(0, 2).message(), "top_k 0 (moe_router_topk): expected 1 to experts (4)");
  EXPECT_EQ(decode(kTopK, 3).message(),
            "tokens 4 not a multiple of seq 3 (seq_aux_loss balances each sequence)");
}

} // namespace
} // namespace mt::cpu
