// TrainConfig: the key table's three kinds, overrides, the global batch and
// the schedule a LLaMA-Factory file implies.
#include "compiler/config/ConfigVocabulary.h"
#include "compiler/config/TrainConfig.h"
#include "compiler/config/TrainKeys.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>
#include <fstream>

namespace mt {
namespace {

/// Writes `text` to a fresh file in a directory of this process (ctest runs
/// the cases of this binary as parallel processes that share TempDir()).
std::string writeYaml(const std::string &name, const std::string &text) {
  std::filesystem::path dir =
      std::filesystem::path(testing::TempDir()) / ("mt-train-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::path path = dir / name;
  std::ofstream(path) << text;
  return path.string();
}

std::string errorOf(const std::string &text,
                    const std::vector<std::pair<std::string, std::string>> &overrides = {}) {
  TrainConfig c;
  Status s = loadTrainConfig(writeYaml("error.yaml", text), overrides, c);
  return s ? "" : s.message();
}

TEST(TrainConfig, ReadsLlamaFactoryKeysWithTheirTypes) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("lf.yaml", "stage: pt\ncutoff_len: 64\n"
                                                   "learning_rate: 3e-6\nbf16: True\n"
                                                   "save_total_limit: null\nseed: 7\n"
                                                   "resume_from_checkpoint: true\n"),
                              {}, c));
  EXPECT_EQ(c.stage, "pt");
  EXPECT_EQ(c.cutoffLen, 64);
  EXPECT_DOUBLE_EQ(c.learningRate, 3e-6);
  EXPECT_TRUE(c.bf16);
  EXPECT_EQ(c.saveTotalLimit, 0);
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.resumeFromCheckpoint, "true");
}

TEST(TrainConfig, TypeErrorsNameKeyFileLineAndColumn) {
  std::string e = errorOf("stage: pt\ncutoff_len: long\n");
  EXPECT_NE(e.find("error.yaml:2:13: cutoff_len: expected an integer, got 'long'"), e.npos) << e;
  e = errorOf("lr_scheduler_type: exponential\n");
  EXPECT_NE(e.find(":1:20: lr_scheduler_type: must be one of constant, constant_with_warmup, "
                   "linear, cosine, cosine_with_min_lr, got 'exponential'"),
            e.npos)
      << e;
  e = errorOf("learning_rate: -1\n");
  EXPECT_NE(e.find("error.yaml:1:16: learning_rate: must be a finite number > 0, got -1"), e.npos)
      << e;
  e = errorOf("stage: dpo\n");
  EXPECT_NE(e.find("stage: must be one of sft, pt, got 'dpo'"), e.npos) << e;
}

// infer_dtype (LLaMA-Factory's export dtype) chooses the saved models' dtype:
// auto by default; another value is refused by name with the valid ones.
TEST(TrainConfig, InferDtypeChoosesTheSavedModelsDtype) {
  TrainConfig c;
  EXPECT_EQ(c.inferDtype, "auto");
  ASSERT_TRUE(loadTrainConfig(writeYaml("dtype.yaml", "infer_dtype: bfloat16\n"), {}, c));
  EXPECT_EQ(c.inferDtype, "bfloat16");
  ASSERT_TRUE(loadTrainConfig(writeYaml("dtype.yaml", "infer_dtype: bfloat16\n"),
                              {{"infer_dtype", "float16"}}, c));
  EXPECT_EQ(c.inferDtype, "float16");
  std::string e = errorOf("infer_dtype: bf16\n");
  EXPECT_NE(e.find("error.yaml:1:14: infer_dtype: must be one of auto, float32, bfloat16, "
                   "float16, got 'bf16'"),
            e.npos)
      << e;
}

TEST(TrainConfig, UnknownKeySuggestsTheNearest) {
  std::string e = errorOf("per_device_train_batch: 2\n");
  EXPECT_NE(e.find("error.yaml:1:1: unknown key 'per_device_train_batch'; did you mean "
                   "'per_device_train_batch_size'?"),
            e.npos)
      << e;
  e = errorOf("", {{"gradient_acumulation_steps", "2"}});
  EXPECT_NE(e.find("command line: unknown key 'gradient_acumulation_steps'; did you mean "
                   "'gradient_accumulation_steps'?"),
            e.npos)
      << e;
  // A shortened name gets the name that holds its words with the fewest
  // edits: Megatron's tensor_model_parallel_size, not expert_tensor_....
  e = errorOf("", {{"tensor_parallel_size", "2"}});
  EXPECT_NE(e.find("unknown key 'tensor_parallel_size'; did you mean "
                   "'tensor_model_parallel_size'?"),
            e.npos)
      << e;
  e = errorOf("", {{"expert_parallel_size", "2"}});
  EXPECT_NE(e.find("did you mean 'expert_model_parallel_size'?"), e.npos) << e;
  // A short word more than half of whose letters differ is no typo ('foo'
  // was offered 'bf16').
  e = errorOf("foo: 1\n");
  EXPECT_NE(e.find("unknown key 'foo' (the keys mtc knows are"), e.npos) << e;
  EXPECT_EQ(e.find("did you mean"), e.npos) << e;
}

