// Reading Hugging Face config.json: the families, and every kind of bad input.
#include "compiler/hf/HfConfig.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace mt {
namespace {

const char *kLlama = R"({
  "architectures": ["LlamaForCausalLM"],
  "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": true,
  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
})";

std::string errorOf(const std::string &text) {
  auto spec = parseHfConfig(text, "config.json");
  return spec ? "" : spec.message();
}

TEST(HfConfig, ReadsLlama3WithRopeScalingAndTiedEmbeddings) {
  auto spec = parseHfConfig(kLlama, "config.json");
  ASSERT_TRUE(spec) << spec.message();
  EXPECT_EQ(spec->architecture, "LlamaForCausalLM");
  EXPECT_EQ(spec->headDim, 16);
  EXPECT_EQ(spec->numKvHeads, 2);
  EXPECT_TRUE(spec->tiedEmbeddings);
  ASSERT_TRUE(spec->ropeScaling);
  EXPECT_EQ(spec->ropeScaling->factor, 32.0);
  EXPECT_EQ(spec->ropeScaling->originalMaxPosition, 8192);
  EXPECT_FALSE(spec->qkvBias);
  EXPECT_FALSE(spec->moe);
}

TEST(HfConfig, TruncatedJsonNamesLineAndColumn) {
  std::string text = std::string(kLlama).substr(0, 60);
  EXPECT_NE(errorOf(text).find("config.json:3:18: "), std::string::npos) << errorOf(text);
  EXPECT_NE(errorOf(text).find("malformed JSON"), std::string::npos);
}

TEST(HfConfig, MissingKeyIsNamed) {
  std::string text = kLlama;
  text.replace(text.find("\"hidden_size\": 64,"), 18, "");
  // LlamaConfig would take 4096 (Llama 2 7B's): refused, saying so.
  EXPECT_EQ(errorOf(text), "config.json: missing key 'hidden_size': transformers would take "
                           "LlamaConfig's default, 4096, which is one particular model's size "
                           "(the one the class's defaults describe); give the model's own");
}

TEST(HfConfig, MistypedKeyIsNamedWithItsValue) {
  std::string text = kLlama;
  text.replace(text.find("\"num_hidden_layers\": 2"), 22, "\"num_hidden_layers\": \"2\"");
  EXPECT_EQ(errorOf(text), "config.json: key 'num_hidden_layers' must be an integer, got \"2\"");
}

TEST(HfConfig, UnsupportedArchitectureListsSupportedOnes) {
  std::string text = kLlama;
  text.replace(text.find("LlamaForCausalLM"), 16, "GPT2LMHeadModel");
  EXPECT_EQ(errorOf(text),
            "config.json: architecture 'GPT2LMHeadModel' is not supported (supported: "
            "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
            "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, MixtralForCausalLM)");
}

TEST(HfConfig, UnsupportedRopeScalingIsNamed) {
  std::string text = kLlama;
  text.replace(text.find("\"llama3\""), 8, "\"yarn\"");
  EXPECT_EQ(errorOf(text), "config.json: rope_scaling.rope_type \"yarn\" is not supported by "
                           "this version of mtc (supported: default, llama3)");
}

TEST(HfConfig, HeadsNotDivisibleByKvHeads) {
  std::string text = kLlama;
  text.replace(text.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 3");
  EXPECT_EQ(errorOf(text), "config.json: num_attention_heads (4) must be divisible "
                           "by num_key_value_heads (3)");
}

TEST(HfConfig, NotAnObject) {
  EXPECT_EQ(errorOf("[1, 2]"), "config.json:1:1: expected a JSON object");
}

// ---------------------------------------------------------------------------
// Every spelling transformers 4 and 5 write is read (issue 11, fault 3).

/// A config as text, edited as JSON.
std::string edited(const std::string &base, const nlohmann::json &patch) {
  nlohmann::json config = nlohmann::json::parse(base);
  config.merge_patch(patch);
  return config.dump();
}

const char *kQwen3Moe = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
  "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
  "moe_intermediate_size": 32, "num_hidden_layers": 4,
  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
  "num_experts": 6, "num_experts_per_tok": 2, "norm_topk_prob": true,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": false
})";

const char *kMixtral = R"({
  "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
  "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "num_local_experts": 4, "num_experts_per_tok": 2, "rms_norm_eps": 1e-05,
  "sliding_window": null
})";

