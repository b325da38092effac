// Data and tensor parallelism on two GPUs (label gpu2): `mtrun --backend
// cuda` ranks, one per GPU, train 20 steps and every step's loss and
// gradient norm are held to the bf16 tolerances of test/Tolerances.h
// against the one-GPU run of the same global batch: the demo model's dp2
// plan (gradients averaged over dp by NCCL, the all-reduce in the optimizer
// and overlapped with backward; the last micro-batch's embedding gradient
// added after the reduction, also with tied embeddings), and the tp2 and
// tp2+sp plans of the demo
// model and a tiny Qwen3, and the demo model's dp2 plan with the
// distributed optimizer (also against dp2 without it, its checkpoints
// resumed on one GPU, and its arenas against --explain's figures); tensor
// parallelism's overlapped collectives against the plan's order. The plans are compiled on a machine with the
// compiler (bench/gpu-dp.sh --prepare) into $MT_GPU_DATA/plans, the tokens
// in $MT_GPU_DATA/corpus.bin.
#include "runtime/cuda/CommProfile.h"
#include "runtime/cuda/CudaExecutor.h"
#include "runtime/cuda/DeviceArenas.h"
#include "runtime/plan/PlanIO.h"
#include "test/runtime/cuda/TwoGpuTraining.h"

namespace mt {
namespace {

using namespace twogpu;

// One rank of the jobs the tests below start (plan MT_TEST_PLAN, default
// demo-dp2); skipped when run alone.
TEST(DataParallel, RankOfTwoGpuJob) { trainAsRank("demo-dp2"); }

/// The curves of a two-GPU job of this test's RankOfTwoGpuJob.
Curves trainOnTwoGpus(const std::string &metrics,
                      const std::vector<std::pair<std::string, std::string>> &environment) {
  return twogpu::trainOnTwoGpus("DataParallel.RankOfTwoGpuJob", metrics, environment);
}

// With the gradient all-reduce in the optimizer (MT_CUDA_OVERLAP=0) and
// overlapped with backward in buckets of at most 100,000 elements (dozens
// of buckets on the demo model, so their order against backward counts),
// the embedding's rows added before its reduction as in the optimizer's
// (MT_CUDA_SPARSE_EMBEDDING_GRAD=0; SparseEmbeddingGradientMatchesOneGpu
// covers them added after it).
TEST(DataParallel, LossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/demo-dp2/plan.pb"));
  const std::string tmp = ::testing::TempDir() + "/mt-dp2";
  const auto reduced = trainOnTwoGpus(tmp + "-reduce.jsonl", {{"MT_CUDA_OVERLAP", "0"}});
  const auto overlapped = trainOnTwoGpus(
      tmp + "-overlap.jsonl",
      {{"MT_CUDA_BUCKET_ELEMENTS", "100000"}, {"MT_CUDA_SPARSE_EMBEDDING_GRAD", "0"}});
  const auto single = trainOnOneGpu("demo", tmp + "-one.jsonl");
  expectSameTraining("dp2", reduced, single);
  expectSameTraining("dp2 overlapped", overlapped, single);
  // The same sums, only earlier: the same bits.
  EXPECT_EQ(overlapped.loss, reduced.loss);
  EXPECT_EQ(overlapped.gradNorm, reduced.gradNorm);
}

// Per-token loss (demo-dp2-pt): the sums over dp of the gradients and of
// the step's token count lead the optimizer (mt-build-optimizer puts the
// divisions by the count after them), so they overlap backward: the same
// bits as with every sum in the optimizer (MT_CUDA_OVERLAP=0), with the
// embedding's rows added before the reduction; added after it (a sum:
// factor 1), the same training within the bf16 tolerances.
TEST(DataParallel, PerTokenLossOverlapChangesNoValue) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/demo-dp2-pt/plan.pb"));
  const std::string tmp = ::testing::TempDir() + "/mt-dp2-pt";
  const auto reduced = trainOnTwoGpus(tmp + "-reduce.jsonl",
                                      {{"MT_TEST_PLAN", "demo-dp2-pt"}, {"MT_CUDA_OVERLAP", "0"}});
  const auto overlapped =
      trainOnTwoGpus(tmp + "-overlap.jsonl",
                     {{"MT_TEST_PLAN", "demo-dp2-pt"}, {"MT_CUDA_SPARSE_EMBEDDING_GRAD", "0"}});
  const auto sparse = trainOnTwoGpus(tmp + "-sparse.jsonl", {{"MT_TEST_PLAN", "demo-dp2-pt"}});
  ASSERT_EQ(reduced.loss.size(), size_t(kSteps));
  EXPECT_EQ(overlapped, reduced);
  expectSameTraining("dp2 per-token, sparse embedding gradient", sparse, reduced);
}

// The last micro-batch's embedding gradient kept sparse (the default): its
// bucket reduced without it, then every rank's ids and rows all-gathered
// and added times 1/dp. The demo model (untied: the embedding's bucket
// starts before backward) with one micro-batch per rank and with two (the
// first added densely), and a tiny Qwen3 with tied embeddings (the bucket
// starts after the output layer's weight gradient): each trains as on one
// GPU within the bf16 tolerances, and --profile-comm (the same bits) times
// the rows' gather and addition, so they were kept sparse.
TEST(DataParallel, SparseEmbeddingGradientMatchesOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-dp2-sparse";
  for (const std::string model : {"demo", "demo-mb2", "tiny-qwen3-hd64"}) {
    const std::string plan = model + "-dp2";
    ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
    expectSameTraining(plan + " sparse embedding gradient",
                       trainOnTwoGpus(tmp + "-" + plan + ".jsonl",
                                      {{"MT_TEST_PLAN", plan},
                                       {"MT_TEST_PROFILE_COMM", "1"},
                                       {"MT_TEST_PROFILE_LINE", cuda::kSparseRowsLine}}),
                       trainOnOneGpu(model, tmp + "-" + model + "-one.jsonl"));
  }
}

// Megatron's grad_reduce_in_fp32 = false (plans compiled with
// --grad-reduce-in-bf16): each bucket's gradients rounded to bf16 and summed
// in bf16 by NCCL, with the plain optimizer and the distributed one; both
// still train as one GPU within the bf16 tolerances.
TEST(DataParallel, Bf16GradientReductionMatchesOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-dp2-bf16";
  const auto single = trainOnOneGpu("demo", tmp + "-one.jsonl");
  for (const std::string plan : {"demo-dp2-bf16", "demo-dp2-do-bf16"}) {
    ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
    expectSameTraining(plan, trainOnTwoGpus(tmp + "-" + plan + ".jsonl", {{"MT_TEST_PLAN", plan}}),
                       single);
  }
}

// --profile-comm records timing events inside the replayed graph of the
// overlapped reduction and around every collective: the same bits as
// without it, and rank 0 reports the exposed communication (trainAsRank
// checks its log); dp2, tp2 with sequence parallelism, and pp2, whose
// optimizer program ("optimizer.<stage>") ends each measured step.
TEST(DataParallel, CommProfileLeavesTheSameBits) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-profile-comm";
  for (const std::string plan : {"demo-dp2", "demo-tp2-sp", "demo-pp2"}) {
    const auto plain = trainOnTwoGpus(tmp + "-" + plan + ".jsonl", {{"MT_TEST_PLAN", plan}});
    const auto profiled = trainOnTwoGpus(tmp + "-" + plan + "-profiled.jsonl",
                                         {{"MT_TEST_PLAN", plan}, {"MT_TEST_PROFILE_COMM", "1"}});
    ASSERT_EQ(plain.loss.size(), size_t(kSteps)) << plan;
    EXPECT_EQ(profiled, plain) << plan;
  }
}