// Trinity-RFT's dotted overrides of the megatron: block's keys are those
// keys; a dotted name that is no block's stays unknown.
TEST(TrainConfig, DottedOverridesOfTheMegatronBlockAreItsKeys) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig("", {{"megatron.tensor_model_parallel_size", "2"},
                                   {"megatron.override_transformer_config.recompute_granularity",
                                    "full"}},
                              c));
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_EQ(c.parallel.recompute.granularity, "full");
  const std::string e = errorOf("", {{"trainer.tensor_model_parallel_size", "2"}});
  EXPECT_NE(e.find("unknown key 'trainer.tensor_model_parallel_size'"), e.npos) << e;
}

// A warm-up given with the constant schedule, which has none, is warned
// about where it was given; with constant_with_warmup it is not.
TEST(TrainConfig, AWarmupTheConstantScheduleIgnoresIsWarned) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("warm.yaml", "lr_scheduler_type: constant\n"
                                                     "warmup_ratio: 0.5\n"),
                              {}, c));
  EXPECT_NE(c.warmupIgnoredWarning().find("warm.yaml:2:15: warmup_ratio 0.5 has no effect: "
                                          "lr_scheduler_type constant has no warm-up"),
            std::string::npos)
      << c.warmupIgnoredWarning();
  ASSERT_TRUE(loadTrainConfig("", {{"lr_scheduler_type", "constant"}, {"warmup_steps", "3"}}, c));
  EXPECT_NE(c.warmupIgnoredWarning().find("command line: warmup_steps 3 has no effect"),
            std::string::npos)
      << c.warmupIgnoredWarning();
  TrainConfig warms;
  ASSERT_TRUE(loadTrainConfig("", {{"lr_scheduler_type", "constant_with_warmup"},
                                   {"warmup_steps", "3"}},
                              warms));
  EXPECT_EQ(warms.warmupIgnoredWarning(), "");
  TrainConfig none;
  ASSERT_TRUE(loadTrainConfig("", {{"lr_scheduler_type", "constant"}}, none));
  EXPECT_EQ(none.warmupIgnoredWarning(), "");
}

TEST(TrainConfig, NeatPackingIsHonoured) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("neat.yaml", "neat_packing: true\n"), {}, c));
  EXPECT_TRUE(c.neatPacking);
}

TEST(TrainConfig, GradOffloadIsHonoured) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("grads.yaml", "grad_offload: true\n"), {}, c));
  EXPECT_TRUE(c.parallel.gradOffload);
  EXPECT_NE(errorOf("grad_offload: maybe\n").find("grad_offload"), std::string::npos);
}

TEST(TrainConfig, OptimizerOffloadIsHonoured) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("offload.yaml", "optimizer_offload: true\n"), {}, c));
  EXPECT_TRUE(c.parallel.optimizerOffload);
  EXPECT_NE(errorOf("optimizer_offload: maybe\n").find("optimizer_offload"), std::string::npos);
}

TEST(TrainConfig, OverlapParamGatherIsHonoured) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("opg.yaml", "use_distributed_optimizer: true\n"
                                                    "overlap_param_gather: true\n"),
                              {}, c));
  EXPECT_TRUE(c.parallel.overlapParamGather);
  EXPECT_NE(errorOf("overlap_param_gather: maybe\n").find("overlap_param_gather"),
            std::string::npos);
}

TEST(TrainConfig, ReportsEveryKeyErrorTogether) {
  // Wrong types and ranges, an unknown key, a key given twice and a bad
  // override: all named in one message, in the order given, with the
  // refusals after them.
  std::string e = errorOf("cutoff_len: long\nper_device_train_batch_size: 0\nwarmup_step: 2\n"
                          "seed: 1\nseed: 2\nfp16: true\n",
                          {{"max_steps", "two"}});
  EXPECT_EQ(e.rfind("5 configuration errors:\n  ", 0), 0u) << e;
  const char *expected[] = {
      "error.yaml:1:13: cutoff_len: expected an integer, got 'long'",
      "error.yaml:2:30: per_device_train_batch_size: must be >= 1, got 0",
      "error.yaml:3:1: unknown key 'warmup_step'; did you mean 'warmup_steps'?",
      "error.yaml:5:1: key 'seed' is given twice (first at ",
      "command line: max_steps: expected an integer, got 'two'",
      "1 key asks for what this version of mtc does not do:\n  ",
      "error.yaml:6:7: fp16: true is not supported"};
  size_t at = 0;
  for (const char *line : expected) {
    size_t found = e.find(line, at);
    EXPECT_NE(found, e.npos) << line << " (in order) in:\n" << e;
    at = found == e.npos ? at : found;
  }
  // One error alone reads as before, without a count.
  const std::string path = writeYaml("error.yaml", "");
  EXPECT_EQ(errorOf("cutoff_len: long\n"),
            path + ":1:13: cutoff_len: expected an integer, got 'long'");
}

TEST(TrainConfig, ARefusedValueLeavesTheDefault) {
  // The setter stores 0 before refusing it: the configuration keeps 8, and
  // the errors mark the key (and the key a typo meant) as failed.
  TrainConfig c;
  ConfigErrors errors;
  EXPECT_TRUE(loadTrainConfig(writeYaml("r.yaml", "per_device_train_batch_size: 0\n"
                                                  "warmup_step: 3\n"),
                              {}, c, errors));
  EXPECT_EQ(c.perDeviceTrainBatchSize, 8);
  EXPECT_TRUE(errors.failed("per_device_train_batch_size"));
  EXPECT_TRUE(errors.failed("warmup_steps"));
  EXPECT_FALSE(errors.failed("cutoff_len"));
  // A file that cannot be read stops the reading: its keys are unknown.
  ConfigErrors missing;
  EXPECT_FALSE(loadTrainConfig("/nonexistent/train.yaml", {}, c, missing));
  EXPECT_NE(missing.status().message().find("cannot open the file"), std::string::npos);
}