const char *kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
  "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "max_position_embeddings": 128
})";

TEST(HfConfigEverySpellingRead, TransformersFiveRopeParameters) {
  // LlamaConfig.save_pretrained() of transformers 5: rope_theta and the llama3
  // scaling only inside rope_parameters.
  nlohmann::json rope = {{"rope_type", "llama3"}, {"rope_theta", 500000.0},
                         {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  std::string v5 = edited(kLlama, {{"rope_theta", nullptr}, {"rope_scaling", nullptr},
                                   {"rope_parameters", rope}});
  auto spec = parseHfConfig(v5, "config.json");
  ASSERT_TRUE(spec) << spec.message();
  EXPECT_EQ(spec->ropeTheta, 500000.0);
  ASSERT_TRUE(spec->ropeScaling);
  EXPECT_EQ(spec->ropeScaling->factor, 8.0);
  EXPECT_EQ(spec->ropeScaling->highFreqFactor, 4.0);
  EXPECT_EQ(spec->ropeScaling->originalMaxPosition, 64);
}

TEST(HfConfigEverySpellingRead, LegacyTypeKeyAndDefaultOriginalMaxPosition) {
  // `type` is the old name of `rope_type`; transformers 5 takes the llama3
  // original_max_position_embeddings from max_position_embeddings when absent.
  std::string text = edited(kLlama, {{"max_position_embeddings", 4096},
                                     {"rope_scaling", {{"rope_type", nullptr},
                                                       {"type", "llama3"},
                                                       {"original_max_position_embeddings",
                                                        nullptr}}}});
  auto spec = parseHfConfig(text, "config.json");
  ASSERT_TRUE(spec) << spec.message();
  ASSERT_TRUE(spec->ropeScaling);
  EXPECT_EQ(spec->ropeScaling->originalMaxPosition, 4096);
}

TEST(HfConfigEverySpellingRead, TransformersFiveQwen3MoeExpertCount) {
  // Qwen3MoeConfig of transformers 5 saves num_experts as num_local_experts.
  auto spec = parseHfConfig(edited(kQwen3Moe, {{"num_experts", nullptr},
                                              {"num_local_experts", 6}}),
                            "config.json");
  ASSERT_TRUE(spec) << spec.message();
  ASSERT_TRUE(spec->moe);
  EXPECT_EQ(spec->moe->numExperts, 6);
}

TEST(HfConfigEverySpellingRead, SpellingsThatDisagreeAreRefused) {
  EXPECT_EQ(errorOf(edited(kLlama, {{"rope_parameters", {{"rope_theta", 10000.0}}}})),
            "config.json: rope_theta (500000.0) and rope_parameters.rope_theta (10000.0) "
            "disagree: transformers 4 and 5 read different ones; keep one");
  EXPECT_EQ(errorOf(edited(kLlama, {{"torch_dtype", "float32"}, {"dtype", "bfloat16"}})),
            "config.json: dtype (\"bfloat16\") and torch_dtype (\"float32\") disagree: "
            "transformers 4 and 5 read different ones; keep one");
  EXPECT_EQ(errorOf(edited(kMixtral, {{"num_experts", 3}})),
            "config.json: num_local_experts (4) and num_experts (3) disagree: "
            "transformers 4 and 5 read different ones; keep one");
  // The same value twice is fine.
  EXPECT_EQ(errorOf(edited(kLlama, {{"rope_parameters", {{"rope_theta", 500000}}},
                                    {"torch_dtype", "bfloat16"}, {"dtype", "bfloat16"}})),
            "");
}

TEST(HfConfigEverySpellingRead, ArchitectureDefaultsAreTransformers) {
  // Qwen3Config's head_dim defaults to 128, not hidden_size / heads; Mixtral's
  // rope_theta to 1e6 (MixtralConfig.default_theta).
  std::string qwen3 = edited(kLlama, {{"architectures", {"Qwen3ForCausalLM"}},
                                      {"rope_scaling", nullptr}, {"num_key_value_heads", 2}});
  auto q = parseHfConfig(qwen3, "config.json");
  ASSERT_TRUE(q) << q.message();
  EXPECT_EQ(q->headDim, 128);
  auto m = parseHfConfig(kMixtral, "config.json");
  ASSERT_TRUE(m) << m.message();
  EXPECT_EQ(m->ropeTheta, 1e6);
  EXPECT_EQ(m->maxPositionEmbeddings, 131072);
  // Llama alone lets num_key_value_heads default to num_attention_heads; the
  // others take a fixed number, refused where it cannot fit the heads.
  EXPECT_EQ(errorOf(edited(kMixtral, {{"num_key_value_heads", nullptr}})),
            "config.json: missing key 'num_key_value_heads': transformers would take "
            "MixtralConfig's default, 8, which does not divide num_attention_heads (4); give "
            "the model's own");
}

TEST(HfConfigUnhonourableValueRefused, EachIsNamedWithWhatIsValid) {
  EXPECT_EQ(errorOf(edited(kLlama, {{"hidden_act", "gelu"}})),
            "config.json: hidden_act \"gelu\" is not supported by this version of mtc "
            "(supported: silu, swish)");
  EXPECT_EQ(errorOf(edited(kLlama, {{"attention_dropout", 0.1}})),
            "config.json: attention_dropout 0.1 is not supported by this version of mtc "
            "(only 0: mtc trains without dropout)");
  EXPECT_EQ(errorOf(edited(kLlama, {{"rope_scaling", nullptr},
                                    {"rope_parameters", {{"rope_type", "yarn"}}}})),
            "config.json: rope_parameters.rope_type \"yarn\" is not supported by this "
            "version of mtc (supported: default, llama3)");
  EXPECT_EQ(errorOf(edited(kLlama, {{"partial_rotary_factor", 0.5}})),
            "config.json: partial_rotary_factor 0.5 is not supported by this version of "
            "mtc (only 1: rotary embedding over the whole head)");
  EXPECT_EQ(errorOf(edited(kQwen3Moe, {{"mlp_bias", true}})),
            "config.json: mlp_bias true is not supported for Qwen3MoeForCausalLM "
            "(transformers' model has no such bias and ignores the key; only false)");
  EXPECT_EQ(errorOf(edited(kMixtral, {{"attention_bias", true}})),
            "config.json: attention_bias true is not supported for MixtralForCausalLM "
            "(transformers' model has no such bias and ignores the key; only false)");
  EXPECT_EQ(errorOf(edited(kMixtral, {{"router_jitter_noise", 0.01}})),
            "config.json: router_jitter_noise 0.01 is not supported by this version of "
            "mtc (only 0)");
  EXPECT_EQ(errorOf(edited(kLlama, {{"dtype", "float8_e4m3fn"}})),
            "config.json: dtype \"float8_e4m3fn\" is not supported by this version of mtc "
            "(supported: float32, bfloat16, float16)");
}

// ---------------------------------------------------------------------------
// A config without `architectures` (issue 11, fault 4).

TEST(HfConfigModelTypeWithoutArchitectures, ModelTypeNamesTheModel) {
  // Qwen3Config(...).save_pretrained() writes model_type and no architectures.
  std::string text = edited(kQwen3Moe, {{"architectures", nullptr}});
  auto spec = parseHfConfig(text, "config.json");
  ASSERT_TRUE(spec) << spec.message();
  EXPECT_EQ(spec->architecture, "Qwen3MoeForCausalLM");
  EXPECT_EQ(errorOf(edited(kQwen3Moe, {{"architectures", nullptr}, {"model_type", "gpt2"}})),
            "config.json: model_type 'gpt2' is not supported (supported: llama, qwen2, "
            "qwen3, qwen2_moe, qwen3_moe, mixtral)");
  EXPECT_EQ(errorOf(edited(kQwen3Moe, {{"architectures", nullptr}, {"model_type", nullptr}})),
            "config.json: neither 'architectures' nor 'model_type' names the model "
            "(supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
            "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, MixtralForCausalLM; or model_type llama, "
            "qwen2, qwen3, qwen2_moe, qwen3_moe, mixtral)");
  EXPECT_EQ(errorOf(edited(kQwen3Moe, {{"model_type", "qwen3"}})),
            "config.json: architectures 'Qwen3MoeForCausalLM' and model_type 'qwen3' name "
            "different models (model_type 'qwen3' is Qwen3ForCausalLM)");
}

// ---------------------------------------------------------------------------
// Sliding-window attention is refused where it would take effect, accepted
// where transformers' mask is the plain causal one (issue 11, fault 5).

std::string windowError(const std::string &text, int64_t seq) {
  auto spec = parseHfConfig(text, "config.json");
  if (!spec)
    return spec.message();
  Status s = checkSequenceLength(*spec, seq, "config.json");
  return s ? "" : s.message();
}

TEST(HfConfigSlidingWindowNotDropped, MixtralWindowSmallerThanSeq) {
  std::string text = edited(kMixtral, {{"sliding_window", 8}});
  EXPECT_EQ(windowError(text, 32),
            "config.json: sliding_window 8 (every layer) takes effect at sequence length "
            "32 (--seq): a query would see only the last 8 positions. Sliding-window "
            "attention is not supported by this version of mtc yet; a window of at least "
            "the sequence length has no effect and is accepted");
  // A window as long as the sequence masks nothing: transformers' mask keeps
  // key j for query i when j > i - window (masking_utils.sliding_window_overlay).
  EXPECT_EQ(windowError(text, 8), "");
  EXPECT_EQ(windowError(kMixtral, 32), ""); // sliding_window: null
}

TEST(HfConfigSlidingWindowNotDropped, Qwen2LayersFromMaxWindowLayers) {
  std::string text = edited(kQwen2, {{"use_sliding_window", true}, {"sliding_window", 8},
                                     {"max_window_layers", 2}});
  EXPECT_EQ(windowError(text, 32),
            "config.json: sliding_window 8 with use_sliding_window true (layers 2-3, "
            "from max_window_layers 2) takes effect at sequence length 32 (--seq): a "
            "query would see only the last 8 positions. Sliding-window attention is not "
            "supported by this version of mtc yet; a window of at least the sequence "
            "length has no effect and is accepted");
  // No layer at or above max_window_layers, use_sliding_window false, or a
  // long window: the mask is the causal one.
  EXPECT_EQ(windowError(edited(text, {{"max_window_layers", 4}}), 32), "");
  EXPECT_EQ(windowError(edited(text, {{"use_sliding_window", false}}), 32), "");
  EXPECT_EQ(windowError(edited(text, {{"sliding_window", 32}}), 32), "");
}

TEST(HfConfigSlidingWindowNotDropped, Qwen3LayerTypesOfTransformersFive) {
  std::string text = edited(kQwen2, {{"architectures", {"Qwen3ForCausalLM"}},
                                     {"model_type", "qwen3"}, {"head_dim", 16},
                                     {"use_sliding_window", true}, {"sliding_window", 8},
                                     {"layer_types", {"full_attention", "sliding_attention",
                                                      "full_attention", "sliding_attention"}}});
  EXPECT_NE(windowError(text, 32).find("sliding_window 8 with use_sliding_window true "
                                       "(layers 1, 3, from layer_types)"),
            std::string::npos)
      << windowError(text, 32);
  // transformers refuses a sliding layer without a window (create_sliding_window_causal_mask).
  EXPECT_EQ(windowError(edited(text, {{"use_sliding_window", false}}), 32),
            "config.json: layer_types marks layer 1 'sliding_attention' but no window is "
            "set (use_sliding_window false or sliding_window null)");
  EXPECT_EQ(windowError(edited(text, {{"layer_types", {"full_attention"}}}), 32),
            "config.json: key 'layer_types' must be a list of num_hidden_layers (4) "
            "entries, each \"full_attention\" or \"sliding_attention\", got "
            "[\"full_attention\"]");
}

TEST(HfConfigSlidingWindowNotDropped, Qwen3MoeWindowsEveryLayer) {
  // Qwen3-MoE applies the window on every layer and never reads max_window_layers.
  std::string text = edited(kQwen3Moe, {{"use_sliding_window", true}, {"sliding_window", 8},
                                        {"max_window_layers", 28}});
  EXPECT_NE(windowError(text, 32).find("sliding_window 8 with use_sliding_window true "
                                       "(every layer)"),
            std::string::npos)
      << windowError(text, 32);
}

// ---------------------------------------------------------------------------
// A sequence longer than max_position_embeddings (issue 20, section 8).

TEST(HfConfigSequenceBeyondMaxPositions, IsRefusedNamingBoth) {
  std::string text = edited(kLlama, {{"max_position_embeddings", 256}});
  auto spec = parseHfConfig(text, "config.json");
  ASSERT_TRUE(spec) << spec.message();
  Status s = checkSequenceLength(*spec, 2048, "config.json");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(),
            "config.json: the sequence length 2048 (--seq) exceeds max_position_embeddings "
            "256: the model has no trained positions beyond 256 (Megatron-LM refuses the "
            "same): give --seq 256 or less, or, to train at a longer context, raise "
            "max_position_embeddings in the config");
  EXPECT_TRUE(checkSequenceLength(*spec, 256, "config.json"));
}

} // namespace
} // namespace mt

