// ParallelConfig: derived sizes and every validation rule (the YAML reader:
// ParallelConfigYamlTest.cpp).
#include "compiler/config/ParallelConfig.h"
#include "test/compiler/SmallModel.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>

namespace mt {
namespace {

using test::smallModel;

/// Resolves `c` against `m` and returns the error text ("" when valid).
std::string errorOf(ParallelConfig c, const ModelDims &m = smallModel()) {
  Status s = c.resolve(m);
  return s ? "" : s.message();
}

TEST(ParallelConfig, DerivesDataParallelAndBatchFromWorldSize) {
  ParallelConfig c;
  c.tp = 2, c.pp = 2, c.worldSize = 16, c.globalBatch = 32;
  ASSERT_TRUE(c.resolve(smallModel()));
  EXPECT_EQ(c.dp, 4);
  EXPECT_EQ(c.microBatch, 2);
  EXPECT_EQ(c.seq, 64);
  EXPECT_EQ(c.numMicroBatches(), 4);
}

TEST(ParallelConfig, MeshesFoldExpertLayersOverTheSameRanks) {
  ParallelConfig c;
  ModelDims m = smallModel();
  m.numExperts = 4;
  c.tp = 2, c.pp = 2, c.ep = 2, c.etp = 1, c.worldSize = 16;
  ASSERT_TRUE(c.resolve(m));
  // Dense layers: dp = world / (tp·pp·cp) = 4; experts: edp = dp·tp / ep = 4.
  ASSERT_EQ(c.dp, 4);
  EXPECT_EQ(c.edp(), 4);
  EXPECT_EQ(c.denseMesh(), (std::array<int64_t, 4>{2, 4, 1, 2}));
  EXPECT_EQ(c.expertMesh(), (std::array<int64_t, 4>{2, 4, 2, 1}));
  auto product = [](const std::array<int64_t, 4> &a) { return a[0] * a[1] * a[2] * a[3]; };
  EXPECT_EQ(product(c.denseMesh()), c.worldSize);
  EXPECT_EQ(product(c.expertMesh()), c.worldSize);
  // ep does not divide the data: the global batch is micro-batch x dp.
  EXPECT_EQ(c.globalBatch, 2 * 4);
}

// etp defaults to tp (Megatron-Core's expert_tensor_parallel_size): ep2 x
// tp2 folds expert layers as ep2 x etp2 over the 4 ranks of dp2 x tp2.
TEST(ParallelConfig, ExpertTensorParallelismDefaultsToTp) {
  ParallelConfig c;
  ModelDims m = smallModel();
  m.numExperts = 4;
  c.tp = 2, c.ep = 2;
  ASSERT_TRUE(c.resolve(m));
  EXPECT_EQ(c.etp, 2);
  EXPECT_EQ(c.dp, 2);
  EXPECT_EQ(c.worldSize, 4);
  EXPECT_EQ(c.expertMesh(), (std::array<int64_t, 4>{1, 1, 2, 2}));
}

// The distributed optimizer shards experts split over etp over edp, as
// Megatron-Core's: ep2 x etp2 (tp's default) on dp4 x tp2 leaves edp 2.
TEST(ParallelConfig, DistributedOptimizerTakesExpertTensorParallelism) {
  ParallelConfig c;
  ModelDims m = smallModel();
  m.numExperts = 4;
  c.tp = 2, c.ep = 2, c.dp = 4, c.distributedOptimizer = true;
  Status s = c.resolve(m);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(c.etp, 2);
  EXPECT_EQ(c.edp(), 2);
  EXPECT_EQ(c.expertMesh(), (std::array<int64_t, 4>{1, 2, 2, 2}));
}

TEST(ParallelConfig, ExpertParallelismAloneTakesTheFewestRanks) {
  ParallelConfig c;
  ModelDims m = smallModel();
  m.numExperts = 8;
  c.ep = 4;
  ASSERT_TRUE(c.resolve(m));
  EXPECT_EQ(c.dp, 4);
  EXPECT_EQ(c.worldSize, 4);
  EXPECT_EQ(c.etp, 1); // Megatron-Core's default, tp
  EXPECT_EQ(c.edp(), 1);
  EXPECT_EQ(c.numMicroBatches(), 1);
}

// The fewest ranks for ep are told: a plan for 4 ranks from `--ep 4` alone
// should not surprise mtrun's user. Given dp or world size, nothing is told.
TEST(ParallelConfig, NotesADataParallelSizeRaisedForExperts) {
  ModelDims m = smallModel();
  m.numExperts = 8;
  ParallelConfig c;
  c.ep = 4;
  ASSERT_TRUE(c.resolve(m));
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_EQ(c.notes[0], "data_parallel_size (not given) is 4, the smallest at which tp (1) x "
                        "cp (1) x dp is a multiple of expert_model_parallel_size (--ep 4) x "
                        "expert_tensor_parallel_size (--etp 1): the plan runs on 4 ranks; --dp "
                        "or a world size sets it");
  EXPECT_TRUE(c.warnings.empty());
  for (bool world : {false, true}) {
    ParallelConfig d;
    d.ep = 4;
    (world ? d.worldSize : d.dp) = 4;
    ASSERT_TRUE(d.resolve(m));
    EXPECT_EQ(d.dp, 4);
    EXPECT_TRUE(d.notes.empty());
  }
  ParallelConfig folded; // tp 2 x cp 2 hold ep 4 on 4 ranks: dp stays 1
  folded.tp = 2, folded.cp = 2, folded.ep = 4, folded.etp = 1;
  ASSERT_TRUE(folded.resolve(m));
  EXPECT_EQ(folded.dp, 1);
  EXPECT_TRUE(folded.notes.empty());
}

// Settings this layout gives nothing to do are warned about by name, and
// the same values where they act are not.
TEST(ParallelConfig, WarnsOfSettingsWithoutEffect) {
  ModelDims dense = smallModel(), moe = smallModel();
  moe.numExperts = 4;
  auto warnings = [](ParallelConfig c, const ModelDims &m) {
    Status s = c.resolve(m);
    EXPECT_TRUE(s) << s.message();
    return c.warnings;
  };
  using W = std::vector<std::string>;
  ParallelConfig c;
  c.cpCommType = "all_gather";
  EXPECT_EQ(warnings(c, dense),
            W{"cp_comm_type (--cp-comm-type) all_gather has no effect: context_parallel_size "
              "(--cp) is 1, so no rank exchanges keys and values"});
  c.cp = 2;
  EXPECT_EQ(warnings(c, dense), W{});

  // A speed switch given false: the value changes nothing, with why.
  ParallelConfig off;
  off.speedSwitchesOff = {"overlap_grad_reduce", "bias_activation_fusion"};
  EXPECT_EQ(warnings(off, dense),
            (W{"overlap_grad_reduce: false has no effect: " +
                   speedSwitchOffReason("overlap_grad_reduce"),
               "bias_activation_fusion: false has no effect: mtc's kernels fuse as they see fit, "
               "with the same result (`mtc compile --no-fuse` turns its fusions off by name)"}));
  EXPECT_NE(speedSwitchOffReason("overlap_grad_reduce").find("MT_CUDA_OVERLAP=0"),
            std::string::npos);
  EXPECT_EQ(speedSwitchOffReason("sequence_parallel"), "");

  ParallelConfig d;
  d.moeTokenDispatcherType = "allgather";
  EXPECT_EQ(warnings(d, dense),
            W{"moe_token_dispatcher_type (--moe-token-dispatcher-type) allgather has no effect: "
              "this model has no experts (dense)"});
  EXPECT_EQ(warnings(d, moe),
            W{"moe_token_dispatcher_type (--moe-token-dispatcher-type) allgather has no effect: "
              "expert_model_parallel_size (--ep) is 1, so every rank holds every expert and no "
              "token is dispatched"});
  d.ep = 2;
  EXPECT_EQ(warnings(d, moe), W{});

  // etp of a dense model: warned, and it neither raises dp nor fails the
  // folding rule (it is tp).
  ParallelConfig e;
  e.tp = 2, e.etp = 1;
  EXPECT_EQ(warnings(e, dense), W{"expert_tensor_parallel_size (--etp 1) has no effect: this "
                                  "model has no experts (dense)"});
  ASSERT_TRUE(e.resolve(dense));
  EXPECT_EQ(e.etp, 2);
  EXPECT_EQ(e.dp, 1);
  ParallelConfig f;
  f.etp = 2;
  ASSERT_TRUE(f.resolve(dense));
  EXPECT_EQ(f.dp, 1);
  EXPECT_TRUE(f.notes.empty());
  EXPECT_EQ(warnings(e, moe), W{});
  EXPECT_EQ(warnings(ParallelConfig{}, moe), W{});

  // The distributed optimizer with nothing to shard; with dp 2, or the
  // experts' edp 2 (tp 2, etp 1), it shards.
  ParallelConfig o;
  o.distributedOptimizer = true;
  EXPECT_EQ(warnings(o, dense),
            W{"use_distributed_optimizer (--use-distributed-optimizer) has no effect: "
              "data_parallel_size x context_parallel_size is 1, so there is no optimizer state "
              "to shard"});
  o.tp = 2;
  EXPECT_EQ(warnings(o, moe),
            W{"use_distributed_optimizer (--use-distributed-optimizer) has no effect: "
              "data_parallel_size x context_parallel_size is 1 and so is the experts' edp, so "
              "there is no optimizer state to shard"});
  o.etp = 1;
  EXPECT_EQ(warnings(o, moe), W{});
  o.etp = 0, o.dp = 2;
  EXPECT_EQ(warnings(o, dense), W{});

  // moe_shared_expert_overlap: no shared expert, or one this version does
  // not overlap.
  ParallelConfig s;
  s.moeSharedExpertOverlap = true;
  EXPECT_EQ(warnings(s, moe),
            W{"moe_shared_expert_overlap has no effect: this model has no shared expert"});
  ModelDims shared = moe;
  shared.sharedExpert = true;
  EXPECT_EQ(warnings(s, shared),
            W{"moe_shared_expert_overlap has no effect: this version computes the shared expert "
              "after the dispatch, not overlapped with it (the results are the same)"});
  EXPECT_EQ(warnings(ParallelConfig{}, shared), W{});
}

// Rules of independent sizes against the model are all told in one error;
// one broken rule is its own message.
TEST(ParallelConfig, TellsEveryBrokenSizeRuleAtOnce) {
  ModelDims m = smallModel();
  m.numExperts = 6;
  ParallelConfig c;
  c.tp = 3, c.pp = 3, c.cp = 5, c.ep = 4;
  EXPECT_EQ(errorOf(c, m),
            "4 layout errors:\n"
            "  num_attention_heads (8) must be divisible by tensor_model_parallel_size (--tp 3); "
            "tensor_model_parallel_size may be 1, 2 or 4\n"
            "  num_hidden_layers (8) must be divisible by pipeline_model_parallel_size (--pp 3) x "
            "virtual_pipeline_model_parallel_size (--vpp 1) = 3: pp x vpp may be 1, 2, 4 or 8 (or "
            "give an uneven --pp-layout)\n"
            "  seq_length (64) must be divisible by 2 x context_parallel_size (2 x 5 = 10): "
            "context_parallel_size may be 1, 2, 4, 8, 16 or 32, or seq_length 60 or 70 "
            "(Megatron-Core's load balancing cuts the sequence into 2 x cp chunks)\n"
            "  num_experts (6) must be divisible by expert_model_parallel_size (--ep 4): ep may be "
            "1, 2, 3 or 6");
  c.tp = 2, c.pp = 2, c.cp = 1;
  EXPECT_EQ(errorOf(c, m), "num_experts (6) must be divisible by expert_model_parallel_size "
                           "(--ep 4): ep may be 1, 2, 3 or 6");
}

TEST(ParallelConfig, DefaultsToOneRankAndOneMicroBatch) {
  ParallelConfig c;
  ASSERT_TRUE(c.resolve(smallModel()));
  EXPECT_EQ(c.worldSize, 1);
  EXPECT_EQ(c.globalBatch, 2);
}

struct BadCase {
  const char *rule;
  std::function<void(ParallelConfig &, ModelDims &)> set;
  const char *message;
};

// cp_comm_type a2a splits the heads of each tp rank over cp: 8 query and
// 4 kv heads allow cp 4, and cp 2 with tp 2.
TEST(ParallelConfig, AcceptsA2AWhereTheHeadsDivide) {
  for (auto [tp, cp] : {std::pair<int64_t, int64_t>{1, 4}, {2, 2}}) {
    ParallelConfig c;
    c.tp = tp, c.cp = cp, c.cpCommType = "a2a";
    EXPECT_EQ(errorOf(c), "") << "tp " << tp << " cp " << cp;
  }
}

// grad_offload on top of the distributed optimizer (Trinity-RFT's actor
// configurations set both): the host keeps the reduced gradient shards.
TEST(ParallelConfig, AcceptsGradOffloadWithTheDistributedOptimizer) {
  for (bool optimizerOffload : {false, true}) {
    ParallelConfig c;
    c.worldSize = 2, c.gradOffload = c.distributedOptimizer = true;
    c.optimizerOffload = optimizerOffload;
    EXPECT_EQ(errorOf(c), "") << "optimizer_offload " << optimizerOffload;
  }
}

// param_offload with a pipeline (each stage stages its own layers' weights)
// and with the distributed optimizer (the buckets' weights on the host).
TEST(ParallelConfig, AcceptsParamOffloadWithPipelinesAndTheDistributedOptimizer) {
  for (auto [pp, vpp, distributed] : {std::tuple{2, 0, false}, {2, 2, false}, {1, 0, true},
                                      {2, 0, true}}) {
    ParallelConfig c;
    c.worldSize = 4, c.pp = pp, c.vpp = vpp, c.globalBatch = 8;
    c.paramOffload = true, c.distributedOptimizer = distributed;
    EXPECT_EQ(errorOf(c), "") << "pp " << pp << " vpp " << vpp << " distributed " << distributed;
  }
}

/// A mixture-of-experts smallModel: 8 experts.
ModelDims moeModel() {
  ModelDims m = smallModel();
  m.numExperts = 8, m.moeLayers = 8, m.topK = 2, m.hidden = 64;
  return m;
}

// grad_reduce_in_fp32: false where the whole gradient reduction is the dp
// one the CUDA backend rounds to bf16: dense models over dp, with or
// without the distributed optimizer and tp; MoE models whose experts sum
// over dp with the dense weights (ep, etp, tp 1) or have no edp reduction
// (edp 1); the offloads that leave the reduction where it is.
TEST(ParallelConfig, AcceptsGradReduceInBf16WhereOnlyDpReduces) {
  struct Case {
    const char *layout;
    std::function<void(ParallelConfig &)> set;
    bool experts;
  };
  const Case cases[] = {
      {"dp 2", [](ParallelConfig &c) { c.dp = 2; }, false},
      {"dp 2 distributed", [](ParallelConfig &c) { c.dp = 2, c.distributedOptimizer = true; },
       false},
      {"dp 2 tp 2 sp", [](ParallelConfig &c) { c.dp = 2, c.tp = 2, c.sequenceParallel = true; },
       false},
      {"dp 2 optimizer and param offload",
       [](ParallelConfig &c) { c.dp = 2, c.optimizerOffload = c.paramOffload = true; }, false},
      {"MoE dp 2 (experts on @mesh)", [](ParallelConfig &c) { c.dp = 2; }, true},
      {"MoE dp 2 ep 2 (edp 1)", [](ParallelConfig &c) { c.dp = 2, c.ep = 2; }, true},
      {"MoE dp 2 tp 2 ep 2 etp 2 (edp 1)",
       [](ParallelConfig &c) { c.dp = 2, c.tp = 2, c.ep = 2, c.etp = 2; }, true},
  };
  for (const Case &k : cases) {
    ParallelConfig c;
    c.gradReduceInFp32 = false, c.globalBatch = 8;
    k.set(c);
    EXPECT_EQ(errorOf(c, k.experts ? moeModel() : smallModel()), "") << k.layout;
  }
}

// grad_reduce_in_fp32: false is refused by name, with what would be valid,
// wherever a gradient reduction would stay fp32 (cp's, the experts' over
// edp, pipelines', grad_offload's) or none exists (dp 1): Megatron-Core
// applies it to the whole data-parallel reduction, never a part of it.
TEST(ParallelConfig, RefusesGradReduceInBf16WhereItWouldNotApply) {
  const std::string option = "grad_reduce_in_fp32: false (--grad-reduce-in-bf16)";
  const std::string cpRule =
      option + " needs context_parallel_size (--cp) 1, got --cp 2: the dense gradients also "
               "sum over cp, and the CUDA backend rounds to bf16 only the dp reduction it "
               "overlaps with backward (forward_backward communicates over cp itself); use "
               "--cp 1, or keep grad_reduce_in_fp32: true";
  const std::string dpRule = option + " needs data parallelism (--dp > 1): with dp 1 there is "
                                      "no gradient reduction to round to bf16 (the gradients "
                                      "themselves are fp32)";
  auto edpRule = [&](int64_t edp, int64_t ranks) {
    return option + " would leave the expert gradients' reduction over the expert "
                    "data-parallel group (edp = tp x cp x dp / (ep x etp) = " +
           std::to_string(edp) + ") in fp32: the CUDA backend rounds to bf16 only the dp "
                                 "reduction; use expert_model_parallel_size (--ep) x "
                                 "expert_tensor_parallel_size (--etp) = tp x cp x dp = " +
           std::to_string(ranks) + " (edp 1), or keep grad_reduce_in_fp32: true";
  };
  struct Case {
    const char *layout;
    std::function<void(ParallelConfig &)> set;
    bool experts;
    std::string message;
  };
  const Case cases[] = {
      {"dp 1", [](ParallelConfig &) {}, false, dpRule},
      {"dp 1 tp 2", [](ParallelConfig &c) { c.tp = 2; }, false, dpRule},
      {"MoE dp 1 ep 1 (experts on @mesh)", [](ParallelConfig &) {}, true, dpRule},
      {"cp 2, dp 1", [](ParallelConfig &c) { c.cp = 2; }, false, cpRule},
      {"cp 2, dp 2", [](ParallelConfig &c) { c.cp = 2, c.dp = 2; }, false, cpRule},
      {"cp 2, dp 2 distributed",
       [](ParallelConfig &c) { c.cp = 2, c.dp = 2, c.distributedOptimizer = true; }, false,
       cpRule},
      {"MoE tp 2 etp 1: dp 1, edp 2", [](ParallelConfig &c) { c.tp = 2, c.etp = 1; }, true,
       edpRule(2, 2)},
      {"MoE dp 2 tp 2 (etp 2): edp 2", [](ParallelConfig &c) { c.dp = 2, c.tp = 2; }, true,
       edpRule(2, 4)},
      {"MoE dp 4 ep 2: edp 2", [](ParallelConfig &c) { c.dp = 4, c.ep = 2; }, true,
       edpRule(2, 4)},
      {"pp 2, dp 2", [](ParallelConfig &c) { c.pp = 2, c.dp = 2; }, false,
       option + " needs pipeline_model_parallel_size (--pp) 1, got --pp 2: pipelines reduce "
                "the dp gradients in each stage's optimizer program, in fp32; the CUDA backend "
                "rounds to bf16 only the reduction it overlaps with backward (one stage)"},
      {"grad_offload, dp 2", [](ParallelConfig &c) { c.dp = 2, c.gradOffload = true; }, false,
       option + " with grad_offload (--grad-offload) is not supported: the offloaded gradients "
                "are reduced in the optimizer program, in fp32; the CUDA backend rounds to bf16 "
                "only the reduction it overlaps with backward; use one of the two"},
  };
  for (const Case &k : cases) {
    ParallelConfig c;
    c.gradReduceInFp32 = false, c.globalBatch = 8;
    k.set(c);
    const ModelDims m = k.experts ? moeModel() : smallModel();
    EXPECT_EQ(errorOf(c, m), k.message) << k.layout;
    c.gradReduceInFp32 = true; // the same layout reducing in fp32 is valid
    EXPECT_EQ(errorOf(c, m), "") << k.layout;
  }
}

TEST(ParallelConfig, RejectsEveryInconsistentLayoutWithItsValues) {
  const BadCase cases[] = {
      {"heads % tp", [](auto &c, auto &m) { c.tp = 3; m.numKvHeads = 3; m.numHeads = 8; },
       "num_attention_heads (8) must be divisible by tensor_model_parallel_size (--tp 3); "
       "tensor_model_parallel_size may be 1"},
      {"kv heads % tp", [](auto &c, auto &) { c.tp = 8; },
       "num_key_value_heads (4) must be divisible by tensor_model_parallel_size (--tp 8); "
       "tensor_model_parallel_size may be 1, 2 or 4"},
      {"layers % pp*vpp", [](auto &c, auto &) { c.pp = 3; },
       "num_hidden_layers (8) must be divisible by pipeline_model_parallel_size (--pp 3) x "
       "virtual_pipeline_model_parallel_size (--vpp 1) = 3: pp x vpp may be 1, 2, 4 or 8"},
      {"layers % pp*vpp with vpp", [](auto &c, auto &m) { c.pp = 2, c.vpp = 3; m.numLayers = 8; },
       "num_hidden_layers (8) must be divisible by pipeline_model_parallel_size (--pp 2) x "
       "virtual_pipeline_model_parallel_size (--vpp 3) = 6"},
      {"more stages than layers", [](auto &c, auto &) { c.pp = 4, c.vpp = 4; },
       "pipeline_model_parallel_size (--pp 4) x virtual_pipeline_model_parallel_size (--vpp 4) "
       "= 16 exceed num_hidden_layers (8): pp x vpp may be 1, 2, 4 or 8"},
      {"vpp without pp", [](auto &c, auto &) { c.vpp = 2; },
       "virtual_pipeline_model_parallel_size (--vpp 2) needs pipeline_model_parallel_size (--pp) > 1"},
      {"sp without tp", [](auto &c, auto &) { c.sequenceParallel = true; },
       "sequence_parallel (--sp) needs tensor_model_parallel_size (--tp) > 1"},
      {"experts % ep", [](auto &c, auto &m) { m.numExperts = 6; c.ep = 4; },
       "num_experts (6) must be divisible by expert_model_parallel_size (--ep 4): ep may be 1, "
       "2, 3 or 6"},
      {"expert ffn % etp", [](auto &c, auto &m) { m.numExperts = 4, m.expertFfn = 24; c.etp = 5; },
       "moe_intermediate_size (24, the experts' ffn width) must be divisible by "
       "expert_tensor_parallel_size (--etp 5): etp may be 1, 2, 3, 4, 6, 8, 12 or 24"},
      {"expert ffn % etp from tp",
       [](auto &c, auto &m) { m.numExperts = 4, m.expertFfn = 6; c.tp = 4; },
       "moe_intermediate_size (6, the experts' ffn width) must be divisible by "
       "expert_tensor_parallel_size (--etp 4, by default tensor_model_parallel_size): etp may be "
       "1, 2, 3 or 6"},
      {"ep on dense", [](auto &c, auto &) { c.ep = 2; },
       "expert_model_parallel_size (--ep 2) needs a mixture-of-experts model"},
      {"capacity with tp",
       [](auto &c, auto &m) { m.numExperts = 4, m.expertCapacity = true, c.tp = 2; },
       "moe_expert_capacity_factor (an expert capacity, given at import) with "
       "tensor_model_parallel_size (--tp 2) is not supported yet"},
      {"capacity with cp",
       [](auto &c, auto &m) { m.numExperts = 4, m.expertCapacity = true, c.cp = 2; },
       "context_parallel_size (--cp 2) is not supported yet: each rank would size the capacity "
       "by its own share of the tokens and drop other tokens than one rank would; import the "
       "model dropless (without --moe-expert-capacity-factor), or use --cp 1"},
      {"seq % 2cp", [](auto &c, auto &m) { c.cp = 3; m.seq = 64; },
       "seq_length (64) must be divisible by 2 x context_parallel_size (2 x 3 = 6): "
       "context_parallel_size may be 1, 2, 4, 8, 16 or 32, or seq_length 60 or 66 (Megatron-Core's "
       "load balancing cuts the sequence into 2 x cp chunks)"},
      {"seq % 2cp, below one chunk pair", [](auto &c, auto &m) { c.cp = 4; m.seq = 6; },
       "context_parallel_size may be 1 or 3, or seq_length 8 (Megatron-Core's"},
      {"cp_comm_type not built", [](auto &c, auto &) { c.cp = 2, c.cpCommType = "a2a+p2p"; },
       "cp_comm_type (--cp-comm-type) 'a2a+p2p': hierarchical context parallelism is not built "
       "in this version of mtc; use p2p, all_gather or a2a"},
      {"cp_comm_type unknown", [](auto &c, auto &) { c.cp = 2, c.cpCommType = "ring"; },
       "cp_comm_type (--cp-comm-type) 'ring': expected one of Megatron-Core's p2p, all_gather, "
       "a2a"},
      {"a2a kv heads % cp", [](auto &c, auto &) { c.cp = 8, c.cpCommType = "a2a"; },
       "cp_comm_type a2a splits the attention heads over context_parallel_size (--cp 8): "
       "num_attention_heads (8) and num_key_value_heads (4) divided by "
       "tensor_model_parallel_size (--tp 1) must be divisible by it"},
      {"a2a heads per tp rank % cp", [](auto &c, auto &) { c.tp = 2, c.cp = 4, c.cpCommType = "a2a"; },
       "num_attention_heads (8) and num_key_value_heads (4) divided by "
       "tensor_model_parallel_size (--tp 2) must be divisible by it"},
      {"world % model parallel", [](auto &c, auto &) { c.tp = 2, c.pp = 2, c.worldSize = 6; },
       "world size (6) must be divisible by tp (2) x pp (2) x cp (1) = 4"},
      {"ep x etp divides a stage", [](auto &c, auto &m) {
         m.numExperts = 8; c.ep = 4, c.etp = 1, c.tp = 2, c.worldSize = 2; },
       "expert_model_parallel_size (--ep 4) x expert_tensor_parallel_size (--etp 1) = 4 must "
       "divide tp (2) x cp (1) x dp (1) = 2: expert layers fold over the ranks of a pipeline "
       "stage; ep x etp may be 1 or 2 (or more ranks)"},
      {"dispatcher not built", [](auto &c, auto &m) {
         m.numExperts = 8; c.ep = 2, c.moeTokenDispatcherType = "flex"; },
       "moe_token_dispatcher_type (--moe-token-dispatcher-type) 'flex': not built in this "
       "version of mtc; use alltoall or allgather"},
      {"dispatcher unknown", [](auto &c, auto &m) {
         m.numExperts = 8; c.moeTokenDispatcherType = "all_to_all"; },
       "moe_token_dispatcher_type (--moe-token-dispatcher-type) 'all_to_all': expected one of "
       "Megatron-Core's alltoall, allgather, flex"},
      {"world != product", [](auto &c, auto &) { c.tp = 2, c.dp = 2, c.worldSize = 8; },
       "world size (8) must equal tp (2) x pp (1) x cp (1) x dp (2) = 4"},
      {"global % micro*dp", [](auto &c, auto &) { c.dp = 4, c.globalBatch = 12; },
       "global_batch_size (12) must be divisible by micro_batch_size (2) x data parallel size (4) = 8; "
       "the nearest valid: 8 and 16"},
      {"vpp micro-batches % pp", [](auto &c, auto &) { c.pp = 2, c.vpp = 2, c.globalBatch = 6; },
       "the number of micro-batches (3 = global_batch_size 6 / (micro_batch_size 2 x dp 1)) must be a multiple of pp (2)"},
      {"sizes overflow", [](auto &c, auto &) { c.pp = 4, c.vpp = int64_t(1) << 62; },
       "tp (1) x pp (4) x vpp (4611686018427387904) x cp (1) x ep (1) x etp (0) x dp (0) x world size (0) "
       "x micro_batch_size (0) overflows 64-bit integers"},
      {"tp < 1", [](auto &c, auto &) { c.tp = 0; },
       "tensor_model_parallel_size (--tp) must be >= 1, got 0"},
      {"seq differs from model", [](auto &c, auto &) { c.seq = 128; },
       "seq_length (--seq) is 128 but the model's inputs have sequence length 64"},
      {"micro-batch differs from model", [](auto &c, auto &) { c.microBatch = 4; },
       "micro_batch_size (--micro-batch) is 4 but the model's inputs have micro-batch 2"},
      {"overlap_param_gather alone", [](auto &c, auto &) { c.overlapParamGather = true; },
       "overlap_param_gather (--overlap-param-gather) needs use_distributed_optimizer "
       "(--use-distributed-optimizer): without it there is no parameter all-gather"},
      {"param_offload with overlap_param_gather", [](auto &c, auto &) {
         c.paramOffload = c.distributedOptimizer = c.overlapParamGather = true;
       },
       "overlap_param_gather (--overlap-param-gather) with param_offload (--param-offload) is "
       "not supported: the weights all-gathered behind the next forward would have to stay on "
       "the device; use one of the two"},
      {"recompute granularity", [](auto &c, auto &) { c.recompute.granularity = "partial"; },
       "recompute_granularity (--recompute-granularity) must be full or selective (or null for "
       "no recompute), got 'partial'"},
      {"recompute method", [](auto &c, auto &) {
         c.recompute.granularity = "full", c.recompute.method = "even"; },
       "recompute_method (--recompute-method) must be uniform or block (or null), got 'even'"},
      {"full without method", [](auto &c, auto &) {
         c.recompute.granularity = "full", c.recompute.numLayers = 2; },
       "recompute_granularity (--recompute-granularity) full needs recompute_method "
       "(--recompute-method) uniform or block"},
      {"full, too many layers", [](auto &c, auto &) {
         c.recompute.granularity = "full", c.recompute.method = "block", c.recompute.numLayers = 9;
         c.pp = 2; },
       "recompute_num_layers (--recompute-num-layers) must be between 1 and the layers of a "
       "pipeline chunk (4) with recompute_granularity (--recompute-granularity) full and "
       "recompute_method (--recompute-method) block, got 9"},
      {"recompute method without its layers", [](auto &c, auto &) {
         c.recompute.granularity = "full", c.recompute.method = "uniform"; },
       "recompute_num_layers (--recompute-num-layers) must be between 1 and the layers of a "
       "pipeline chunk (8) with recompute_granularity (--recompute-granularity) full and "
       "recompute_method (--recompute-method) uniform, not given"},
      {"selective with num_layers", [](auto &c, auto &) {
         c.recompute.granularity = "selective", c.recompute.numLayers = 1; },
       "recompute_num_layers (--recompute-num-layers) applies to recompute_granularity "
       "(--recompute-granularity) full"},
      {"unknown module", [](auto &c, auto &) {
         c.recompute.granularity = "selective", c.recompute.modules = {"mla_up_proj"}; },
       "recompute_modules (--recompute-modules): unknown module 'mla_up_proj' (valid: core_attn, "
       "mlp, layernorm, moe_act, moe)"},
      {"moe on a dense model", [](auto &c, auto &) {
         c.recompute.granularity = "selective", c.recompute.modules = {"moe"}; },
       "recompute_modules (--recompute-modules): moe recomputes mixture-of-experts layers; "
       "this model is dense"},
      {"moe_layer_recompute with full", [](auto &c, auto &) {
         c.recompute.granularity = "full", c.recompute.moeLayerRecompute = true; },
       "moe_layer_recompute (--moe-layer-recompute) cannot be combined with "
       "recompute_granularity (--recompute-granularity) full (which recomputes whole layers, "
       "MoE ones too): it is selective recompute with moe; give one of the two, or "
       "recompute_granularity (--recompute-granularity) selective with recompute_modules "
       "(--recompute-modules) moe"},
      {"moe_layer_recompute on a dense model", [](auto &c, auto &) {
         c.recompute.moeLayerRecompute = true; },
       "moe_layer_recompute (--moe-layer-recompute) recomputes mixture-of-experts layers; this "
       "model is dense"},
      {"method without granularity", [](auto &c, auto &) { c.recompute.method = "uniform"; },
       "recompute_method (--recompute-method) has no effect without recompute_granularity "
       "(--recompute-granularity) full or selective"},
  };
  for (const BadCase &bad : cases) {
    ParallelConfig c;
    ModelDims m = smallModel();
    bad.set(c, m);
    EXPECT_NE(errorOf(c, m).find(bad.message), std::string::npos)
        << bad.rule << ": got \"" << errorOf(c, m) << "\"";
  }
}

TEST(ParallelConfig, UnevenPipelineLayouts) {
  ParallelConfig c;
  c.pp = 4, c.ppLayout = {1, 3, 3, 1};
  ASSERT_TRUE(c.resolve(smallModel()));
  EXPECT_EQ(c.chunkLayers, (std::vector<int64_t>{1, 3, 3, 1}));
  ParallelConfig m;
  m.pp = 4, m.firstStageLayers = 1, m.lastStageLayers = 3;
  ASSERT_TRUE(m.resolve(smallModel()));
  EXPECT_EQ(m.chunkLayers, (std::vector<int64_t>{1, 2, 2, 3}));
  ParallelConfig even;
  even.pp = 2, even.vpp = 2, even.globalBatch = 4;
  ASSERT_TRUE(even.resolve(smallModel()));
  EXPECT_EQ(even.chunkLayers, (std::vector<int64_t>(4, 2)));

  const BadCase cases[] = {
      {"layout length", [](auto &c, auto &) { c.pp = 4, c.ppLayout = {2, 2, 4}; },
       "--pp-layout gives 3 stages, but --pp is 4"},
      {"layout sum", [](auto &c, auto &) { c.pp = 2, c.ppLayout = {3, 3}; },
       "--pp-layout assigns 6 layers, the model has 8"},
      {"empty stage", [](auto &c, auto &) { c.pp = 2, c.ppLayout = {0, 8}; },
       "--pp-layout: every stage needs at least one layer, got 0"},
      {"with vpp", [](auto &c, auto &) { c.pp = 2, c.vpp = 2, c.ppLayout = {3, 5}; },
       "cannot be combined with virtual_pipeline_model_parallel_size (--vpp 2)"},
      {"without pp", [](auto &c, auto &) { c.firstStageLayers = 2; },
       "an uneven pipeline layout needs pipeline_model_parallel_size (--pp) > 1"},
      {"uneven middle", [](auto &c, auto &) { c.pp = 4, c.firstStageLayers = 1, c.lastStageLayers = 2; },
       "leave 5 of 8 layers for 2 other stages; they must split evenly"},
      {"both", [](auto &c, auto &) { c.pp = 2, c.ppLayout = {4, 4}, c.firstStageLayers = 4; },
       "give either --pp-layout or decoder_first/last_pipeline_num_layers, not both"},
  };
  for (const BadCase &bad : cases) {
    ParallelConfig b;
    ModelDims md = smallModel();
    bad.set(b, md);
    EXPECT_NE(errorOf(b, md).find(bad.message), std::string::npos)
        << bad.rule << ": got \"" << errorOf(b, md) << "\"";
  }
}

TEST(OptimizerConfig, RejectsOutOfRangeValuesByName) {
  auto errorOf = [](auto set) {
    OptimizerConfig o;
    set(o);
    Status s = o.validate();
    return s ? std::string() : s.message();
  };
  EXPECT_EQ(errorOf([](auto &o) { o.lr = 0; }), "lr (--lr) must be > 0, got 0");
  EXPECT_EQ(errorOf([](auto &o) { o.minLr = 1; }), "min_lr (--min-lr) must be in [0, lr = 0.0003], got 1");
  EXPECT_EQ(errorOf([](auto &o) { o.decayStyle = "exp"; }),
            "lr_decay_style (--lr-decay-style) must be cosine, linear or constant, got 'exp'");
  // Without lr_decay_iters, the decay ends at train_iters, and the error
  // says where the value came from.
  EXPECT_EQ(errorOf([](auto &o) { o.warmupSteps = 200; }),
            "lr_decay_iters (100: train_iters (--train-steps), as none was given) must be > "
            "lr_warmup_iters (200)");
  EXPECT_EQ(errorOf([](auto &o) { o.warmupSteps = 200, o.decaySteps = 150; }),
            "lr_decay_iters (150) must be > lr_warmup_iters (200)");
  // Megatron-Core asserts warmup < decay; transformers' schedules take any
  // warm-up, one longer than the run too (its rate then rises all run long
  // at the warm-up's slope).
  EXPECT_EQ(errorOf([](auto &o) { o.warmupSteps = 100, o.decaySteps = 100; }),
            "lr_decay_iters (100) must be > lr_warmup_iters (100)");
  EXPECT_EQ(errorOf([](auto &o) { o.warmupSteps = 100, o.decayStyle = "hf_linear"; }), "");
  EXPECT_EQ(errorOf([](auto &o) { o.warmupSteps = 101, o.decayStyle = "hf_linear"; }), "");
  EXPECT_EQ(errorOf([](auto &o) { o.beta1 = 1; }),
            "adam_beta1 and adam_beta2 must be in [0, 1), got 1 and 0.999");
  EXPECT_EQ(errorOf([](auto &o) { o.trainSteps = 0; }),
            "train_iters (--train-steps) must be >= 1, got 0");
}

// Megatron-Core's and MCoreAdapter's defaults are filled in.
TEST(ParallelConfig, RecomputeDefaults) {
  ParallelConfig full;
  full.recompute.granularity = "full";
  ASSERT_EQ(errorOf(full), "");
  ASSERT_TRUE(full.resolve(smallModel()));
  EXPECT_EQ(full.recompute.describe(), "full, uniform, 1 layer per unit");
  ParallelConfig selective;
  selective.recompute.granularity = "selective";
  ASSERT_TRUE(selective.resolve(smallModel()));
  EXPECT_EQ(selective.recompute.describe(), "selective: core_attn");
  ParallelConfig moe;
  moe.recompute.moeLayerRecompute = true;
  ModelDims experts = smallModel();
  experts.numExperts = 4;
  ASSERT_TRUE(moe.resolve(experts));
  EXPECT_EQ(moe.recompute.describe(), "selective: core_attn, moe");
  EXPECT_EQ(ParallelConfig().recompute.describe(), "none");
}

// Megatron-Core's rule for the key at tp 1: sequence parallelism off, with
// a warning naming where the key was given; at tp > 1, or off, nothing.
TEST(ParallelConfig, SequenceParallelKeyAtTp1IsTurnedOffWithAWarning) {
  ParallelConfig c;
  c.sequenceParallel = true;
  std::string w = sequenceParallelOffAtTp1(c, "sft.yaml:12:20: ");
  EXPECT_EQ(w, "sft.yaml:12:20: sequence_parallel: true needs tensor_model_parallel_size > 1, "
               "and it is 1: sequence parallelism is off (as Megatron-Core turns it off); set "
               "tensor_model_parallel_size >= 2 for it, or remove the key");
  EXPECT_FALSE(c.sequenceParallel);
  EXPECT_EQ(errorOf(c), ""); // the layout resolves now
  EXPECT_EQ(sequenceParallelOffAtTp1(c, "sft.yaml:12:20: "), "");
  c.sequenceParallel = true, c.tp = 2;
  EXPECT_EQ(sequenceParallelOffAtTp1(c, "sft.yaml:12:20: "), "");
  EXPECT_TRUE(c.sequenceParallel);
}

TEST(ParallelConfig, LayoutErrorsNoteWhereTheKeysTheyNameWereGiven) {
  const std::map<std::string, std::string> givenAt = {
      {"tensor_model_parallel_size", givenAtNote("tensor_model_parallel_size", "a.yaml:2:29: ")},
      {"expert_tensor_parallel_size", givenAtNote("expert_tensor_parallel_size", "a.yaml:3:30")},
      {"micro_batch_size",
       givenAtNote("micro_batch_size", "command line", "per_device_train_batch_size")},
      {"pipeline_model_parallel_size", givenAtNote("pipeline_model_parallel_size", "a.yaml:4:1")},
  };
  // By key, by flag and by short name; each note once, in the table's order.
  EXPECT_EQ(withGivenAt("world size (6) must be divisible by tp (2) x pp (2) x cp (1) = 4",
                        givenAt),
            "world size (6) must be divisible by tp (2) x pp (2) x cp (1) = 4\n"
            "note: tensor_model_parallel_size was given at a.yaml:2:29\n"
            "note: pipeline_model_parallel_size was given at a.yaml:4:1");
  EXPECT_EQ(withGivenAt("micro_batch_size (2) x dp (1) with --tp 2", givenAt),
            "micro_batch_size (2) x dp (1) with --tp 2\n"
            "note: tensor_model_parallel_size was given at a.yaml:2:29\n"
            "note: micro_batch_size is per_device_train_batch_size, given at command line");
  // Not a name's part: etp's "tp (", --pp-layout's "--pp", vpp's key.
  EXPECT_EQ(withGivenAt("etp (2) and --pp-layout 3,5", givenAt),
            "etp (2) and --pp-layout 3,5\n"
            "note: expert_tensor_parallel_size was given at a.yaml:3:30");
  EXPECT_EQ(withGivenAt("virtual_pipeline_model_parallel_size (--vpp 2) is odd", givenAt),
            "virtual_pipeline_model_parallel_size (--vpp 2) is odd");
  EXPECT_EQ(optionKeyOfFlag("--tp"), "tensor_model_parallel_size");
  EXPECT_EQ(optionKeyOfFlag("--pp-layout"), "");
}

} // namespace
} // namespace mt
