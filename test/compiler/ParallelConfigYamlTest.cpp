// The YAML reader of Megatron-Core names (ParallelConfigYaml.cpp): every
// option by its YAML type, and every error with file:line:col, the key, the
// value and what is valid.
#include "compiler/config/ParallelConfig.h"
#include "test/compiler/SmallModel.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <unistd.h>

namespace mt {
namespace {

using test::smallModel;

class YamlConfig : public ::testing::Test {
protected:
  std::string write(const std::string &text) {
    path_ = std::filesystem::temp_directory_path() /
            ("mt-yaml-" + std::to_string(::getpid()) + ".yaml");
    std::ofstream(path_) << text;
    return path_.string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::filesystem::path path_;
  OptimizerConfig opt;
};

TEST_F(YamlConfig, ReadsMegatronNames) {
  ParallelConfig c;
  ASSERT_TRUE(loadParallelConfigYaml(write("tensor_model_parallel_size: 2\n"
                                           "pipeline_model_parallel_size: 4\n"
                                           "virtual_pipeline_model_parallel_size: 2\n"
                                           "expert_model_parallel_size: 1\n"
                                           "context_parallel_size: 1\n"
                                           "sequence_parallel: true\n"
                                           "global_batch_size: 64\n"
                                           "use_distributed_optimizer: false\n"
                                           "overlap_grad_reduce: true\n"
                                           "decoder_first_pipeline_num_layers: 1\n"
                                           "decoder_last_pipeline_num_layers: 3\n"),
                                     c, opt));
  EXPECT_EQ(c.tp, 2);
  EXPECT_EQ(c.pp, 4);
  EXPECT_EQ(c.vpp, 2);
  EXPECT_TRUE(c.sequenceParallel);
  EXPECT_EQ(c.globalBatch, 64);
  EXPECT_FALSE(c.distributedOptimizer);
  EXPECT_EQ(c.firstStageLayers, 1);
  EXPECT_EQ(c.lastStageLayers, 3);
}

TEST_F(YamlConfig, ReadsOptimizerOptions) {
  ParallelConfig c;
  ASSERT_TRUE(loadParallelConfigYaml(write("lr: 1.0e-3\nmin_lr: 1.0e-5\n"
                                           "lr_warmup_iters: 10\nlr_decay_iters: 200\n"
                                           "lr_decay_style: linear\nweight_decay: 0.1\n"
                                           "adam_beta2: 0.95\nclip_grad: 0.5\n"
                                           "train_iters: 300\n"),
                                     c, opt));
  EXPECT_EQ(opt.lr, 1.0e-3);
  EXPECT_EQ(opt.warmupSteps, 10);
  EXPECT_EQ(opt.decaySteps, 200);
  EXPECT_EQ(opt.decayStyle, "linear");
  EXPECT_EQ(opt.beta2, 0.95);
  EXPECT_EQ(opt.clipGrad, 0.5);
  EXPECT_EQ(opt.trainSteps, 300);
  EXPECT_TRUE(opt.validate());
}

TEST_F(YamlConfig, NamesLineAndColumnOfABadValue) {
  ParallelConfig c;
  Status s = loadParallelConfigYaml(write("tensor_model_parallel_size: 2\n"
                                          "pipeline_model_parallel_size: two\n"),
                                    c, opt);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(":2:31: pipeline_model_parallel_size: expected an integer, got 'two'"), std::string::npos)
      << s.message();
}

// A second document (after --- or ...) would be dropped by yaml-cpp's
// LoadFile; yaml.safe_load refuses it, and so does this reader.
TEST_F(YamlConfig, RejectsASecondDocument) {
  for (const char *separator : {"---\n", "...\n"}) {
    ParallelConfig c;
    Status s = loadParallelConfigYaml(
        write(std::string("tensor_model_parallel_size: 2\n") + separator + "lr: 1\n"), c, opt);
    ASSERT_FALSE(s);
    EXPECT_NE(s.message().find(":3:1: a second YAML document: the file must hold one"),
              std::string::npos)
        << s.message();
  }
}

TEST_F(YamlConfig, RejectsUnknownKeysAndSuggestsTheClosest) {
  ParallelConfig c;
  Status s = loadParallelConfigYaml(write("tensor_model_paralel_size: 2\n"), c, opt);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(":1:1: unknown option 'tensor_model_paralel_size'; did you "
                             "mean 'tensor_model_parallel_size'?"),
            std::string::npos)
      << s.message();
}

// Megatron-LM arguments a plan does not hold are refused with where they go
// instead, and every key's error is told at once, in file order.
TEST_F(YamlConfig, TellsEveryKeyErrorAndWhereMegatronArgumentsGo) {
  ParallelConfig c;
  Status s = loadParallelConfigYaml(write("log_interval: 1\n"
                                          "tensor_model_parallel_size: two\n"
                                          "num_layers: 4\n"
                                          "seq_lenght: 16\n"
                                          "save_interval: 100\n"
                                          "moe_aux_loss_coeff: 0.01\n"
                                          "exit_signal_handler: true\n"),
                                    c, opt);
  ASSERT_FALSE(s);
  const std::string p = path_.string();
  EXPECT_EQ(s.message(),
            "7 errors in " + p + ":\n  " + p +
                ":1:1: log_interval: not an option of the plan: a plan holds no logging: give it "
                "to `mtrun --log-interval`\n  " +
                p + ":2:29: tensor_model_parallel_size: expected an integer, got 'two'\n  " + p +
                ":3:1: num_layers: not an option of the plan: the model's shape comes from its "
                "Hugging Face config.json, which `mtc import-hf` reads into the MLIR this "
                "command compiles\n  " +
                p + ":4:1: unknown option 'seq_lenght'; did you mean 'seq_length'?\n  " + p +
                ":5:1: save_interval: not an option of the plan: a plan holds no paths: give "
                "`mtrun --save DIR --save-every N`\n  " +
                p + ":6:1: moe_aux_loss_coeff: not an option of the plan: a routing key shapes "
                "the model when it is imported: give it to `mtc import-hf --moe-...`\n  " +
                p + ":7:1: exit_signal_handler: not an option of the plan: a plan holds no run "
                "control: give it to mtrun (--exit-signal-handler, --exit-duration-in-mins, "
                "--exit-interval)");
}

// A shortened key gets the known option holding its words, fewest edits
// first: vLLM's tensor_parallel_size is Megatron's tensor_model_parallel_size,
// not expert_tensor_parallel_size (which also holds those words).
TEST_F(YamlConfig, ShortenedKeySuggestsTheOptionHoldingItsWords) {
  ParallelConfig c;
  Status s = loadParallelConfigYaml(write("tensor_parallel_size: 2\n"), c, opt);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(":1:1: unknown option 'tensor_parallel_size'; did you mean "
                             "'tensor_model_parallel_size'?"),
            std::string::npos)
      << s.message();
}