// --backend auto runs a multi-rank plan on the GPUs: the same bits as
// --backend cuda (the CPU backend's fp32 would differ).
TEST(DataParallel, AutoBackendRunsTwoRankPlansOnGpus) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-dp2-backend";
  const auto cuda = trainOnTwoGpus(tmp + "-cuda.jsonl", {});
  const auto automatic = trainOnTwoGpus(tmp + "-auto.jsonl", {{"MT_TEST_BACKEND", "auto"}});
  ASSERT_EQ(cuda.loss.size(), size_t(kSteps));
  EXPECT_EQ(automatic, cuda);
}

// Megatron's distributed optimizer (demo-dp2-do): gradient buckets
// reduce-scattered over the two GPUs, each updating its half of the
// weights and AdamW state, the weights all-gathered; with the
// reduce-scatters at the start of the optimizer (MT_CUDA_OVERLAP=0) and
// overlapped with backward.
TEST(DistributedOptimizer, LossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/demo-dp2-do/plan.pb"));
  const std::string tmp = ::testing::TempDir() + "/mt-dp2-do";
  const auto reduced = trainOnTwoGpus(tmp + "-reduce.jsonl",
                                      {{"MT_TEST_PLAN", "demo-dp2-do"}, {"MT_CUDA_OVERLAP", "0"}});
  const auto overlapped = trainOnTwoGpus(tmp + "-overlap.jsonl", {{"MT_TEST_PLAN", "demo-dp2-do"}});
  const auto single = trainOnOneGpu("demo", tmp + "-one.jsonl");
  expectSameTraining("dp2 distributed optimizer", reduced, single);
  expectSameTraining("dp2 distributed optimizer overlapped", overlapped, single);
  EXPECT_EQ(overlapped.loss, reduced.loss);
  EXPECT_EQ(overlapped.gradNorm, reduced.gradNorm);
}