// ---------------------------------------------------------------------------
// Qwen2-MoE: the shared expert, q/k/v biases (transformers 5's qkv_bias),
// norm_topk_prob false by default.

namespace mt {
namespace {

const char *kQwen2Moe = R"({
  "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
  "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
  "moe_intermediate_size": 32, "shared_expert_intermediate_size": 96,
  "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
  "num_experts": 6, "num_experts_per_tok": 2, "decoder_sparse_step": 2,
  "mlp_only_layers": [3], "rms_norm_eps": 1e-06
})";

TEST(HfConfigQwen2Moe, SharedExpertBiasesAndSparseLayers) {
  auto spec = parseHfConfig(kQwen2Moe, "config.json");
  ASSERT_TRUE(spec) << spec.message();
  ASSERT_TRUE(spec->moe);
  EXPECT_EQ(spec->moe->sharedExpertFfn, 96);
  EXPECT_EQ(spec->moe->expertFfn, 32);
  EXPECT_FALSE(spec->moe->normTopkProb);
  EXPECT_TRUE(spec->qkvBias);
  EXPECT_FALSE(spec->outputBias);
  EXPECT_FALSE(spec->qkNorm);
  EXPECT_EQ(spec->headDim, 16);
  EXPECT_EQ(spec->ropeTheta, 1e4);
  // decoder_sparse_step 2: layers 1 and 3; mlp_only_layers removes 3.
  EXPECT_EQ(spec->moe->sparseLayers, (std::vector<bool>{false, true, false, false}));
  auto noBias = parseHfConfig(edited(kQwen2Moe, {{"qkv_bias", false}}), "config.json");
  ASSERT_TRUE(noBias) << noBias.message();
  EXPECT_FALSE(noBias->qkvBias);
}