TEST(TrainConfig, RefusesEveryKeyItCannotHonourByNameAndIssue) {
  std::string e = errorOf("fp16: true\nimage_max_pixels: 262144\n",
                          {{"template", "qwen2_vl"}});
  EXPECT_NE(e.find("3 keys ask for"), e.npos) << e;
  EXPECT_NE(e.find("command line: template: qwen2_vl is not supported: multimodal"), e.npos) << e;
  EXPECT_NE(e.find("fp16: true is not supported"), e.npos) << e;
  EXPECT_NE(e.find("image_max_pixels: 262144 is not supported: multimodal"), e.npos) << e;
  // param_offload: true is honoured (issue 16); apply_rope_fusion is what mtc does.
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("ok.yaml", "param_offload: true\n"
                                                   "apply_rope_fusion: true\n"),
                              {}, c));
  EXPECT_TRUE(c.parallel.paramOffload); // honoured (issue 16)
  ASSERT_EQ(c.alwaysDone.size(), 1u);
  EXPECT_NE(c.alwaysDone[0].find("apply_rope_fusion: a speed choice"), std::string::npos);
  EXPECT_TRUE(c.parallel.speedSwitchesOff.empty());
  // Given false, a speed switch is not "accepted" as done: the layout keeps
  // it for its no-effect warning.
  TrainConfig off;
  ASSERT_TRUE(loadTrainConfig(writeYaml("off.yaml", "apply_rope_fusion: false\n"), {}, off));
  EXPECT_TRUE(off.alwaysDone.empty());
  EXPECT_EQ(off.parallel.speedSwitchesOff, std::vector<std::string>{"apply_rope_fusion"});
  // The last value given counts: the command line's over the file's.
  TrainConfig on;
  ASSERT_TRUE(loadTrainConfig(writeYaml("off.yaml", "apply_rope_fusion: false\n"),
                              {{"apply_rope_fusion", "true"}}, on));
  EXPECT_TRUE(on.parallel.speedSwitchesOff.empty());
  EXPECT_EQ(on.alwaysDone.size(), 1u);
  TrainConfig offAgain;
  ASSERT_TRUE(loadTrainConfig(writeYaml("on.yaml", "apply_rope_fusion: true\n"),
                              {{"apply_rope_fusion", "false"}}, offAgain));
  EXPECT_EQ(offAgain.parallel.speedSwitchesOff, std::vector<std::string>{"apply_rope_fusion"});
  EXPECT_TRUE(offAgain.alwaysDone.empty());
  // A text model's template is honoured.
  ASSERT_TRUE(loadTrainConfig("", {{"template", "qwen"}}, c));
  EXPECT_EQ(c.chatTemplate, "qwen");
}

// The keys of LLaMA-Factory's examples/train_full for its other back-ends:
// accepted at the values an SFT run with mtc can have, refused by name at
// the others, never "unknown".
TEST(TrainConfig, LlamaFactoryExampleKeysAreKnown) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("example.yaml",
                                        "flash_attn: auto\noverwrite_cache: true\n"
                                        "dataloader_num_workers: 4\nddp_timeout: 180000000\n"
                                        "save_only_model: false\nval_size: 0.0\n"
                                        "eval_strategy: \"no\"\nper_device_eval_batch_size: 1\n"
                                        "eval_steps: 500\n"),
                              {}, c));
  // Each is listed as accepted, with what mtc does instead (--explain).
  EXPECT_EQ(c.alwaysDone.size(), 9u);
  std::string e = errorOf("deepspeed: examples/deepspeed/ds_z3_config.json\nval_size: 0.1\n"
                          "eval_strategy: steps\nsave_only_model: true\n");
  EXPECT_NE(e.find("4 keys ask for"), e.npos) << e;
  EXPECT_NE(e.find("deepspeed: examples/deepspeed/ds_z3_config.json is not supported: DeepSpeed "
                   "is not used"),
            e.npos)
      << e;
  EXPECT_NE(e.find("val_size: 0.1 is not supported: evaluation is not implemented"), e.npos) << e;
  EXPECT_NE(e.find("eval_strategy: steps is not supported"), e.npos) << e;
  EXPECT_NE(e.find("save_only_model: true is not supported"), e.npos) << e;
  e = errorOf("flash_attn: fa9\n");
  EXPECT_NE(e.find("flash_attn: must be one of auto, disabled, sdpa, fa2, fa3, got 'fa9'"),
            e.npos)
      << e;
  e = errorOf("eval_steps: often\n");
  EXPECT_NE(e.find("eval_steps: expected an integer or null, got 'often'"), e.npos) << e;
}

TEST(TrainConfig, OverridesApplyAfterTheFileInOrder) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("o.yaml", "learning_rate: 3e-6\nmax_steps: 10\n"),
                              {{"learning_rate", "1e-4"}, {"max_steps", "5"}, {"max_steps", "7"}},
                              c));
  EXPECT_DOUBLE_EQ(c.learningRate, 1e-4);
  EXPECT_EQ(c.maxSteps, 7);
}