// overlap_param_gather (demo-dp2-do-opg): each bucket's weight all-gather
// runs on the communication stream behind the next forward, which waits
// for it before the bucket's first use; the values are those of
// demo-dp2-do, with the reduce-scatters overlapped too and without.
TEST(DistributedOptimizer, OverlappedParamGatherChangesNoValue) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/demo-dp2-do-opg/plan.pb"));
  const std::string tmp = ::testing::TempDir() + "/mt-dp2-do-opg";
  const auto plain = trainOnTwoGpus(tmp + "-plain.jsonl", {{"MT_TEST_PLAN", "demo-dp2-do"}});
  const auto gathered =
      trainOnTwoGpus(tmp + "-opg.jsonl", {{"MT_TEST_PLAN", "demo-dp2-do-opg"}});
  const auto gatheredOnly = trainOnTwoGpus(
      tmp + "-opg-reduce.jsonl", {{"MT_TEST_PLAN", "demo-dp2-do-opg"}, {"MT_CUDA_OVERLAP", "0"}});
  ASSERT_EQ(plain.loss.size(), size_t(kSteps));
  EXPECT_EQ(gathered, plain);
  EXPECT_EQ(gatheredOnly, plain);
}

// Each rank keeps only its shard of the buckets' fp32 master weights
// (plan::MasterShard, Megatron-Core's main params), updates it, writes its
// bf16 slice of the weights and all-gathers the bf16 weights: demo-dp2-do
// and demo-dp2-do-opg train as demo-dp2 does (every rank updating every
// whole fp32 weight) within the bf16 tolerances.
TEST(DistributedOptimizer, MatchesDataParallelWithoutIt) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-dp2-masters";
  const auto plain = trainOnTwoGpus(tmp + "-dp2.jsonl", {{"MT_TEST_PLAN", "demo-dp2"}});
  for (const std::string plan : {"demo-dp2-do", "demo-dp2-do-opg"}) {
    ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
    expectSameTraining(plan + " vs dp2",
                       trainOnTwoGpus(tmp + "-" + plan + ".jsonl", {{"MT_TEST_PLAN", plan}}),
                       plain);
  }
}

// A --save of those runs gathers the fp32 master shards into whole weights
// (with overlap_param_gather the last step's gathers are still pending
// then): resumed on the two GPUs (each taking its shard again) they
// continue bit for bit, and on one GPU with the demo plan they train on as
// the two-GPU run does.
TEST(DistributedOptimizer, SaveResumesWholeOnOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  for (const std::string plan : {"demo-dp2-do", "demo-dp2-do-opg"})
    expectSaveResumes("DataParallel.RankOfTwoGpuJob", plan, "demo",
                      ::testing::TempDir() + "/mt-resume-" + plan);
}