TEST(HfConfigQwen2Moe, MissingOrIgnoredKeysAreNamed) {
  // Left out: Qwen2MoeConfig's default, as transformers takes it, with a note.
  auto shared = parseHfConfig(edited(kQwen2Moe, {{"shared_expert_intermediate_size", nullptr}}),
                              "config.json");
  ASSERT_TRUE(shared) << shared.message();
  EXPECT_EQ(shared->moe->sharedExpertFfn, 5632);
  EXPECT_EQ(shared->notes, std::vector<std::string>{
                               "shared_expert_intermediate_size is not given: 5632, "
                               "Qwen2MoeConfig's default, as transformers takes it (give "
                               "shared_expert_intermediate_size to set another)"});
  EXPECT_EQ(errorOf(edited(kQwen2Moe, {{"attention_bias", true}})),
            "config.json: attention_bias true is not supported for Qwen2MoeForCausalLM "
            "(transformers' model has no such bias and ignores the key; only false)");
  std::string windowed = edited(kQwen2Moe, {{"use_sliding_window", true}, {"sliding_window", 8}});
  auto spec = parseHfConfig(windowed, "config.json");
  ASSERT_TRUE(spec) << spec.message();
  Status s = checkSequenceLength(*spec, 32, "config.json");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("sliding_window 8 with use_sliding_window true (on layers "
                             "transformers 4 and 5 choose differently)"),
            std::string::npos)
      << s.message();
}