// transformers' ranges: warmup_ratio in [0, 1]; save_total_limit 0 keeps
// every checkpoint, as null does.
TEST(TrainConfig, TakesTransformersRangesOfWarmupRatioAndSaveTotalLimit) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig("", {{"warmup_ratio", "1"}, {"save_total_limit", "0"}}, c));
  EXPECT_EQ(c.warmupRatio, 1.0);
  EXPECT_EQ(c.saveTotalLimit, 0);
  Status s = loadTrainConfig("", {{"warmup_ratio", "1.5"}}, c);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("command line: warmup_ratio: must be a finite number in [0, 1], "
                             "got 1.5"),
            std::string::npos)
      << s.message();
  EXPECT_FALSE(loadTrainConfig("", {{"save_total_limit", "-1"}}, c));
}

TEST(TrainConfig, ParsesLlamaFactoryCommandLineForms) {
  auto o = parseOverrides({"--learning_rate", "1e-4", "--bf16", "max_steps=3", "--seed=9",
                           "--packing"});
  ASSERT_TRUE(o) << o.message();
  const std::vector<std::pair<std::string, std::string>> want = {
      {"learning_rate", "1e-4"}, {"bf16", ""}, {"max_steps", "3"}, {"seed", "9"},
      {"packing", ""}};
  EXPECT_EQ(*o, want);
  // A bare flag is true for a boolean key, and no value for a string key.
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig("", {{"packing", ""}}, c));
  EXPECT_TRUE(c.packing);
  Status noValue = loadTrainConfig("", {{"dataset", ""}}, c);
  ASSERT_FALSE(noValue);
  EXPECT_NE(noValue.message().find("command line: dataset: needs a value (--dataset VALUE); a "
                                   "bare --dataset (or dataset=) is true, which only a "
                                   "true/false key takes"),
            std::string::npos)
      << noValue.message();
  auto bad = parseOverrides({"-x"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("'-x' is not an override"), std::string::npos);
}

// A string key's command-line value is the text as typed (HfArgumentParser),
// whatever YAML would make of it; other keys read YAML; a spelled null
// stays null.
TEST(TrainConfig, CommandLineStringsAreTakenAsTyped) {
  for (const char *text : {"out/y #c", "%out", "out/my run: v2", "*out", "[a, b]", "'q'"}) {
    TrainConfig c;
    ASSERT_TRUE(loadTrainConfig("", {{"output_dir", text}}, c)) << text;
    EXPECT_EQ(c.outputDir, text);
  }
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig("", {{"cutoff_len", "64 # a comment"}, {"packing", "yes"}}, c));
  EXPECT_EQ(c.cutoffLen, 64);
  EXPECT_TRUE(c.packing);
  ASSERT_TRUE(loadTrainConfig("", {{"resume_from_checkpoint", "x"}}, c));
  ASSERT_TRUE(loadTrainConfig("", {{"resume_from_checkpoint", "null"}}, c));
  EXPECT_EQ(c.resumeFromCheckpoint, "");
  const std::string e = errorOf("", {{"cutoff_len", "*x"}});
  EXPECT_NE(e.find("command line: cutoff_len: expected an integer, got '*x' (not valid YAML: "),
            std::string::npos)
      << e;
}

TEST(TrainConfig, TrinityMegatronBlockAndItsNesting) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("t.yaml", "megatron:\n"
                                                  "  tensor_model_parallel_size: 2\n"
                                                  "  use_mbridge: true\n"
                                                  "  use_dist_checkpointing: true\n"
                                                  "  dist_checkpointing_path: ckpt\n"
                                                  "  override_transformer_config:\n"
                                                  "    recompute_granularity: null\n"),
                              {}, c));
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_TRUE(c.useDistCheckpointing);
  EXPECT_EQ(c.distCheckpointingPath, "ckpt");
  // Recompute keys reach the layout from override_transformer_config.
  TrainConfig r;
  ASSERT_TRUE(loadTrainConfig(writeYaml("r.yaml", "megatron:\n  override_transformer_config:\n"
                                                  "    recompute_granularity: selective\n"
                                                  "    recompute_modules: core_attn, mlp\n"
                                                  "    moe_layer_recompute: true\n"),
                              {}, r));
  EXPECT_EQ(r.layout().recompute.granularity, "selective");
  EXPECT_EQ(r.layout().recompute.modules, (std::vector<std::string>{"core_attn", "mlp"}));
  EXPECT_TRUE(r.layout().recompute.moeLayerRecompute);
  std::string e = errorOf("megatron:\n  override_transformer_config:\n"
                          "    recompute_num_layers: 0\n");
  EXPECT_NE(e.find("error.yaml:3:27: recompute_num_layers: must be >= 1, got 0"), e.npos) << e;
  e = errorOf("recompute_modules: {core_attn: 1}\n");
  EXPECT_NE(e.find("recompute_modules: expected a list of module names, got a mapping"), e.npos)
      << e;
  e = errorOf("megatron:\n  tensor_model_parallel_size: 2\n  tensor_model_parallel_size: 4\n");
  EXPECT_NE(e.find("key 'megatron.tensor_model_parallel_size' is given twice"), e.npos) << e;
}

