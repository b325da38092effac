// Expert parallelism on two GPUs (label gpu2): Megatron-Core's MoE parallel
// folding with the alltoall dispatcher, as `mtrun --backend cuda` ranks, one
// per GPU. ep2 on two GPUs is dp 2 for attention and the dense layers and
// half of the experts per GPU, the tokens exchanged by NCCL all-to-all-v
// after their counts; 20 steps of the tiny Qwen3-MoE and Mixtral models
// train as on one GPU from the same weights and global batch (every step's
// loss and gradient norm within the bf16 tolerances of test/Tolerances.h),
// with the plain optimizer and the distributed one, with the allgather
// dispatcher (all-gather and reduce-scatter of the rows over ep), and with
// etp2 instead of ep (every expert's ffn columns split over the two GPUs,
// their rows all-gathered and the partial outputs reduce-scattered). The
// plans come from bench/gpu-dp.sh --prepare ($MT_GPU_DATA/plans).
#include "test/runtime/cuda/TwoGpuTraining.h"

namespace mt {
namespace {

using namespace twogpu;

// One rank of the jobs the tests below start (plan MT_TEST_PLAN, default
// tiny-moe-hd64-ep2); skipped when run alone.
TEST(ExpertParallel, RankOfTwoGpuJob) { trainAsRank("tiny-moe-hd64-ep2"); }

Curves trainOnTwoGpus(const std::string &metrics,
                      const std::vector<std::pair<std::string, std::string>> &environment) {
  return twogpu::trainOnTwoGpus("ExpertParallel.RankOfTwoGpuJob", metrics, environment);
}

TEST(ExpertParallel, LossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-ep2";
  for (const std::string model : {"tiny-moe-hd64", "tiny-mixtral-hd64"}) {
    const auto single = trainOnOneGpu(model, tmp + "-" + model + "-one.jsonl");
    for (const char *layout : {"-ep2", "-ep2-do", "-ep2-ag", "-etp2"}) {
      const std::string plan = model + layout;
      ASSERT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
      expectSameTraining(plan, trainOnTwoGpus(tmp + "-" + plan + ".jsonl", {{"MT_TEST_PLAN", plan}}),
                         single);
    }
  }
}

// The distributed optimizer (ep2-do: dense buckets sharded over dp 2, the
// experts' over edp 1) with each rank's fp32 master shards against ep2
// without it, within the bf16 tolerances; and its checkpoint, whole,
// resumed on the two GPUs and on one.
TEST(ExpertParallel, DistributedOptimizerMatchesEp2AndResumes) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-ep2-do";
  for (const std::string model : {"tiny-moe-hd64", "tiny-mixtral-hd64"})
    expectSameTraining(model + "-ep2-do vs ep2",
                       trainOnTwoGpus(tmp + "-" + model + ".jsonl",
                                      {{"MT_TEST_PLAN", model + "-ep2-do"}}),
                       trainOnTwoGpus(tmp + "-" + model + "-plain.jsonl",
                                      {{"MT_TEST_PLAN", model + "-ep2"}}));
  expectSaveResumes("ExpertParallel.RankOfTwoGpuJob", "tiny-moe-hd64-ep2-do", "tiny-moe-hd64",
                    tmp + "-resume");
}

// The dense gradients' all-reduce over dp in the optimizer
// (MT_CUDA_OVERLAP=0) and overlapped with backward, where it runs on its
// own stream beside the all-to-alls of the experts: the same sums, the same
// bits (the embedding's rows added before the reduction there too:
// MT_CUDA_SPARSE_EMBEDDING_GRAD=0). And --backend auto now runs an ep plan
// on the GPUs: the same bits.
TEST(ExpertParallel, OverlapAndAutoBackendLeaveTheSameBits) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string tmp = ::testing::TempDir() + "/mt-ep2-bits";
  const std::pair<std::string, std::string> dense{"MT_CUDA_SPARSE_EMBEDDING_GRAD", "0"};
  const auto overlapped = trainOnTwoGpus(tmp + "-overlap.jsonl", {dense});
  const auto reduced = trainOnTwoGpus(tmp + "-reduce.jsonl", {{"MT_CUDA_OVERLAP", "0"}});
  const auto automatic =
      trainOnTwoGpus(tmp + "-auto.jsonl", {{"MT_TEST_BACKEND", "auto"}, dense});
  ASSERT_EQ(overlapped.loss.size(), size_t(kSteps));
  EXPECT_EQ(reduced, overlapped);
  EXPECT_EQ(automatic, overlapped);
}

} // namespace
} // namespace mt