// A speed switch given false is kept, in file order, for resolve()'s
// warning; true says what mtc does and is not kept.
TEST_F(YamlConfig, SpeedSwitchesGivenFalseAreKeptForTheWarning) {
  ParallelConfig c;
  ASSERT_TRUE(loadParallelConfigYaml(write("overlap_grad_reduce: false\n"
                                           "moe_grouped_gemm: true\n"
                                           "apply_rope_fusion: no\n"),
                                     c, opt));
  EXPECT_EQ(c.speedSwitchesOff,
            (std::vector<std::string>{"overlap_grad_reduce", "apply_rope_fusion"}));
}

TEST_F(YamlConfig, ReportsMalformedYamlWithPosition) {
  ParallelConfig c;
  Status s = loadParallelConfigYaml(write("tensor_model_parallel_size: [2\n"), c, opt);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(path_.string() + ":"), std::string::npos) << s.message();
}

// Fault 9 of issue 11 and its kind (YAML scalars read by spelling, not by
// type): every option is read by its YAML type, in each spelling YAML
// allows, and anything else is refused with its position.
class YamlTypedValues : public YamlConfig {
protected:
  /// Loads "key: value" into a fresh config; the error text, or "".
  std::string load(const std::string &key, const std::string &value) {
    config = ParallelConfig();
    opt = OptimizerConfig();
    Status s = loadParallelConfigYaml(write(key + ": " + value + "\n"), config, opt);
    return s ? "" : s.message();
  }
  /// The layout error of the loaded config ("" when it resolves).
  std::string resolveError() {
    Status s = config.resolve(smallModel());
    return s ? "" : s.message();
  }
  ParallelConfig config;
};