// ---------------------------------------------------------------------------
// A key written as null: taken as transformers takes it, or refused by key.

/// `base` with the key at `pointer` (a JSON pointer, "/rope_scaling/factor")
/// set to null.
std::string withNull(const std::string &base, const std::string &pointer) {
  nlohmann::json config = nlohmann::json::parse(base);
  config[nlohmann::json::json_pointer(pointer)] = nullptr;
  return config.dump();
}

const std::string kQwen3 = edited(kLlama, {{"architectures", {"Qwen3ForCausalLM"}},
                                           {"rope_scaling", nullptr}});

TEST(HfConfigNull, AcceptedWhereTransformersResolvesTheNone) {
  // LlamaConfig: head_dim None is hidden / heads, num_key_value_heads None heads.
  auto llama = parseHfConfig(withNull(withNull(withNull(kLlama, "/head_dim"),
                                               "/num_key_value_heads"),
                                      "/rope_scaling"),
                             "config.json");
  ASSERT_TRUE(llama) << llama.message();
  EXPECT_EQ(llama->headDim, 16);
  EXPECT_EQ(llama->numKvHeads, 4);
  EXPECT_FALSE(llama->ropeScaling);
  EXPECT_TRUE(llama->notes.empty());
  // Qwen2Config: num_key_value_heads None is heads; sliding_window, layer_types,
  // rope_parameters, pad_token_id and dtype None are "none".
  std::string qwen2 = kQwen2;
  for (const char *key : {"/num_key_value_heads", "/sliding_window", "/layer_types",
                          "/rope_parameters", "/pad_token_id", "/torch_dtype"})
    qwen2 = withNull(qwen2, key);
  auto q = parseHfConfig(edited(qwen2, {{"use_sliding_window", true}}), "config.json");
  ASSERT_TRUE(q) << q.message();
  EXPECT_EQ(q->numKvHeads, 4);
  EXPECT_FALSE(q->slidingWindow);
  EXPECT_FALSE(q->padTokenId);
  // MixtralAttention: head_dim None is hidden / heads.
  auto mixtral = parseHfConfig(withNull(kMixtral, "/head_dim"), "config.json");
  ASSERT_TRUE(mixtral) << mixtral.message();
  EXPECT_EQ(mixtral->headDim, 16);
  // Qwen3MoeConfig: mlp_only_layers None is [].
  auto moe = parseHfConfig(withNull(kQwen3Moe, "/mlp_only_layers"), "config.json");
  ASSERT_TRUE(moe) << moe.message();
  EXPECT_EQ(moe->moe->sparseLayers, std::vector<bool>(4, true));
}