TEST(TrainConfig, TrinityRolesAndStrategyAreRefusedByName) {
  // Trinity-RFT's guide nests the block as actor_rollout_ref.actor.megatron
  // (and ref, critic): refused by name, pointing at the top-level block,
  // never read as if it were the layout.
  std::string e = errorOf("actor_rollout_ref:\n  actor:\n    strategy: megatron\n"
                          "    megatron:\n      tensor_model_parallel_size: 2\n"
                          "critic:\n  strategy: megatron\n");
  EXPECT_NE(e.find("2 keys ask for what this version of mtc does not do:"), e.npos) << e;
  EXPECT_NE(e.find("error.yaml:2:3: actor_rollout_ref: a mapping is not supported: Trinity-RFT's "
                   "reinforcement-learning roles (actor_rollout_ref: actor, rollout, ref; critic) "
                   "are not trained by mtc, which trains one model (stage sft or pt): move the "
                   "actor's megatron: block (with its override_transformer_config:) to the top "
                   "level; remove the key"),
            e.npos)
      << e;
  EXPECT_NE(e.find("error.yaml:7:3: critic: a mapping is not supported: Trinity-RFT's"), e.npos)
      << e;
  for (const char *role : {"actor", "ref"})
    EXPECT_NE(errorOf(std::string(role) + ":\n  megatron: {}\n")
                  .find(std::string(role) + ": a mapping is not supported: Trinity-RFT's"),
              std::string::npos)
        << role;
  // strategy: megatron is what mtc is; another backend is refused.
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("s.yaml", "strategy: megatron\nmegatron:\n"
                                                  "  tensor_model_parallel_size: 2\n"),
                              {}, c));
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_NE(c.explain(std::nullopt).find("accepted: strategy: megatron is what mtc does"),
            std::string::npos);
  e = errorOf("strategy: fsdp\n");
  EXPECT_NE(e.find("error.yaml:1:11: strategy: fsdp is not supported: Trinity-RFT's training "
                   "backend of a role: mtc is the Megatron-Core path; strategy may only be megatron"),
            e.npos)
      << e;
}

TEST(TrainConfig, AlwaysDoneKeysStillCheckTheirType) {
  // Keys whose value changes nothing (fusions, use_mbridge, ...) are
  // accepted at either value, but a value of no such type is a mistake.
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("ok.yaml", "moe_grouped_gemm: false\nuse_mca: True\n"
                                                   "preprocessing_num_workers: null\n"
                                                   "megatron:\n  use_mbridge: true\n"),
                              {}, c));
  EXPECT_NE(c.explain(std::nullopt).find("accepted: use_mbridge: mtc always reads"),
            std::string::npos);
  for (const char *key : {"trust_remote_code", "use_mca", "moe_grouped_gemm",
                          "overlap_grad_reduce", "bias_activation_fusion", "apply_rope_fusion",
                          "use_mbridge"}) {
    std::string e = errorOf(std::string(key) + ": maybe\n");
    EXPECT_NE(e.find(std::string("error.yaml:1:") + std::to_string(std::strlen(key) + 3) + ": " + key +
                     ": expected true or false, got 'maybe'"),
              e.npos)
        << key << ": " << e;
  }
  std::string e = errorOf("preprocessing_num_workers: many\n");
  EXPECT_NE(e.find("error.yaml:1:28: preprocessing_num_workers: expected an integer or null, got "
                   "'many'"),
            e.npos)
      << e;
  e = errorOf("stage: pt\n", {{"overlap_grad_reduce", "[1]"}});
  EXPECT_NE(e.find("command line: overlap_grad_reduce: expected true or false, got a list"), e.npos)
      << e;
}

// HfArgumentParser's string_to_bool takes 1, 0, t and f besides YAML's
// true/false/yes/no spellings, on the command line and in the file.
TEST(TrainConfig, BooleansTakeHfArgumentParsersSpellings) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("ok.yaml", "plot_loss: 0\npacking: 1\n"),
                              {{"overwrite_output_dir", "T"}, {"neat_packing", "f"}}, c));
  EXPECT_FALSE(c.plotLoss);
  EXPECT_TRUE(c.packing);
  EXPECT_TRUE(c.overwriteOutputDir);
  EXPECT_FALSE(c.neatPacking);
  std::string e = errorOf("plot_loss: 2\n");
  EXPECT_NE(e.find("plot_loss: expected true or false, got '2'"), e.npos) << e;
}

TEST(TrainConfig, PlotLossIsHonoured) {
  // plot_loss false had been accepted and training_loss.svg drawn all the
  // same; not given, mtc draws it.
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("ok.yaml", "stage: pt\n"), {}, c));
  EXPECT_TRUE(c.plotLoss);
  ASSERT_TRUE(loadTrainConfig(writeYaml("ok.yaml", "plot_loss: false\n"), {}, c));
  EXPECT_FALSE(c.plotLoss);
  EXPECT_EQ(c.explain(std::nullopt).find("plot_loss"), std::string::npos);
  std::string e = errorOf("plot_loss: maybe\n");
  EXPECT_NE(e.find("error.yaml:1:12: plot_loss: expected true or false, got 'maybe'"), e.npos)
      << e;
}

TEST(TrainConfig, ConfigPathIsTheFirstWordThatIsNoOverride) {
  std::vector<std::string> args = {"sft.yaml", "--learning_rate", "1e-5", "max_steps=3"};
  EXPECT_EQ(takeConfigPath(args), "sft.yaml");
  EXPECT_EQ(args, (std::vector<std::string>{"--learning_rate", "1e-5", "max_steps=3"}));
  // Keys alone (src/train.py's form): no file, every word stays an override.
  for (std::vector<std::string> keys :
       {std::vector<std::string>{"--model_name_or_path", "m", "--do_train"},
        std::vector<std::string>{"stage=sft", "x.yaml"}, std::vector<std::string>{}}) {
    std::vector<std::string> before = keys;
    EXPECT_EQ(takeConfigPath(keys), "");
    EXPECT_EQ(keys, before);
  }
  // A path with '=' past a '/' is a file, not key=value.
  args = {"runs/a=b.yaml"};
  EXPECT_EQ(takeConfigPath(args), "runs/a=b.yaml");
  EXPECT_TRUE(args.empty());
}