const std::vector<std::string> kTrue = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                        "on",   "On",   "ON",   "y",   "Y"};
const std::vector<std::string> kFalse = {"false", "False", "FALSE", "no", "No", "NO",
                                         "off",   "Off",   "OFF",   "n",  "N"};

TEST_F(YamlTypedValues, SequenceParallelInEveryBooleanSpelling) {
  for (bool expected : {true, false})
    for (const std::string &spelling : expected ? kTrue : kFalse) {
      ASSERT_EQ(load("sequence_parallel", spelling), "") << spelling;
      EXPECT_EQ(config.sequenceParallel, expected) << spelling;
    }
  EXPECT_NE(load("sequence_parallel", "1").find(":1:20: sequence_parallel: expected true or false, got '1'"),
            std::string::npos);
}

TEST_F(YamlTypedValues, ParamOffloadIsABoolean) {
  for (bool expected : {true, false})
    for (const std::string &spelling : expected ? kTrue : kFalse) {
      ASSERT_EQ(load("param_offload", spelling), "") << spelling;
      EXPECT_EQ(config.paramOffload, expected) << spelling;
      EXPECT_EQ(resolveError(), "") << spelling;
    }
  EXPECT_NE(load("param_offload", "maybe").find(":1:16: param_offload: expected true or false, got 'maybe'"),
            std::string::npos);
}

TEST_F(YamlTypedValues, OptimizerOffloadIsABoolean) {
  for (bool expected : {true, false})
    for (const std::string &spelling : expected ? kTrue : kFalse) {
      ASSERT_EQ(load("optimizer_offload", spelling), "") << spelling;
      EXPECT_EQ(config.optimizerOffload, expected) << spelling;
      EXPECT_EQ(resolveError(), "") << spelling;
    }
  EXPECT_NE(load("optimizer_offload", "maybe").find(":1:20: optimizer_offload: expected true or false, got 'maybe'"),
            std::string::npos);
}

TEST_F(YamlTypedValues, GradOffloadIsABoolean) {
  for (bool expected : {true, false})
    for (const std::string &spelling : expected ? kTrue : kFalse) {
      ASSERT_EQ(load("grad_offload", spelling), "") << spelling;
      EXPECT_EQ(config.gradOffload, expected) << spelling;
      EXPECT_EQ(resolveError(), "") << spelling;
    }
  EXPECT_NE(load("grad_offload", "maybe").find(":1:15: grad_offload: expected true or false, got 'maybe'"),
            std::string::npos);
}

TEST_F(YamlTypedValues, DistributedOptimizerIsABoolean) {
  for (const std::vector<std::string> *spellings : {&kTrue, &kFalse})
    for (const std::string &spelling : *spellings) {
      ASSERT_EQ(load("use_distributed_optimizer", spelling), "") << spelling;
      EXPECT_EQ(config.distributedOptimizer, spellings == &kTrue) << spelling;
      EXPECT_EQ(resolveError(), "") << spelling;
    }
  EXPECT_NE(load("use_distributed_optimizer", "maybe")
                .find(":1:28: use_distributed_optimizer: expected true or false, got 'maybe'"),
            std::string::npos);
}

TEST_F(YamlTypedValues, GradReduceInFp32IsABooleanTrueByDefault) {
  EXPECT_TRUE(ParallelConfig().gradReduceInFp32); // Megatron-Core's default
  for (const std::vector<std::string> *spellings : {&kTrue, &kFalse})
    for (const std::string &spelling : *spellings) {
      ASSERT_EQ(load("grad_reduce_in_fp32", spelling), "") << spelling;
      EXPECT_EQ(config.gradReduceInFp32, spellings == &kTrue) << spelling;
      config.dp = 2, config.globalBatch = 4; // false needs a dp reduction to apply to
      EXPECT_EQ(resolveError(), "") << spelling;
    }
  EXPECT_NE(load("grad_reduce_in_fp32", "maybe").find(":1:22: grad_reduce_in_fp32: expected true or false, got 'maybe'"),
            std::string::npos);
}