TEST(HfConfigNull, RefusedByKeyWhereTransformersFailsOnTheNone) {
  const std::string given = "taken where the key is left out, is ";
  struct Case {
    std::string config, pointer, error;
  };
  const Case cases[] = {
      {kLlama, "/rope_theta",
       "key 'rope_theta' is null; give a positive number (LlamaConfig's default, " + given +
           "10000.0)"},
      {kMixtral, "/rope_theta",
       "key 'rope_theta' is null; give a positive number (MixtralConfig's default, " + given +
           "1000000.0)"},
      {edited(kLlama, {{"rope_parameters", {{"rope_theta", 500000.0}}}}),
       "/rope_parameters/rope_theta",
       "key 'rope_parameters.rope_theta' is null; give a positive number (LlamaConfig's "
       "default, " + given + "10000.0)"},
      {kLlama, "/rope_scaling/rope_type",
       "key 'rope_scaling.rope_type' is null; give \"default\" or \"llama3\", or leave the key "
       "out (\"default\")"},
      {kLlama, "/rope_scaling/factor", "key 'rope_scaling.factor' is null; give a number"},
      {kLlama, "/partial_rotary_factor",
       "key 'partial_rotary_factor' is null; give 1, or leave the key out"},
      {kLlama, "/hidden_act",
       "key 'hidden_act' is null; give \"silu\" or \"swish\" (LlamaConfig's default, " + given +
           "\"silu\")"},
      {kLlama, "/vocab_size", "key 'vocab_size' is null; give a positive integer"},
      {kLlama, "/rms_norm_eps",
       "key 'rms_norm_eps' is null; give a number (LlamaConfig's default, " + given + "1e-06)"},
      {kLlama, "/tie_word_embeddings",
       "key 'tie_word_embeddings' is null; give true or false (LlamaConfig's default, " +
           given + "false)"},
      {kLlama, "/attention_dropout",
       "key 'attention_dropout' is null; give a number (LlamaConfig's default, " + given +
           "0.0)"},
      {kQwen3, "/head_dim",
       "key 'head_dim' is null; give a positive even integer (Qwen3Config's default, " + given +
           "128)"},
      {kQwen2, "/head_dim",
       "key 'head_dim' is null; give a positive even integer (Qwen2Config's default, " + given +
           "hidden_size / num_attention_heads)"},
      {kQwen2, "/max_window_layers",
       "key 'max_window_layers' is null; give an integer >= 0 (Qwen2Config's default, " +
           given + "28)"},
      {kQwen3Moe, "/num_key_value_heads",
       "key 'num_key_value_heads' is null; give a positive integer that divides "
       "num_attention_heads (4) (Qwen3MoeConfig's default, " + given + "4)"},
      {kQwen3Moe, "/num_experts",
       "key 'num_experts' is null; give a positive integer (Qwen3MoeConfig's default, " +
           given + "128)"},
      {kQwen3Moe, "/decoder_sparse_step",
       "key 'decoder_sparse_step' is null; give a positive integer (Qwen3MoeConfig's "
       "default, " + given + "1)"},
      {kQwen3Moe, "/num_experts_per_tok",
       "key 'num_experts_per_tok' is null; give a positive integer (Qwen3MoeConfig's "
       "default, " + given + "8)"},
      {kQwen2Moe, "/max_window_layers",
       "key 'max_window_layers' is null; give an integer >= 0 (Qwen2MoeConfig's default, " +
           given + "28)"},
      {kMixtral, "/router_jitter_noise",
       "key 'router_jitter_noise' is null; give a number (MixtralConfig's default, " + given +
           "0.0)"},
  };
  for (const Case &c : cases)
    EXPECT_EQ(errorOf(withNull(c.config, c.pointer)), "config.json: " + c.error) << c.pointer;
}

