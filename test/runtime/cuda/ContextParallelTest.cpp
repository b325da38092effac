// Context parallelism on two GPUs (label gpu2): `--backend cuda` ranks, one
// per GPU and cp rank, each holding half of every sequence (Megatron-Core's
// load-balanced chunks), train tiny-llama-hd64 at 132 tokens for 20 steps
// with cp_comm_type p2p (ring attention: keys and values passed by
// ncclSend/ncclRecv, partial attentions merged by their log-sum-exp,
// gradients passed back; the transfers overlapping the blocks on a stream
// of their own, and with MT_CUDA_OVERLAP_CP=0 on the compute stream) and
// all_gather (keys and values gathered, their gradients reduce-scattered),
// and tiny-qwen3-hd64 (4 query and 2 kv heads) with a2a (queries, keys and
// values exchanged all-to-all for whole sequences of half the heads, the
// outputs back, and their gradients); and the tiny Qwen3 on packed
// documents (neat_packing: the SFT demos in rows of 132 with position ids,
// documents crossing the chunks) with p2p, all_gather and a2a (the position
// ids gathered load-balanced); every step's loss and gradient norm are held
// to the bf16 tolerances of test/Tolerances.h against the one-GPU run of
// the same model and data. The plans are compiled on a machine with the
// compiler (bench/gpu-dp.sh --prepare).
#include "test/runtime/cuda/TwoGpuTraining.h"

namespace mt {
namespace {

using namespace twogpu;

// One rank of the jobs below (MT_TEST_PLAN); skipped when run alone.
TEST(ContextParallel, RankOfTwoGpuJob) { trainAsRank(nullptr); }

/// The curves of plans/`plan` on two GPUs on `data` (TwoGpuTraining.h's
/// options); `overlap` "0" keeps the ring's transfers on the compute stream.
Curves trainCp2(const std::string &plan, const std::string &overlap = "1",
                const std::string &data = "corpus.bin") {
  EXPECT_TRUE(std::filesystem::exists(gpuData() + "/plans/" + plan + "/plan.pb")) << plan;
  return trainOnTwoGpus(
      "ContextParallel.RankOfTwoGpuJob",
      ::testing::TempDir() + "/mt-" + plan + "-overlap" + overlap + ".jsonl",
      {{"MT_TEST_PLAN", plan}, {"MT_CUDA_OVERLAP_CP", overlap}, {"MT_TEST_DATA", data}});
}

TEST(ContextParallel, Cp2LossesMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const Curves single =
      trainOnOneGpu("tiny-llama-s132", ::testing::TempDir() + "/mt-tiny-llama-s132.jsonl");
  expectSameTraining("tiny-llama cp2 (p2p)", trainCp2("tiny-llama-s132-cp2-p2p"), single);
  expectSameTraining("tiny-llama cp2 (p2p, transfers on the compute stream)",
                     trainCp2("tiny-llama-s132-cp2-p2p", "0"), single);
  expectSameTraining("tiny-llama cp2 (all_gather)", trainCp2("tiny-llama-s132-cp2-all-gather"),
                     single);
  const Curves qwen3 =
      trainOnOneGpu("tiny-qwen3-s132", ::testing::TempDir() + "/mt-tiny-qwen3-s132.jsonl");
  expectSameTraining("tiny-qwen3 cp2 (a2a)", trainCp2("tiny-qwen3-s132-cp2-a2a"), qwen3);
}

// Packed documents (neat_packing) under cp2 with each cp_comm_type.
TEST(ContextParallel, Cp2PackedDocumentsMatchOneGpu) {
  ASSERT_FALSE(gpuData().empty()) << "MT_GPU_DATA must name bench/gpu-dp.sh --prepare's folder";
  const std::string data = "neat-s132.sft";
  const Curves single = trainOnOneGpu(
      "tiny-qwen3-s132-neat", ::testing::TempDir() + "/mt-tiny-qwen3-s132-neat.jsonl", data);
  for (const char *type : {"p2p", "all-gather", "a2a"})
    expectSameTraining(std::string("tiny-qwen3 packed cp2 (") + type + ")",
                       trainCp2(std::string("tiny-qwen3-s132-neat-cp2-") + type, "1", data),
                       single);
}

} // namespace
} // namespace mt