TEST(TrainConfig, GradReduceInFp32ReachesTheLayout) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("g.yaml", "stage: pt\n"), {}, c));
  EXPECT_TRUE(c.layout().gradReduceInFp32);
  for (const char *text :
       {"grad_reduce_in_fp32: false\n", "megatron:\n  grad_reduce_in_fp32: no\n"}) {
    TrainConfig off;
    ASSERT_TRUE(loadTrainConfig(writeYaml("g.yaml", text), {}, off)) << text;
    EXPECT_FALSE(off.layout().gradReduceInFp32) << text;
  }
  std::string e = errorOf("grad_reduce_in_fp32: half\n");
  EXPECT_NE(e.find("error.yaml:1:22: grad_reduce_in_fp32: expected true or false, got 'half'"),
            e.npos)
      << e;
}

TEST(TrainConfig, GlobalBatchIsMicroTimesAccumulationTimesDp) {
  TrainConfig c;
  c.perDeviceTrainBatchSize = 4, c.gradientAccumulationSteps = 2;
  c.parallel.tp = 2, c.parallel.pp = 2, c.parallel.worldSize = 16;
  EXPECT_EQ(c.dataParallelSize(), 4);
  EXPECT_EQ(c.globalBatchSize(), 32);
  ParallelConfig p = c.layout();
  EXPECT_EQ(p.microBatch, 4);
  EXPECT_EQ(p.globalBatch, 32);
  EXPECT_EQ(p.seq, c.cutoffLen);
  EXPECT_NE(c.explain(std::nullopt).find("global batch: per_device_train_batch_size (4) x "
                                         "gradient_accumulation_steps (2) x dp (4) = 32"),
            std::string::npos);
}

TEST(TrainConfig, StepsFromEpochsNeedTheDatasetSize) {
  TrainConfig c;
  c.perDeviceTrainBatchSize = 2, c.gradientAccumulationSteps = 4; // global batch 8
  c.numTrainEpochs = 2, c.warmupRatio = 0.1, c.lrSchedulerType = "cosine";
  auto none = c.optimizer(std::nullopt);
  ASSERT_FALSE(none);
  EXPECT_NE(none.message().find("num_train_epochs (2"), std::string::npos);
  // MCoreAdapter's trainer (drop_last): 100 / 8 = 12 steps per epoch (a
  // partial batch dropped), x 2; warm-up ceil(0.1 x 24) = 3
  // (TrainingArguments.get_warmup_steps).
  EXPECT_EQ(c.stepsPerEpoch(100), 12);
  EXPECT_EQ(c.stepsPerEpoch(104), 13);
  EXPECT_EQ(c.stepsPerEpoch(3), 1);
  auto o = c.optimizer(100);
  ASSERT_TRUE(o) << o.message();
  EXPECT_EQ(o->trainSteps, 24);
  EXPECT_EQ(o->decaySteps, 24);
  EXPECT_EQ(o->warmupSteps, 3);
  EXPECT_EQ(o->decayStyle, "hf_cosine");
  EXPECT_NE(c.explain(100).find("steps: num_train_epochs 2 x 12 steps per epoch (100 samples / "
                                "global batch 8, a last partial batch dropped) = 24 steps"),
            std::string::npos)
      << c.explain(100);
  // A fraction of an epoch rounds up: ceil(0.25 x 12) = 3, ceil(0.3 x 12) = 4.
  c.numTrainEpochs = 0.25;
  EXPECT_EQ(*c.trainSteps(100), 3);
  c.numTrainEpochs = 0.3;
  EXPECT_EQ(*c.trainSteps(100), 4);
  c.numTrainEpochs = 0;
  EXPECT_FALSE(c.trainSteps(100));
  c.numTrainEpochs = 2;
  c.maxSteps = 5, c.warmupSteps = 2;
  o = c.optimizer(std::nullopt);
  ASSERT_TRUE(o) << o.message();
  EXPECT_EQ(o->trainSteps, 5);
  EXPECT_EQ(o->warmupSteps, 2);
}

// Fewer samples than one global batch: every step holds some twice or
// more. The warning gives both numbers and the keys that make the batch.
TEST(TrainConfig, DataSmallerThanOneStepIsAWarningWithBothNumbers) {
  TrainConfig c; // stage sft
  c.perDeviceTrainBatchSize = 8, c.gradientAccumulationSteps = 4; // global batch 32
  std::string w = c.repeatedSamplesWarning(11);
  EXPECT_NE(w.find("the prepared data has 11 rows, and every step reads 32 (the global batch: "
                   "per_device_train_batch_size 8 x gradient_accumulation_steps 4 x "
                   "data-parallel size 1): every step repeats samples, each about 2.9 times; "
                   "lower per_device_train_batch_size or gradient_accumulation_steps to a "
                   "global batch of at most 11, or give more data"),
            w.npos)
      << w;
  EXPECT_EQ(w.find("max_samples"), w.npos) << w;
  // Exactly one batch, or more, repeats nothing within a step.
  EXPECT_EQ(c.repeatedSamplesWarning(32), "");
  EXPECT_EQ(c.repeatedSamplesWarning(33), "");
  // dp counts (world 4 at tp 2: dp 2, global batch 64); max_samples is named
  // where it cut the data; stage pt counts samples of cutoff_len tokens.
  c.parallel.tp = 2, c.parallel.worldSize = 4, c.maxSamples = 40, c.stage = "pt";
  w = c.repeatedSamplesWarning(40);
  EXPECT_NE(w.find("has 40 samples of cutoff_len tokens, and every step reads 64 (the global "
                   "batch: per_device_train_batch_size 8 x gradient_accumulation_steps 4 x "
                   "data-parallel size 2)"),
            w.npos)
      << w;
  EXPECT_NE(w.find("each about 1.6 times"), w.npos) << w;
  EXPECT_NE(w.find("(max_samples 40 keeps only the first examples)"), w.npos) << w;
  // --explain's step count says so too (3 epochs of one step each).
  c.maxSteps = -1, c.numTrainEpochs = 3;
  EXPECT_NE(c.explain(40).find("steps: num_train_epochs 3 x 1 step per epoch (40 samples, fewer "
                               "than the global batch 64: one step, samples repeated) = 3 steps"),
            std::string::npos)
      << c.explain(40);
}