TEST_F(YamlTypedValues, HintsAreBooleans) {
  for (const char *key : {"bias_activation_fusion", "apply_rope_fusion", "moe_grouped_gemm",
                          "overlap_grad_reduce"}) {
    for (const std::vector<std::string> *spellings : {&kTrue, &kFalse})
      for (const std::string &spelling : *spellings)
        EXPECT_EQ(load(key, spelling), "") << key << ": " << spelling;
    EXPECT_NE(load(key, "fast").find("expected true or false, got 'fast'"), std::string::npos)
        << key;
    EXPECT_NE(load(key, "[true]").find("expected true or false, got a list"), std::string::npos)
        << key;
  }
}

// A plan keeps no precision: bf16: true is what the CUDA backend does, and
// false is refused by name rather than ignored.
TEST_F(YamlTypedValues, Bf16FalseIsRefusedByName) {
  for (const std::string &spelling : kTrue)
    EXPECT_EQ(load("bf16", spelling), "") << spelling;
  for (const std::string &spelling : kFalse) {
    const std::string error = load("bf16", spelling);
    EXPECT_NE(error.find(":1:7: bf16: false cannot be kept by a plan"), std::string::npos)
        << spelling << ": " << error;
    EXPECT_NE(error.find("mtrun --backend cpu"), std::string::npos) << error;
  }
  EXPECT_NE(load("bf16", "fast").find("expected true or false, got 'fast'"), std::string::npos);
}

TEST_F(YamlTypedValues, RecomputeOptionsReadNullAsNotGiven) {
  for (const char *key : {"recompute_granularity", "recompute_method", "recompute_num_layers",
                          "recompute_modules"}) {
    for (const char *spelling : {"null", "Null", "NULL", "~", ""}) {
      ASSERT_EQ(load(key, spelling), "") << key << ": '" << spelling << "'";
      EXPECT_FALSE(config.recompute.enabled()) << key << ": '" << spelling << "'";
      EXPECT_EQ(resolveError(), "") << key << ": '" << spelling << "'";
    }
  }
  ASSERT_EQ(load("recompute_granularity", "full"), "");
  EXPECT_EQ(resolveError(), "");
  EXPECT_EQ(config.recompute.describe(), "full, uniform, 1 layer per unit");
  EXPECT_NE(load("recompute_num_layers", "all").find(":1:23: recompute_num_layers: expected an integer or null, got 'all'"),
            std::string::npos);
  // recompute_modules: a list, or MCoreAdapter's comma-separated string.
  for (const char *spelling : {"[core_attn, mlp]", "core_attn,mlp", "'core_attn, mlp'"}) {
    ASSERT_EQ(load("recompute_modules", spelling), "") << spelling;
    EXPECT_EQ(config.recompute.modules, (std::vector<std::string>{"core_attn", "mlp"}))
        << spelling;
  }
  EXPECT_NE(load("recompute_modules", "{a: 1}").find("expected a list of module names, got a "
                                                     "mapping"),
            std::string::npos);
  ASSERT_EQ(load("moe_layer_recompute", "yes"), "");
  EXPECT_TRUE(config.recompute.moeLayerRecompute);
  for (const char *spelling : {"alltoall", "'alltoall'", "\"alltoall\""}) {
    ASSERT_EQ(load("moe_token_dispatcher_type", spelling), "") << spelling;
    EXPECT_EQ(config.moeTokenDispatcherType, "alltoall") << spelling;
    EXPECT_EQ(resolveError(), "") << spelling;
  }
  ASSERT_EQ(load("moe_token_dispatcher_type", "allgather"), "");
  EXPECT_EQ(config.moeTokenDispatcherType, "allgather");
  EXPECT_EQ(resolveError(), "");
  // moe_shared_expert_overlap: a hint, with the alltoall dispatcher only
  // (Megatron-Core's TransformerConfig rule).
  ASSERT_EQ(load("moe_shared_expert_overlap", "true"), "");
  EXPECT_TRUE(config.moeSharedExpertOverlap);
  config.moeTokenDispatcherType = "allgather";
  EXPECT_NE(resolveError().find("moe_shared_expert_overlap overlaps the shared expert with the "
                                "alltoall dispatcher's all-to-all; it needs "
                                "moe_token_dispatcher_type (--moe-token-dispatcher-type) "
                                "alltoall, got 'allgather'"),
            std::string::npos);
  config.moeTokenDispatcherType = "alltoall";
  EXPECT_EQ(resolveError(), "");
}

