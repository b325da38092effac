// Reading Hugging Face config.json: the families, and every kind of bad input.
#include "compiler/hf/HfConfig.h"

#include <gtest/gtest.h>

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
  EXPECT_EQ(errorOf(text), "config.json: missing key 'hidden_size'");
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
            "Qwen3MoeForCausalLM, MixtralForCausalLM)");
}

TEST(HfConfig, UnsupportedRopeScalingIsNamed) {
  std::string text = kLlama;
  text.replace(text.find("\"llama3\""), 8, "\"yarn\"");
  EXPECT_EQ(errorOf(text),
            "config.json: rope_scaling type 'yarn' is not supported (supported: llama3)");
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

} // namespace
} // namespace mt