// transformers' AdamW and clipping keys reach the plan's optimizer as given.
TEST(TrainConfig, OptimizerKeysReachTheOptimizer) {
  TrainConfig c;
  ASSERT_TRUE(loadTrainConfig(writeYaml("adam.yaml", "learning_rate: 2e-5\nweight_decay: 0.1\n"
                                                     "adam_beta1: 0.8\nadam_beta2: 0.95\n"
                                                     "adam_epsilon: 1e-6\nmax_grad_norm: 0.5\n"
                                                     "max_steps: 9\nwarmup_ratio: 0.2\n"
                                                     "lr_scheduler_type: linear\n"),
                              {}, c));
  auto o = c.optimizer(std::nullopt);
  ASSERT_TRUE(o) << o.message();
  EXPECT_DOUBLE_EQ(o->lr, 2e-5);
  EXPECT_DOUBLE_EQ(o->weightDecay, 0.1);
  EXPECT_DOUBLE_EQ(o->beta1, 0.8);
  EXPECT_DOUBLE_EQ(o->beta2, 0.95);
  EXPECT_DOUBLE_EQ(o->eps, 1e-6);
  EXPECT_DOUBLE_EQ(o->clipGrad, 0.5);
  EXPECT_EQ(o->trainSteps, 9);
  EXPECT_EQ(o->warmupSteps, 2); // ceil(0.2 x 9)
  EXPECT_EQ(o->decayStyle, "hf_linear");
}

TEST(TrainConfig, CosineWithMinLrTakesItsKwargs) {
  TrainConfig c;
  c.maxSteps = 10, c.learningRate = 1e-3, c.lrSchedulerType = "cosine_with_min_lr";
  EXPECT_FALSE(c.optimizer(std::nullopt));
  c.minLrRate = 0.1;
  auto o = c.optimizer(std::nullopt);
  ASSERT_TRUE(o) << o.message();
  EXPECT_DOUBLE_EQ(o->minLr, 1e-4);
  std::string e = errorOf("lr_scheduler_kwargs:\n  min_lr_ratio: 0.1\n");
  EXPECT_NE(e.find("lr_scheduler_kwargs.min_lr_ratio: unknown"), e.npos) << e;
}

// A Megatron-Core name the training front-end does not take gets its
// LLaMA-Factory name (closestName offered 'ref' for lr).
TEST(TrainConfig, AMegatronOnlyKeyGetsItsLlamaFactoryName) {
  std::string e = errorOf("stage: pt\nlr: 1e-4\n");
  EXPECT_NE(e.find("error.yaml:2:1: unknown key 'lr': it is a name of Megatron-Core's option "
                   "file (which `mtc compile --config` reads, not with LLaMA-Factory's keys); "
                   "LLaMA-Factory's name is learning_rate"),
            e.npos)
      << e;
  e = errorOf("", {{"train_iters", "5"}});
  EXPECT_NE(e.find("command line: unknown key 'train_iters': it is a name of Megatron-Core's "
                   "option file"),
            e.npos)
      << e;
  EXPECT_NE(e.find("LLaMA-Factory's name is max_steps"), e.npos) << e;
  e = errorOf("global_batch_size: 64\n");
  EXPECT_NE(e.find("LLaMA-Factory has none: per_device_train_batch_size x "
                   "gradient_accumulation_steps x dp makes it"),
            e.npos)
      << e;
}

// A Megatron-LM argument that neither reader takes gets what LLaMA-Factory
// calls it, or where its value comes from.
TEST(TrainConfig, AMegatronLmArgumentGetsItsPlaceInTheYaml) {
  std::string e = errorOf("stage: pt\nlog_interval: 5\n");
  EXPECT_NE(e.find("error.yaml:2:1: unknown key 'log_interval': a Megatron-LM argument; "
                   "LLaMA-Factory's name is logging_steps"),
            e.npos)
      << e;
  e = errorOf("gradient_checkpointing: true\n", {{"nproc_per_node", "2"}});
  EXPECT_NE(e.find("unknown key 'gradient_checkpointing': activation recompute is "
                   "Megatron-Core's recompute_granularity"),
            e.npos)
      << e;
  EXPECT_NE(e.find("unknown key 'nproc_per_node': mtc train takes the ranks from "
                   "NPROC_PER_NODE"),
            e.npos)
      << e;
  e = errorOf("", {{"num_layers", "4"}});
  EXPECT_NE(e.find("command line: unknown key 'num_layers': a Megatron-LM argument; the model's "
                   "shape comes from model_name_or_path's config.json"),
            e.npos)
      << e;
}