/// Every integer option, with where its value lands.
const std::pair<const char *, std::function<int64_t(const ParallelConfig &,
                                                    const OptimizerConfig &)>>
    kIntegerOptions[] = {
        {"tensor_model_parallel_size", [](auto &c, auto &) { return c.tp; }},
        {"pipeline_model_parallel_size", [](auto &c, auto &) { return c.pp; }},
        {"virtual_pipeline_model_parallel_size", [](auto &c, auto &) { return c.vpp; }},
        {"expert_model_parallel_size", [](auto &c, auto &) { return c.ep; }},
        {"context_parallel_size", [](auto &c, auto &) { return c.cp; }},
        {"data_parallel_size", [](auto &c, auto &) { return c.dp; }},
        {"world_size", [](auto &c, auto &) { return c.worldSize; }},
        {"micro_batch_size", [](auto &c, auto &) { return c.microBatch; }},
        {"global_batch_size", [](auto &c, auto &) { return c.globalBatch; }},
        {"seq_length", [](auto &c, auto &) { return c.seq; }},
        {"decoder_first_pipeline_num_layers", [](auto &c, auto &) { return c.firstStageLayers; }},
        {"decoder_last_pipeline_num_layers", [](auto &c, auto &) { return c.lastStageLayers; }},
        {"lr_warmup_iters", [](auto &, auto &o) { return o.warmupSteps; }},
        {"lr_decay_iters", [](auto &, auto &o) { return o.decaySteps; }},
        {"train_iters", [](auto &, auto &o) { return o.trainSteps; }},
};

TEST_F(YamlTypedValues, IntegersInEverySpelling) {
  for (const auto &[key, valueOf] : kIntegerOptions) {
    for (const char *spelling : {"8", "+8", "0x8", "'8'"}) {
      ASSERT_EQ(load(key, spelling), "") << key << ": " << spelling;
      EXPECT_EQ(valueOf(config, opt), 8) << key << ": " << spelling;
    }
    // Null reads as "not given" where Megatron-Core's default is None.
    const bool nullable = load(key, "null").empty();
    const std::string expected =
        std::string(":1:") + std::to_string(std::strlen(key) + 3) + ": " + key +
        (nullable ? ": expected an integer or null, got " : ": expected an integer, got ");
    for (const char *bad : {"8.0", "8e0", "eight", "true", "99999999999999999999"})
      EXPECT_NE(load(key, bad).find(expected + "'" + bad + "'"), std::string::npos)
          << key << ": " << bad << ": " << load(key, bad);
    EXPECT_NE(load(key, "[8]").find(expected + "a list"), std::string::npos) << key;
  }
}