// The arenas the GPU allocates are what --explain's CUDA column counts
// (plan::deviceFootprint; the collectives' staging is the kernel
// workspace's): under the distributed optimizer, of the fp32 weights only
// the rank's master shard of each bucket, about half of demo-dp2-do's
// PARAMETERS arena, at its own place; its bf16 slice in the bucket's whole
// shadow at the rank's place; no fp32 copy of the buckets.
TEST(DistributedOptimizer, ArenasHoldTheMasterShardsExplainCounts) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  auto plan = plan::readPlanDirectory(gpuData() + "/plans/demo-dp2-do");
  ASSERT_TRUE(plan) << plan.message();
  const plan::DeviceFootprint f = plan::deviceFootprint(*plan);
  ASSERT_EQ(f.masterShards.size(), size_t(plan->buckets_size()));
  uint64_t planned = 0;
  for (const plan::Arena &a : plan->arenas())
    if (a.kind() == plan::PARAMETERS)
      planned = a.size_bytes();
  EXPECT_NEAR(double(f.weights), double(planned) / 2, 128.0 * plan->buckets_size());
  for (int64_t dp : {0, 1}) {
    auto arenas = cuda::DeviceArenas::create(
        *plan, "", 1, [dp](const std::string &axis) { return axis == "dp" ? dp : int64_t(0); });
    ASSERT_TRUE(arenas) << arenas.message();
    const cuda::DeviceArenas &d = **arenas;
    EXPECT_EQ(d.totalBytes(), f.total() - f.collectiveStaging) << "dp " << dp;
    EXPECT_EQ(d.arenaBytes(plan::PARAMETERS), f.weights);
    for (const auto &[view, m] : f.masterShards) {
      EXPECT_TRUE(d.isMasterShard(view));
      EXPECT_EQ(d.data(view), d.arena(plan::PARAMETERS) + f.weightsBeforeShards + m.offset);
      EXPECT_EQ(d.bf16Data(view), d.bf16Data(m.bucket) + dp * int64_t(m.bytes / 4));
      EXPECT_EQ(d.data(m.bucket), nullptr) << plan->buffers(m.bucket).name();
    }
  }
}

// Tensor parallelism (with and without sequence parallelism) on two GPUs
// against one GPU, from the same weights and data: the demo model and a
// tiny Qwen3 (tied embeddings; its per-head q/k norms see local heads).
TEST(TensorParallel, LossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-tp2";
  for (const std::string model : {"demo", "tiny-qwen3-hd64"}) {
    const auto single = trainOnOneGpu(model, tmp + "-" + model + "-one.jsonl");
    for (const char *layout : {"-tp2", "-tp2-sp"}) {
      const std::string plan = model + layout;
      ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
      expectSameTraining(plan, trainOnTwoGpus(tmp + "-" + plan + ".jsonl", {{"MT_TEST_PLAN", plan}}),
                         single);
    }
  }
}

// Tensor parallelism's collectives of bf16 activations on the transfer
// stream, each weight-gradient GEMM deferred past the next of them
// (Megatron's tp_comm_overlap, simple form; the default), against all on
// the compute stream in the plan's order (MT_CUDA_OVERLAP_SP=0): the same
// bits, for tp2 (all-reduces), tp2+sp (reduce-scatters) and tp2+sp with
// the layernorm recomputed (its output gathered again in backward, the
// gather overlapping the input-gradient GEMMs).
TEST(TensorParallel, OverlapChangesNoValue) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-tp2-overlap";
  for (const std::string plan : {"demo-tp2", "demo-tp2-sp", "demo-tp2-sp-ln"}) {
    ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
    const auto overlapped = trainOnTwoGpus(tmp + "-" + plan + ".jsonl", {{"MT_TEST_PLAN", plan}});
    const auto inOrder = trainOnTwoGpus(tmp + "-" + plan + "-in-order.jsonl",
                                        {{"MT_TEST_PLAN", plan}, {"MT_CUDA_OVERLAP_SP", "0"}});
    ASSERT_EQ(overlapped.loss.size(), size_t(kSteps)) << plan;
    EXPECT_EQ(overlapped, inOrder) << plan;
  }
}

} // namespace
} // namespace mt