// A plan alone keeps no precision: bf16: false, which `mtc train` honours
// with the CPU backend, is refused for `mtc compile` by where it was given.
TEST(TrainConfig, PlanKeysRefuseBf16False) {
  TrainConfig c;
  const std::string path = writeYaml("bf16.yaml", "learning_rate: 1e-5\nbf16: false\n");
  ASSERT_TRUE(loadTrainConfig(path, {}, c));
  Status s = c.checkPlanKeys();
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(path + ":2:7: bf16: false cannot be kept by a plan"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("mtrun --backend cpu"), std::string::npos) << s.message();
  TrainConfig on;
  ASSERT_TRUE(loadTrainConfig(writeYaml("bf16-on.yaml", "bf16: true\n"), {}, on));
  EXPECT_TRUE(on.checkPlanKeys());
  TrainConfig absent; // transformers' default: no key, nothing to keep
  ASSERT_TRUE(loadTrainConfig(writeYaml("bf16-absent.yaml", "learning_rate: 1e-5\n"), {}, absent));
  EXPECT_TRUE(absent.checkPlanKeys());
  // The last setting counts: a command line's --bf16 true over the file's false.
  TrainConfig overridden;
  ASSERT_TRUE(loadTrainConfig(path, {{"bf16", "true"}}, overridden));
  EXPECT_TRUE(overridden.checkPlanKeys());
}

// The layout's values are checked where they are read, with the key, the
// value and the valid ones (the same lists as the flags and Megatron-Core's
// reader: optionValueError).
TEST(TrainConfig, LayoutValueErrorsNameFileLineKeyAndValidValues) {
  std::string e = errorOf("tensor_model_parallel_size: 2\nrecompute_granularity: fulll\n");
  EXPECT_NE(e.find("error.yaml:2:24: recompute_granularity must be full or selective (or null "
                   "for no recompute), got 'fulll'"),
            e.npos)
      << e;
  e = errorOf("megatron:\n  recompute_method: blocks\n");
  EXPECT_NE(e.find("error.yaml:2:21: recompute_method must be uniform or block (or null), got "
                   "'blocks'"),
            e.npos)
      << e;
  e = errorOf("recompute_modules: [core_attn, attention]\n");
  EXPECT_NE(e.find("error.yaml:1:20: recompute_modules: unknown module 'attention' (valid: "
                   "core_attn, mlp, layernorm, moe_act, moe)"),
            e.npos)
      << e;
  e = errorOf("cp_comm_type: ring\n");
  EXPECT_NE(e.find("error.yaml:1:15: cp_comm_type 'ring': expected one of Megatron-Core's p2p, "
                   "all_gather, a2a"),
            e.npos)
      << e;
  e = errorOf("moe_token_dispatcher_type: flex\n");
  EXPECT_NE(e.find("error.yaml:1:28: moe_token_dispatcher_type 'flex': not built in this "
                   "version of mtc; use alltoall or allgather"),
            e.npos)
      << e;
  e = errorOf("learning_rate: 0\n");
  EXPECT_NE(e.find("error.yaml:1:16: learning_rate: must be a finite number > 0, got 0"), e.npos)
      << e;
  e = errorOf("adam_beta2: 1\n");
  EXPECT_NE(e.find("error.yaml:1:13: adam_beta2: must be a finite number in [0, 1), got 1"),
            e.npos)
      << e;
  e = errorOf("adam_epsilon: 0\n");
  EXPECT_NE(e.find("error.yaml:1:15: adam_epsilon: must be a finite number > 0, got 0"), e.npos)
      << e;
  // The moe_* routing keys (applied at import) too.
  e = errorOf("moe_token_drop_policy: random\n");
  EXPECT_NE(e.find("error.yaml:1:24: moe_token_drop_policy: must be probs or position, got "
                   "'random'"),
            e.npos)
      << e;
  e = errorOf("moe_router_load_balancing_type: sinkhorn\n");
  EXPECT_NE(e.find("error.yaml:1:33: moe_router_load_balancing_type: must be aux_loss, "
                   "seq_aux_loss or none, got 'sinkhorn'"),
            e.npos)
      << e;
  e = errorOf("moe_expert_capacity_factor: 0\n");
  EXPECT_NE(e.find("error.yaml:1:29: moe_expert_capacity_factor: must be > 0 (or null for "
                   "dropless), got 0"),
            e.npos)
      << e;
  e = errorOf("moe_aux_loss_coeff: -0.5\n");
  EXPECT_NE(e.find("error.yaml:1:21: moe_aux_loss_coeff: must be >= 0, got -0.5"), e.npos) << e;
  e = errorOf("moe_z_loss_coeff: -1\n");
  EXPECT_NE(e.find("error.yaml:1:19: moe_z_loss_coeff: must be >= 0, got -1"), e.npos) << e;
  for (const char *ok : {"recompute_granularity: selective\nrecompute_modules: core_attn,mlp\n",
                         "recompute_method: null\ncp_comm_type: a2a\n",
                         "moe_token_dispatcher_type: allgather\n",
                         "moe_token_drop_policy: position\nmoe_expert_capacity_factor: 1.5\n"
                         "moe_router_load_balancing_type: none\nmoe_z_loss_coeff: 0.001\n"})
    EXPECT_EQ(errorOf(ok), "") << ok;
}

} // namespace
} // namespace mt