// Every range is checked where the value is read: the error names the
// file:line:col, the key, the value and what is valid (before, sizes and
// schedule were checked only after the flags were merged, without a line).
TEST_F(YamlTypedValues, IntegerRangesNameTheKeyAndTheBound) {
  const std::pair<const char *, const char *> below[] = {
      {"tensor_model_parallel_size", "must be >= 1, got 0"},
      {"pipeline_model_parallel_size", "must be >= 1, got 0"},
      {"expert_model_parallel_size", "must be >= 1, got -2"},
      {"context_parallel_size", "must be >= 1, got 0"},
      {"data_parallel_size", "must be >= 1, got 0"},
      {"world_size", "must be >= 1, got 0"},
      {"micro_batch_size", "must be >= 1, got 0"},
      {"global_batch_size", "must be >= 1, got 0"},
      {"seq_length", "must be >= 1, got 0"},
      {"train_iters", "must be >= 1, got 0"},
      {"lr_warmup_iters", "must be >= 0, got -1"},
      {"virtual_pipeline_model_parallel_size", "must be >= 1 (or null), got 0"},
      {"expert_tensor_parallel_size", "must be >= 1 (or null), got 0"},
      {"decoder_first_pipeline_num_layers", "must be >= 1 (or null), got 0"},
      {"recompute_num_layers", "must be >= 1 (or null), got -1"},
      {"lr_decay_iters", "must be >= 1 (or null), got 0"}};
  for (const auto &[key, message] : below) {
    const std::string value = std::string(message).substr(std::string(message).rfind(' ') + 1);
    const std::string error = load(key, value); // writes path_
    EXPECT_EQ(error, path_.string() + ":1:" + std::to_string(std::strlen(key) + 3) + ": " + key +
                         ": " + message);
  }
  const std::pair<const char *, const char *> numbers[] = {
      {"lr", "must be a finite number > 0, got 0"},
      {"lr", "must be a finite number > 0, got .inf"},
      {"min_lr", "must be a finite number >= 0, got -1e-5"},
      {"weight_decay", "must be a finite number >= 0, got .nan"},
      {"adam_beta1", "must be a finite number in [0, 1), got 1"},
      {"adam_beta2", "must be a finite number in [0, 1), got -0.1"},
      {"adam_eps", "must be a finite number > 0, got 0"},
      {"clip_grad", "must be a finite number >= 0, got -1"}};
  for (const auto &[key, message] : numbers) {
    const std::string value = std::string(message).substr(std::string(message).rfind(' ') + 1);
    const std::string error = load(key, value); // writes path_
    EXPECT_EQ(error, path_.string() + ":1:" + std::to_string(std::strlen(key) + 3) + ": " + key +
                         ": " + message);
  }
}

// The options with a few values name them, with the file:line:col of the
// value (of the list item for recompute_modules).
TEST_F(YamlTypedValues, ChoicesNameTheKeyTheValueAndTheValidOnes) {
  load("tensor_model_parallel_size", "1"); // every load writes the same path_
  auto at = [&](const char *key) {
    return path_.string() + ":1:" + std::to_string(std::strlen(key) + 3) + ": " + key;
  };
  EXPECT_EQ(load("recompute_granularity", "fulll"),
            at("recompute_granularity") +
                " must be full or selective (or null for no recompute), got 'fulll'");
  EXPECT_EQ(load("recompute_method", "blocks"),
            at("recompute_method") + " must be uniform or block (or null), got 'blocks'");
  EXPECT_EQ(load("cp_comm_type", "ring"),
            at("cp_comm_type") + " 'ring': expected one of Megatron-Core's p2p, all_gather, a2a");
  EXPECT_EQ(load("cp_comm_type", "a2a+p2p"),
            at("cp_comm_type") + " 'a2a+p2p': hierarchical context parallelism is not built in "
                                 "this version of mtc; use p2p, all_gather or a2a");
  EXPECT_EQ(load("moe_token_dispatcher_type", "flex"),
            at("moe_token_dispatcher_type") + " 'flex': not built in this version of mtc; use "
                                              "alltoall or allgather");
  EXPECT_EQ(load("lr_decay_style", "exp"),
            at("lr_decay_style") + " must be cosine, linear or constant, got 'exp'");
  // hf_* are the training front-end's transformers schedules, not Megatron-Core's.
  EXPECT_NE(load("lr_decay_style", "hf_linear"), "");
  EXPECT_EQ(load("recompute_modules", "[core_attn, mlps]"),
            path_.string() + ":1:32: recompute_modules: unknown module 'mlps' (valid: core_attn, "
                             "mlp, layernorm, moe_act, moe)");
  EXPECT_NE(load("recompute_modules", "'core_attn, mlps'").find(":1:20: recompute_modules: "
                                                                "unknown module 'mlps'"),
            std::string::npos);
  for (const auto &[key, value] : std::vector<std::pair<const char *, const char *>>{
           {"recompute_granularity", "selective"}, {"recompute_method", "block"},
           {"cp_comm_type", "all_gather"}, {"moe_token_dispatcher_type", "allgather"},
           {"lr_decay_style", "constant"}, {"recompute_modules", "[moe_act, layernorm]"}})
    EXPECT_EQ(load(key, value), "") << key;
}

