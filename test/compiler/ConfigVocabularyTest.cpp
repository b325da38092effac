// How `mtc compile --config` tells a Megatron-Core option file from a
// LLaMA-Factory YAML (compiler/config/ConfigVocabulary.h), and the error for
// a file that mixes the two.
#include "compiler/config/ConfigVocabulary.h"
#include "compiler/config/ParallelConfig.h"
#include "compiler/config/TrainKeys.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace mt {
namespace {

/// Writes `text` to a fresh file in a directory of this process (ctest runs
/// the cases of this binary as parallel processes that share TempDir()).
std::string writeYaml(const std::string &name, const std::string &text) {
  std::filesystem::path dir = std::filesystem::path(testing::TempDir()) /
                              ("mt-config-vocabulary-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::path path = dir / name;
  std::ofstream(path) << text;
  return path.string();
}

/// The vocabulary `mtc compile --config` reads a file in, or its error.
std::string vocabularyOf(const std::string &text) {
  auto v = configVocabulary(writeYaml("vocabulary.yaml", text));
  if (!v)
    return v.message();
  return v->vocabulary == ConfigVocabulary::Megatron ? "megatron" : "llamafactory";
}

TEST(ConfigVocabulary, SaysWhichKeysDecided) {
  auto v = configVocabulary(writeYaml("decided.yaml", "tensor_model_parallel_size: 2\n"
                                                      "seed: 7\nlearning_rate: 1e-5\n"));
  ASSERT_TRUE(v) << v.message();
  EXPECT_EQ(v->decidedBy, "learning_rate (line 3)"); // both have a seed
  v = configVocabulary(writeYaml("shared.yaml", "tensor_model_parallel_size: 2\n"));
  ASSERT_TRUE(v) << v.message();
  EXPECT_EQ(v->vocabulary, ConfigVocabulary::Megatron);
  EXPECT_EQ(v->decidedBy, "");
}

TEST(ConfigVocabulary, KeysOnlyOneReaderTakesDecide) {
  EXPECT_EQ(vocabularyOf("tensor_model_parallel_size: 2\nlr: 1\n"), "megatron");
  EXPECT_EQ(vocabularyOf("tensor_model_parallel_size: 2\nmodel_name_or_path: m\n"),
            "llamafactory");
  EXPECT_EQ(vocabularyOf("megatron:\n  use_mbridge: true\n"), "llamafactory");
  // Megatron-LM's arguments that a plan does not hold are Megatron's names
  // (its reader says where they go); seed is LLaMA-Factory's too.
  EXPECT_EQ(vocabularyOf("log_interval: 7\n"), "megatron");
  EXPECT_EQ(vocabularyOf("seed: 7\n"), "megatron");
  EXPECT_EQ(vocabularyOf("tensor_model_parallel_size: 2\nlr: 3e-4\nseed: 1234\n"), "megatron");
  EXPECT_EQ(vocabularyOf("seed: 7\nlearning_rate: 1e-5\n"), "llamafactory");
  // Keys both take alike decide nothing: the option file is mtc compile's own.
  EXPECT_EQ(vocabularyOf("tensor_model_parallel_size: 2\nweight_decay: 0.1\nbf16: true\n"
                         "fp16: false\nrecompute_granularity: full\n"),
            "megatron");
  // ... and fit either vocabulary.
  EXPECT_EQ(vocabularyOf("lr: 1e-4\nfp16: false\nbf16: true\nmicro_batch_size: 2\n"),
            "megatron");
  EXPECT_EQ(vocabularyOf("learning_rate: 1e-4\nfp16: false\nbf16: true\nmicro_batch_size: 2\n"),
            "llamafactory");
  // A key neither reader knows decides nothing (the reader names it).
  EXPECT_EQ(vocabularyOf("lr: 1e-4\nlearnin_rate: 1\n"), "megatron");
  EXPECT_EQ(vocabularyOf("learning_rate: 1e-4\nlrr: 1\n"), "llamafactory");
  // Not a mapping: Megatron-Core's reader says why.
  EXPECT_EQ(vocabularyOf("[1, 2]\n"), "megatron");
  EXPECT_EQ(vocabularyOf("a: [1\n"), "megatron");
}

TEST(ConfigVocabulary, AMixedFileIsOneErrorNamingTheDecidingKeysAndEachMisfit) {
  // A Megatron-Core file with a LLaMA-Factory key.
  std::string e = vocabularyOf("tensor_model_parallel_size: 2\nlr: 3e-4\ntrain_iters: 10\n"
                               "max_grad_norm: 1.0\n");
  EXPECT_NE(e.find("vocabulary.yaml mixes Megatron-Core's option names with LLaMA-Factory's "
                   "keys"),
            e.npos)
      << e;
  EXPECT_NE(e.find("It reads as a Megatron-Core option file by lr (line 2), train_iters "
                   "(line 3), and only LLaMA-Factory's reader takes this key:\n  "),
            e.npos)
      << e;
  EXPECT_NE(e.find("vocabulary.yaml:4:1: max_grad_norm: Megatron-Core's name is clip_grad\n"),
            e.npos)
      << e;
  EXPECT_EQ(e.find("tensor_model_parallel_size ("), e.npos) << e; // it fits either
  // The more numerous kind decides; each misfit gets its name there.
  e = vocabularyOf("learning_rate: 1e-5\nmax_steps: 10\nlr: 1e-5\nclip_grad: 1.0\n"
                   "seq_length: 64\ncutoff_len: 64\nstage: pt\n");
  EXPECT_NE(e.find("It reads as a LLaMA-Factory YAML by learning_rate (line 1), max_steps "
                   "(line 2), cutoff_len (line 6), stage (line 7), and only Megatron-Core's "
                   "reader takes these keys:"),
            e.npos)
      << e;
  EXPECT_NE(e.find(":3:1: lr: LLaMA-Factory's name is learning_rate\n"), e.npos) << e;
  EXPECT_NE(e.find(":4:1: clip_grad: LLaMA-Factory's name is max_grad_norm\n"), e.npos) << e;
  EXPECT_NE(e.find(":5:1: seq_length: LLaMA-Factory's name is cutoff_len\n"), e.npos) << e;
  // At a tie, the first such key's kind.
  e = vocabularyOf("learning_rate: 1e-5\nlr: 1e-5\n");
  EXPECT_NE(e.find("reads as a LLaMA-Factory YAML by learning_rate (line 1)"), e.npos) << e;
  EXPECT_NE(e.find(":2:1: lr: LLaMA-Factory's name is learning_rate"), e.npos) << e;
  e = vocabularyOf("lr: 1e-5\nlearning_rate: 1e-5\n");
  EXPECT_NE(e.find("reads as a Megatron-Core option file by lr (line 1)"), e.npos) << e;
  EXPECT_NE(e.find(":2:1: learning_rate: Megatron-Core's name is lr"), e.npos) << e;
}

// The keys both readers take: they decide no vocabulary, so each must mean
// the same in both. A key added to one reader shows up here, to be checked.
TEST(ConfigVocabulary, TheKeysBothReadersTake) {
  std::vector<std::string> both;
  for (const std::string &key : parallelConfigKeys())
    if (trainkeys::find(key))
      both.push_back(key);
  EXPECT_EQ(both, (std::vector<std::string>{
                      "adam_beta1", "adam_beta2", "apply_rope_fusion", "bf16",
                      "bias_activation_fusion", "calculate_per_token_loss", "context_parallel_size",
                      "cp_comm_type", "deterministic_mode", "expert_model_parallel_size",
                      "expert_tensor_parallel_size",
                      "fp16", "grad_offload", "grad_reduce_in_fp32", "micro_batch_size",
                      "moe_grouped_gemm", "moe_layer_recompute", "moe_shared_expert_overlap",
                      "moe_token_dispatcher_type", "optimizer_offload", "overlap_grad_reduce",
                      "overlap_param_gather", "param_offload", "pipeline_model_parallel_size",
                      "recompute_granularity", "recompute_method", "recompute_modules",
                      "recompute_num_layers", "sequence_parallel", "tensor_model_parallel_size",
                      "use_distributed_optimizer", "virtual_pipeline_model_parallel_size",
                      "weight_decay"}));
}

} // namespace
} // namespace mt