TEST(HfConfigDefaults, LeftOutKeysTakeTheClassDefaultWithANote) {
  // Qwen3-MoE without its expert sizes: Qwen3MoeConfig's, as transformers.
  auto moe = parseHfConfig(edited(kQwen3Moe, {{"num_experts", nullptr},
                                              {"num_experts_per_tok", nullptr},
                                              {"moe_intermediate_size", nullptr},
                                              {"rms_norm_eps", nullptr}}),
                           "config.json");
  ASSERT_TRUE(moe) << moe.message();
  EXPECT_EQ(moe->moe->numExperts, 128);
  EXPECT_EQ(moe->moe->topK, 8);
  EXPECT_EQ(moe->moe->expertFfn, 768);
  EXPECT_EQ(moe->normEps, 1e-6);
  ASSERT_EQ(moe->notes.size(), 4u);
  EXPECT_EQ(moe->notes[0], "rms_norm_eps is not given: 1e-06, Qwen3MoeConfig's default, as "
                           "transformers takes it (give rms_norm_eps to set another)");
  EXPECT_EQ(moe->notes[1], "num_experts is not given: 128, Qwen3MoeConfig's default, as "
                           "transformers takes it (give num_experts to set another)");
  // Qwen2Config's num_key_value_heads (32) where it divides the heads.
  auto qwen2 = parseHfConfig(edited(kQwen2, {{"num_key_value_heads", nullptr},
                                             {"num_attention_heads", 32},
                                             {"hidden_size", 512}}),
                             "config.json");
  ASSERT_TRUE(qwen2) << qwen2.message();
  EXPECT_EQ(qwen2->numKvHeads, 32);
  EXPECT_EQ(qwen2->notes, std::vector<std::string>{
                              "num_key_value_heads is not given: 32, Qwen2Config's default, "
                              "as transformers takes it (give num_key_value_heads to set "
                              "another)"});
  auto mixtral = parseHfConfig(edited(kMixtral, {{"rms_norm_eps", nullptr}}), "config.json");
  ASSERT_TRUE(mixtral) << mixtral.message();
  EXPECT_EQ(mixtral->normEps, 1e-5);
}

TEST(HfConfigDefaults, DefaultsThatCannotBeThisModelsAreRefused) {
  EXPECT_EQ(errorOf(edited(kQwen2, {{"num_key_value_heads", nullptr}})),
            "config.json: missing key 'num_key_value_heads': transformers would take "
            "Qwen2Config's default, 32, which does not divide num_attention_heads (4); give "
            "the model's own");
  EXPECT_EQ(errorOf(edited(kQwen3Moe, {{"num_experts_per_tok", nullptr}})),
            "config.json: missing key 'num_experts_per_tok': transformers would take "
            "Qwen3MoeConfig's default, 8, which exceeds the number of experts (6); give the "
            "model's own");
  EXPECT_EQ(errorOf(edited(kMixtral, {{"num_local_experts", nullptr},
                                      {"num_experts_per_tok", 9}})),
            "config.json: num_experts_per_tok (9) exceeds the number of experts (8, "
            "MixtralConfig's default: num_local_experts is not given)");
}

} // namespace
} // namespace mt