// fp16, Megatron-Core's other precision key: false is what mtc does, true
// is refused by name (as the training front-end does).
TEST_F(YamlTypedValues, Fp16TrueIsRefusedByName) {
  for (const std::string &spelling : kFalse)
    EXPECT_EQ(load("fp16", spelling), "") << spelling;
  EXPECT_EQ(load("fp16", "true"),
            path_.string() + ":1:7: fp16: true is not supported: fp16 with loss scaling is not "
                             "implemented; remove the key, or use bf16: true (the CUDA backend "
                             "computes in bf16 with fp32 master weights; mtrun --backend cpu in "
                             "fp32)");
}

TEST_F(YamlTypedValues, NumbersInEverySpelling) {
  const std::pair<const char *, double OptimizerConfig::*> numbers[] = {
      {"lr", &OptimizerConfig::lr},           {"min_lr", &OptimizerConfig::minLr},
      {"weight_decay", &OptimizerConfig::weightDecay},
      {"adam_beta1", &OptimizerConfig::beta1}, {"adam_beta2", &OptimizerConfig::beta2},
      {"adam_eps", &OptimizerConfig::eps},     {"clip_grad", &OptimizerConfig::clipGrad}};
  for (const auto &[key, field] : numbers) {
    for (const char *spelling : {"3e-4", "3E-4", "3.0e-4", "+3e-04", "0.0003", ".0003"}) {
      ASSERT_EQ(load(key, spelling), "") << key << ": " << spelling;
      EXPECT_EQ(opt.*field, 3e-4) << key << ": " << spelling;
    }
    // An integer spelling reads as a number (0 where 1 is out of range).
    const double whole = std::string(key).rfind("adam_beta", 0) == 0 ? 0.0 : 1.0;
    ASSERT_EQ(load(key, whole ? "1" : "0"), "") << key;
    EXPECT_EQ(opt.*field, whole) << key;
    EXPECT_NE(load(key, "fast").find(std::string(key) + ": expected a number, got 'fast'"),
              std::string::npos)
        << key;
    // YAML's infinities and NaN read as numbers, refused by name where read.
    for (const char *spelling : {".inf", "-.Inf", ".NaN"}) {
      const std::string error = load(key, spelling);
      EXPECT_NE(error.find(std::string(key) + ": must be a finite number"), std::string::npos)
          << key << ": " << spelling << ": " << error;
      EXPECT_NE(error.find(std::string("got ") + spelling), std::string::npos) << error;
    }
    // validate() still refuses them from the flags.
    opt = OptimizerConfig();
    opt.*field = std::numeric_limits<double>::infinity();
    Status s = opt.validate();
    ASSERT_FALSE(s) << key;
    EXPECT_NE(s.message().find(std::string(key) + " (--"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("must be a finite number"), std::string::npos) << s.message();
  }
}

TEST_F(YamlTypedValues, StringsQuotedOrNot) {
  for (const char *spelling : {"linear", "'linear'", "\"linear\""}) {
    ASSERT_EQ(load("lr_decay_style", spelling), "") << spelling;
    EXPECT_EQ(opt.decayStyle, "linear");
  }
  EXPECT_NE(load("lr_decay_style", "[linear]").find("expected a string, got a list"),
            std::string::npos);
}

TEST_F(YamlTypedValues, RefusesAKeyGivenTwice) {
  ParallelConfig c;
  Status s = loadParallelConfigYaml(
      write("tensor_model_parallel_size: 2\nsequence_parallel: true\n"
            "tensor_model_parallel_size: 4\n"),
      c, opt);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(":3:1: option 'tensor_model_parallel_size' is given twice "
                             "(first on line 1)"),
            std::string::npos)
      << s.message();
}

TEST_F(YamlTypedValues, RefusesAKeyThatIsNotAName) {
  ParallelConfig c;
  Status s = loadParallelConfigYaml(write("? [a, b]\n: 1\n"), c, opt);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(":1:3: expected an option name, got a list"), std::string::npos)
      << s.message();
}

} // namespace
} // namespace mt
