// The CUDA backend's arena sizes as the plan determines them: bf16
// activations at half size, 32-bit activations apart, bf16 parameter
// shadows, staged weights with their bf16 copy (runtime/plan/DeviceFootprint.h).
#include "runtime/plan/DeviceFootprint.h"

#include <gtest/gtest.h>

namespace mt::plan {
namespace {

Buffer *addBuffer(Plan &p, const std::string &name, DType dtype, std::vector<int64_t> shape,
                  ArenaKind arena, uint64_t offset) {
  auto *b = p.add_buffers();
  b->set_id(uint32_t(p.buffers_size() - 1));
  b->set_name(name);
  b->set_dtype(dtype);
  uint64_t elements = 1;
  for (int64_t d : shape) {
    b->add_shape(d);
    elements *= uint64_t(d);
  }
  b->set_arena(arena);
  b->set_offset_bytes(offset);
  b->set_size_bytes(elements * 4);
  return b;
}

// optimizer_offload: the GPU keeps the bf16 copy of the weights and room for
// the largest updated master, no fp32 weights; not with a parameter without
// a host master, a bucket (the distributed optimizer) or a MoE router.
TEST(DeviceFootprint, KeepsNoFp32WeightsWhenEveryMasterIsOnTheHost) {
  Plan p;
  for (auto [kind, bytes] : {std::pair{PARAMETERS, 4096}, {HOST_PARAMETERS, 4096},
                             {STAGED_GRADIENTS, 512}}) {
    auto *a = p.add_arenas();
    a->set_kind(kind);
    a->set_size_bytes(uint64_t(bytes));
  }
  addBuffer(p, "w", F32, {16, 8}, PARAMETERS, 0);         // 512 bytes
  addBuffer(p, "v", F32, {8}, PARAMETERS, 512);           // 32 bytes
  addBuffer(p, "master:w", F32, {16, 8}, HOST_PARAMETERS, 0);
  addBuffer(p, "master:v", F32, {8}, HOST_PARAMETERS, 512);
  for (uint32_t w : {0u, 1u}) {
    Parameter &param = *p.add_parameters();
    param.set_param_buffer(w);
    param.set_trainable(true);
    param.set_master_buffer(w + 2);
  }
  Program &optimizer = *p.add_programs();
  for (uint32_t w : {0u, 1u}) {
    Instruction &copy = *optimizer.add_instructions();
    copy.set_op("copy_to_device");
    copy.add_inputs(w + 2);
    copy.add_outputs(w);
  }
  ASSERT_TRUE(fp32WeightsOnHost(p));
  DeviceFootprint f = deviceFootprint(p);
  EXPECT_EQ(f.weights, 0u);
  EXPECT_EQ(f.weightStaging, 512u);
  EXPECT_EQ(f.shadows, 2048u);
  EXPECT_EQ(f.stagedGradients, 512u); // grad_offload's arena, fp32 on the GPU
  EXPECT_EQ(f.total(), 512u + 2048 + 512);

  Plan router = p;
  router.add_programs()->add_instructions()->set_op("moe_router");
  EXPECT_FALSE(fp32WeightsOnHost(router));
  EXPECT_EQ(deviceFootprint(router).weights, 4096u);
  Plan bucketed = p;
  bucketed.add_buckets();
  EXPECT_FALSE(fp32WeightsOnHost(bucketed));
  Plan withoutMaster = p;
  withoutMaster.mutable_parameters(1)->set_master_buffer(0);
  EXPECT_FALSE(fp32WeightsOnHost(withoutMaster));
  EXPECT_EQ(deviceFootprint(withoutMaster).weightStaging, 0u);

  // The host's fp32 weights are the masters: so in `p`, not where a
  // parameter has no master or one of another size.
  EXPECT_TRUE(hostWeightsAreMasters(p));
  EXPECT_FALSE(hostWeightsAreMasters(withoutMaster));
  EXPECT_FALSE(hostWeightsAreMasters(bucketed));
  Plan frozen = p;
  frozen.mutable_parameters(1)->set_trainable(false);
  frozen.mutable_parameters(1)->set_master_buffer(0);
  EXPECT_TRUE(fp32WeightsOnHost(frozen));
  EXPECT_FALSE(hostWeightsAreMasters(frozen));
  Plan resized = p;
  resized.mutable_buffers(3)->set_size_bytes(64);
  EXPECT_FALSE(hostWeightsAreMasters(resized));
  Plan paramOffload = p; // the weights in HOST_WEIGHTS, apart from the masters
  paramOffload.mutable_buffers(1)->set_arena(HOST_WEIGHTS);
  EXPECT_FALSE(hostWeightsAreMasters(paramOffload));
}

// param_offload: the weights stay on the host (pinned, not a device arena);
// the GPU holds the staged window in fp32 and its bf16 copy, and no
// resident weights or shadows.
// Every fp32 weight on the GPU, AdamW its only fp32 reader: each kept as its
// bf16 copy plus 16 low bits (2 + 2 bytes instead of 4 + 2), a MoE router's
// weight besides as its fp32 master; not with a bucket, a collective or a
// host copy of a weight.
TEST(DeviceFootprint, KeepsMastersAsTheirBf16CopyAndLowBits) {
  Plan p;
  for (auto [kind, bytes] : {std::pair{PARAMETERS, 4096}, {GRADIENTS, 4096}}) {
    auto *a = p.add_arenas();
    a->set_kind(kind);
    a->set_size_bytes(uint64_t(bytes));
  }
  addBuffer(p, "w", F32, {16, 8}, PARAMETERS, 0);
  addBuffer(p, "grad:w", F32, {16, 8}, GRADIENTS, 0);
  Parameter &param = *p.add_parameters();
  param.set_param_buffer(0);
  param.set_trainable(true);
  Instruction &adamw = *p.add_programs()->add_instructions();
  adamw.set_op("adamw");
  adamw.add_inputs(0);
  adamw.add_inputs(1);
  adamw.add_outputs(0);
  Instruction &linear = *p.mutable_programs(0)->add_instructions();
  linear.set_op("linear");
  linear.add_inputs(0);
  ASSERT_TRUE(masterRemainders(p));
  DeviceFootprint f = deviceFootprint(p);
  EXPECT_EQ(f.weights, 0u);
  EXPECT_EQ(f.shadows, 2048u);
  EXPECT_EQ(f.remainders, 2048u);
  EXPECT_EQ(f.total(), 2048u + 2048 + 4096);

  Plan routed = p;
  Instruction &router = *routed.mutable_programs(0)->add_instructions();
  router.set_op("moe_router");
  router.add_inputs(0);
  router.add_inputs(0);
  ASSERT_TRUE(masterRemainders(routed));
  f = deviceFootprint(routed);
  EXPECT_EQ(f.weights, 0u);
  EXPECT_EQ(f.remainders, 2048u);
  EXPECT_EQ(f.routerWeights, (std::map<uint32_t, uint64_t>{{0u, 0u}}));
  EXPECT_EQ(f.routerWeightBytes, 512u);
  EXPECT_EQ(f.total(), 512u + 2048 + 2048 + 4096);

  for (const char *op : {"all_gather", "all_reduce", "copy_to_host"}) {
    Plan reader = p;
    Instruction &r = *reader.mutable_programs(0)->add_instructions();
    r.set_op(op);
    r.add_inputs(0);
    EXPECT_FALSE(masterRemainders(reader)) << op;
    EXPECT_EQ(deviceFootprint(reader).weights, 4096u) << op;
    EXPECT_EQ(deviceFootprint(reader).remainders, 0u) << op;
  }
  Plan gradientsOnly = p; // a collective of gradients leaves the weights alone
  Instruction &reduce = *gradientsOnly.mutable_programs(0)->add_instructions();
  reduce.set_op("all_reduce");
  reduce.add_inputs(1);
  reduce.add_outputs(1);
  EXPECT_TRUE(masterRemainders(gradientsOnly));
  Plan bucketed = p;
  bucketed.add_buckets();
  EXPECT_FALSE(masterRemainders(bucketed));
}

TEST(DeviceFootprint, StagesParamOffloadsWeightsInFp32AndBf16) {
  Plan p;
  for (auto [kind, bytes] : {std::pair{HOST_WEIGHTS, 4096}, {STAGED_WEIGHTS, 1024},
                             {GRADIENTS, 4096}}) {
    auto *a = p.add_arenas();
    a->set_kind(kind);
    a->set_size_bytes(uint64_t(bytes));
  }
  const DeviceFootprint f = deviceFootprint(p);
  EXPECT_EQ(f.weights, 0u);
  EXPECT_EQ(f.shadows, 0u);
  EXPECT_EQ(f.stagedWeights, 1024u);
  EXPECT_EQ(f.stagedWeightShadows, 512u);
  EXPECT_EQ(f.total(), 1024u + 512 + 4096);
}

Instruction &addCollective(Program &program, const char *op, uint32_t in, uint32_t out) {
  Instruction &instr = *program.add_instructions();
  instr.set_op(op);
  instr.add_inputs(in);
  instr.add_outputs(out);
  Attribute &outer = *instr.add_attributes();
  outer.set_name("outer");
  outer.set_i(1);
  return instr;
}

// The distributed optimizer's weight buckets on CUDA (Megatron-Core's main
// params): the rank's fp32 master shard after the other fp32 weights, the
// buckets' whole ranges left out; the bf16 shadow stays whole. Not for a
// bucket a MoE router reads, with pipelines, with optimizer_offload's host
// masters, over one rank, or without the gather back into the bucket.
TEST(DeviceFootprint, KeepsTheRanksShardOfDistributedOptimizerMasters) {
  Plan p;
  for (auto [kind, bytes] : {std::pair{PARAMETERS, 1216}, {GRADIENTS, 1216}}) {
    auto *a = p.add_arenas();
    a->set_kind(kind);
    a->set_size_bytes(uint64_t(bytes));
  }
  addBuffer(p, "bucket0", F32, {256}, PARAMETERS, 0);      // 0: 1024 bytes
  addBuffer(p, "w", F32, {256}, PARAMETERS, 0);            // 1: its member
  addBuffer(p, "frozen", F32, {16}, PARAMETERS, 1024);     // 2: in no bucket
  addBuffer(p, "bucket1", F32, {24}, PARAMETERS, 1088);    // 3: 96 bytes
  addBuffer(p, "shard0", F32, {128}, ACTIVATIONS, 0);      // 4
  addBuffer(p, "shard1", F32, {12}, ACTIVATIONS, 512);     // 5
  addBuffer(p, "grads0", F32, {256}, GRADIENTS, 0);        // 6
  addBuffer(p, "grads1", F32, {24}, GRADIENTS, 1088);      // 7
  p.mutable_mesh()->set_dp(2);
  p.mutable_mesh()->set_pp(1);
  Program &optimizer = *p.add_programs();
  for (auto [bucket, shard, grads] : {std::tuple{0u, 4u, 6u}, {3u, 5u, 7u}}) {
    Bucket &b = *p.add_buckets();
    b.set_axis("dp");
    b.set_parts(2);
    b.set_param_buffer(bucket);
    b.set_grad_buffer(grads);
    addCollective(optimizer, "all_slice", bucket, shard);
    addCollective(optimizer, "all_gather", shard, bucket);
  }
  DeviceFootprint f = deviceFootprint(p);
  ASSERT_EQ(f.masterShards.size(), 2u);
  EXPECT_EQ(f.masterShards.at(4).bucket, 0u);
  EXPECT_EQ(f.masterShards.at(4).offset, 0u);
  EXPECT_EQ(f.masterShards.at(4).bytes, 512u);
  EXPECT_EQ(f.masterShards.at(4).planBytes, 1024u);
  EXPECT_EQ(f.masterShards.at(5).offset, 512u);
  EXPECT_EQ(f.masterShards.at(5).bytes, 48u);
  EXPECT_EQ(f.masterShards.at(5).planOffset, 1088u);
  EXPECT_EQ(f.masterShards.at(5).planBytes, 128u); // to the next 64-byte boundary
  EXPECT_EQ(f.bucketsNotHeld, 1152u);
  EXPECT_EQ(f.weightsBeforeShards, 64u);               // 'frozen'
  EXPECT_EQ(f.weights, 64u + 512 + 64);                // + the shards, 64-byte aligned
  EXPECT_EQ(f.shadows, 608u);                          // whole
  EXPECT_EQ(f.shardsInPlace, 0u);                      // the masters are no views
  EXPECT_EQ(deviceWeightOffset(f, 1024, 64), std::optional<uint64_t>(0));
  EXPECT_EQ(deviceWeightOffset(f, 0, 1024), std::nullopt);
  EXPECT_EQ(deviceWeightOffset(f, 1100, 4), std::nullopt);

  Plan router = p; // bucket0 is read in fp32
  Instruction &route = *router.add_programs()->add_instructions();
  route.set_op("moe_router");
  route.add_inputs(4);
  route.add_inputs(1);
  EXPECT_EQ(masterShards(router).size(), 1u);
  EXPECT_EQ(deviceFootprint(router).weights, 1216u - 128 + 64);
  Plan pipelined = p;
  pipelined.mutable_mesh()->set_pp(2);
  EXPECT_TRUE(masterShards(pipelined).empty());
  EXPECT_EQ(deviceFootprint(pipelined).weights, 1216u);
  Plan offloaded = p;
  offloaded.mutable_buckets(0)->set_master_buffer(7);
  EXPECT_EQ(masterShards(offloaded).size(), 1u);
  Plan oneRank = p;
  oneRank.mutable_buckets(1)->set_parts(1);
  EXPECT_EQ(masterShards(oneRank).size(), 1u);
  Plan notGathered = p;
  notGathered.mutable_programs(0)->mutable_instructions(1)->set_outputs(0, 2);
  EXPECT_EQ(masterShards(notGathered).size(), 1u);
}

TEST(DeviceFootprint, NamesTheHostAndLivenessPlannedArenas) {
  for (ArenaKind kind :
       {HOST_PARAMETERS, HOST_GRADIENTS, HOST_OPTIMIZER, HOST_STAGED_GRADIENTS, HOST_WEIGHTS})
    EXPECT_TRUE(isHostArena(kind)) << ArenaKind_Name(kind);
  for (ArenaKind kind :
       {PARAMETERS, GRADIENTS, OPTIMIZER, ACTIVATIONS, STAGED_GRADIENTS, STAGED_WEIGHTS})
    EXPECT_FALSE(isHostArena(kind)) << ArenaKind_Name(kind);
  for (ArenaKind kind : {ACTIVATIONS, STAGED_GRADIENTS, HOST_STAGED_GRADIENTS, STAGED_WEIGHTS})
    EXPECT_TRUE(isLivenessPlanned(kind)) << ArenaKind_Name(kind);
  for (ArenaKind kind : {PARAMETERS, HOST_PARAMETERS, HOST_GRADIENTS, HOST_WEIGHTS, INPUTS})
    EXPECT_FALSE(isLivenessPlanned(kind)) << ArenaKind_Name(kind);
}

TEST(DeviceFootprint, HalvesActivationsAndKeepsTheWideOnesApart) {
  Plan p;
  for (auto [kind, bytes] : {std::pair{PARAMETERS, 1024}, {GRADIENTS, 1024},
                             {OPTIMIZER, 2048}, {ACTIVATIONS, 4096}, {INPUTS, 128},
                             {OUTPUTS, 64}}) {
    auto *a = p.add_arenas();
    a->set_kind(kind);
    a->set_size_bytes(uint64_t(bytes));
  }
  addBuffer(p, "q", F32, {4, 8}, ACTIVATIONS, 0);           // bf16
  addBuffer(p, "out", F32, {4, 8}, ACTIVATIONS, 128);       // bf16
  addBuffer(p, "lse", F32, {300}, ACTIVATIONS, 256);        // the attention's: 32-bit
  addBuffer(p, "clip", F32, {}, ACTIVATIONS, 2048);         // a scalar: 32-bit
  addBuffer(p, "indices", I32, {5}, ACTIVATIONS, 2112);     // integers: 32-bit
  auto *attention = p.add_programs()->add_instructions();
  attention->set_op("attention");
  attention->add_inputs(0);
  attention->add_outputs(1);
  attention->add_outputs(2);

  EXPECT_EQ(wideActivations(p), (std::set<uint32_t>{2, 3, 4}));
  const DeviceFootprint f = deviceFootprint(p);
  // No fp32 reader of the weights: the masters are the shadows and their
  // low bits (masterRemainders).
  EXPECT_EQ(f.weights, 0u);
  EXPECT_EQ(f.remainders, 512u);
  EXPECT_EQ(f.shadows, 512u);
  EXPECT_EQ(f.gradients, 1024u);
  EXPECT_EQ(f.optimizer, 2048u);
  EXPECT_EQ(f.activations, 2048u);
  // lse takes 1200 bytes, rounded to 1280; the scalar and the indices 256 each.
  EXPECT_EQ(f.wideOffsets.at(2), 0u);
  EXPECT_EQ(f.wideOffsets.at(3), 1280u);
  EXPECT_EQ(f.wideOffsets.at(4), 1536u);
  EXPECT_EQ(f.wideActivations, 1792u);
  EXPECT_EQ(f.total(), 512u + 512 + 1024 + 2048 + 2048 + 1792 + 128 + 64);
}

TEST(DeviceFootprint, KeepsTheVocabParallelRowStatisticsInFp32) {
  // Row maxima, label logits and sums of exp feed a log and a softmax
  // denominator: bf16's 8 bits would move the loss by ~0.4%.
  Plan p;
  addBuffer(p, "logits", F32, {4, 64}, ACTIVATIONS, 0);       // bf16
  addBuffer(p, "row_max", F32, {4}, ACTIVATIONS, 1024);       // 32-bit
  addBuffer(p, "predicted", F32, {4}, ACTIVATIONS, 1280);     // 32-bit
  addBuffer(p, "sum_exp", F32, {4}, ACTIVATIONS, 1536);       // 32-bit
  auto *program = p.add_programs();
  auto *max = program->add_instructions();
  max->set_op("vocab_parallel_logits_max");
  max->add_inputs(0);
  max->add_outputs(1);
  auto *predicted = program->add_instructions();
  predicted->set_op("vocab_parallel_predicted_logits");
  for (uint32_t in : {0u, 1u})
    predicted->add_inputs(in);
  predicted->add_outputs(2);
  predicted->add_outputs(3);
  EXPECT_EQ(wideActivations(p), (std::set<uint32_t>{1, 2, 3}));
}

TEST(DeviceFootprint, KeepsRingAttentionLogSumExpsAndTheirGradientsInFp32) {
  // Ring attention (cp_comm_type p2p): each block's and merge's lse, and
  // the merge gradient's d lse outputs (1 and 3), are 32-bit; the blocks'
  // outputs and the merge gradient's d out outputs (0 and 2) bf16. The
  // zeros the last merge's gradient reads as its d lse (10) are 32-bit too.
  Plan p;
  for (int i = 0; i < 12; ++i)
    addBuffer(p, "b" + std::to_string(i), F32, {4, 8}, ACTIVATIONS, uint64_t(i) * 128);
  auto *program = p.add_programs();
  auto add = [&](const char *op, std::vector<uint32_t> inputs, std::vector<uint32_t> outputs) {
    auto *instr = program->add_instructions();
    instr->set_op(op);
    for (uint32_t in : inputs)
      instr->add_inputs(in);
    for (uint32_t out : outputs)
      instr->add_outputs(out);
  };
  add("attention_block", {}, {0, 1});
  add("attention_merge", {}, {2, 3});
  add("fill_zero", {}, {10});
  add("fill_zero", {}, {11});
  add("attention_merge_grad", {0, 1, 0, 1, 2, 3, 11, 10}, {4, 5, 6, 7});
  add("attention_block_grad", {}, {8, 9});
  EXPECT_EQ(wideActivations(p), (std::set<uint32_t>{1, 3, 5, 7, 10}));
}

TEST(DeviceFootprint, KeepsScaledExpertGradientsInFp32) {
  // Expert parallelism: an expert's gradient scaled by 1 / dp into an
  // activation (plans scale in place where nothing else reads the input)
  // that AdamW reads as its fp32 gradient.
  Plan p;
  addBuffer(p, "grad:experts", F32, {3, 8, 4}, GRADIENTS, 0); // 0
  addBuffer(p, "scaled", F32, {3, 8, 4}, ACTIVATIONS, 0);     // 1: 32-bit
  auto *scale = p.add_programs()->add_instructions();
  scale->set_op("scale");
  scale->add_inputs(0);
  scale->add_outputs(1);
  EXPECT_EQ(wideActivations(p), (std::set<uint32_t>{1}));
}

TEST(DeviceFootprint, KeepsTheDistributedOptimizerShardsInTheirBuckets) {
  // One bucket of 64 fp32 elements over dp 2: the reduce-scattered
  // gradient shard and the sliced weight shard are views of the rank's half
  // of the bucket on the GPU, not 32-bit activations of their own (which
  // would cost as much as the AdamW state the sharding saves).
  Plan p;
  for (auto [kind, bytes] : {std::pair{PARAMETERS, 256}, {GRADIENTS, 256}, {OPTIMIZER, 256},
                             {ACTIVATIONS, 256}}) {
    auto *a = p.add_arenas();
    a->set_kind(kind);
    a->set_size_bytes(uint64_t(bytes));
  }
  addBuffer(p, "bucket.param", F32, {64}, PARAMETERS, 0);  // 0
  addBuffer(p, "bucket.grad", F32, {64}, GRADIENTS, 0);    // 1
  addBuffer(p, "grad_shard", F32, {32}, ACTIVATIONS, 0);   // 2
  addBuffer(p, "param_shard", F32, {32}, ACTIVATIONS, 128); // 3
  addBuffer(p, "other", F32, {32}, ACTIVATIONS, 128);      // 4: a gradient, not a bucket
  auto *bucket = p.add_buckets();
  bucket->set_axis("dp");
  bucket->set_parts(2);
  bucket->set_param_buffer(0);
  bucket->set_grad_buffer(1);
  auto *program = p.add_programs();
  auto add = [&](const char *op, uint32_t in, uint32_t out) {
    addCollective(*program, op, in, out);
  };
  add("reduce_scatter", 1, 2);
  add("all_slice", 0, 3);
  add("all_slice", 2, 4); // the input is no bucket: a 32-bit activation as before

  const std::map<uint32_t, ShardView> views = shardViews(p);
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views.at(2).bucket, 1u);
  EXPECT_EQ(views.at(3).bucket, 0u);
  EXPECT_EQ(views.at(3).axis, "dp");
  EXPECT_EQ(views.at(3).parts, 2);
  EXPECT_EQ(wideActivations(p), (std::set<uint32_t>{4}));
  const DeviceFootprint f = deviceFootprint(p);
  EXPECT_EQ(f.wideActivations, 256u); // only "other"
  EXPECT_EQ(f.shardsInPlace, 256u);   // two shards of 128 bytes
  EXPECT_EQ(f.total(), 256u + 128 + 256 + 256 + 128 + 256);
}

TEST(DeviceFootprint, CountsTheStagingOfCollectivesAlongAMiddleDimension) {
  // Sequence parallelism's all-gather of [2, 8, 4] sequence halves into
  // [2, 16, 4] (outer 2) stages rank-major blocks: 128 bf16 elements; the
  // distributed optimizer's along the first dimension (outer 1) none, and a
  // reduce-scatter of an fp32 gradient (not an activation) in fp32.
  Plan p;
  addBuffer(p, "half", F32, {2, 8, 4}, ACTIVATIONS, 0);      // 0
  addBuffer(p, "full", F32, {2, 16, 4}, ACTIVATIONS, 256);   // 1
  addBuffer(p, "shard", F32, {64}, ACTIVATIONS, 768);        // 2
  addBuffer(p, "bucket", F32, {128}, PARAMETERS, 0);         // 3
  addBuffer(p, "grad", F32, {4, 20}, GRADIENTS, 0);          // 4
  addBuffer(p, "grad_half", F32, {4, 10}, ACTIVATIONS, 1024); // 5
  auto *program = p.add_programs();
  auto add = [&](const char *op, uint32_t in, uint32_t out, int64_t outer) {
    auto *instr = program->add_instructions();
    instr->set_op(op);
    instr->add_inputs(in);
    instr->add_outputs(out);
    auto *a = instr->add_attributes();
    a->set_name("outer");
    a->set_i(outer);
  };
  add("all_gather", 0, 1, 2);
  add("all_gather", 2, 3, 1);
  EXPECT_EQ(deviceFootprint(p).collectiveStaging, 128u * 2);
  add("reduce_scatter", 4, 5, 4); // 80 fp32 elements
  EXPECT_EQ(deviceFootprint(p).collectiveStaging, 80u * 4);
  // The plan has no arenas; the gradient shard is a 32-bit activation (256).
  EXPECT_EQ(deviceFootprint(p).total(), 80u * 4 + 256);
}

} // namespace
} // namespace mt::plan
