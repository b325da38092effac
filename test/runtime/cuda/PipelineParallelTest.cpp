// Pipeline parallelism on two GPUs (label gpu2): `--backend cuda` ranks, one
// per GPU and pipeline stage, train pp2 (1F1B) and pp2 x vpp2 (interleaved)
// plans for 20 steps, activations and their gradients moved in bf16 by NCCL
// send/recv (runtime/cuda/NcclPipeline.h), and every step's loss and
// gradient norm are held to the bf16 tolerances of test/Tolerances.h
// against the one-GPU run of the same model, micro-batches and data: the
// demo model, and a tiny Llama with tied embeddings, whose embedding
// gradient the first and last stage sum over NCCL (the pp_tied group); and
// the stage programs replayed as CUDA graphs between their transfers against
// eager. The plans are compiled on a machine with the compiler
// (bench/gpu-dp.sh --prepare).
#include "test/runtime/cuda/TwoGpuTraining.h"

namespace mt {
namespace {

using namespace twogpu;

// One rank of the jobs below (MT_TEST_PLAN); skipped when run alone.
TEST(PipelineParallel, RankOfTwoGpuJob) { trainAsRank(nullptr); }

Curves trainPipeline(const std::string &plan, bool stageGraphs = true) {
  EXPECT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
  std::vector<std::pair<std::string, std::string>> environment = {{"MT_TEST_PLAN", plan}};
  if (!stageGraphs)
    environment.push_back({"MT_CUDA_STAGE_GRAPHS", "0"});
  return trainOnTwoGpus("PipelineParallel.RankOfTwoGpuJob",
                        ::testing::TempDir() + "/mt-" + plan + (stageGraphs ? "" : "-eager") +
                            ".jsonl",
                        environment);
}

Curves trainOneGpu(const std::string &plan) {
  return trainOnOneGpu(plan, ::testing::TempDir() + "/mt-" + plan + ".jsonl");
}

// The demo model (8 layers), 4 micro-batches of 2 per step: 1F1B over 2
// stages of 4 layers, and interleaved over 2 stages x 2 chunks of 2 layers.
TEST(PipelineParallel, DemoLossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const auto single = trainOneGpu("demo-mb2");
  expectSameTraining("demo pp2", trainPipeline("demo-mb2-pp2"), single);
  expectSameTraining("demo pp2 x vpp2", trainPipeline("demo-mb2-pp2-vpp2"), single);
}

// Tied embeddings (tiny-llama-hd64): the embedding table lives on both
// stages. Without the pp_tied sum the losses stay within 0.2% over 20 steps
// (measured on the CPU backend), but the gradient norm is 7% off at step 1.
TEST(PipelineParallel, TiedEmbeddingLossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  expectSameTraining("tiny-llama (tied) pp2", trainPipeline("tiny-llama-pp2"),
                     trainOneGpu("tiny-llama"));
}

// The stage programs replay as CUDA graphs between their transfers (the
// default) or run eagerly (MT_CUDA_STAGE_GRAPHS=0): the same bits, 1F1B and
// interleaved.
TEST(PipelineParallel, StageGraphsChangeNoValue) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  for (const std::string plan : {"demo-mb2-pp2", "demo-mb2-pp2-vpp2"}) {
    const auto graphs = trainPipeline(plan), eager = trainPipeline(plan, false);
    ASSERT_EQ(graphs.loss.size(), size_t(kSteps)) << plan;
    EXPECT_EQ(graphs, eager) << plan;
  }
}

} // namespace
} // namespace mt
