// Reading Hugging Face config.json for the supported decoder-only families.
#include "compiler/hf/HfConfig.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace mt {
namespace {

using json = nlohmann::json;

/// Thrown inside this file only, turned into a Status at the boundary.
struct ConfigError {
  std::string message;
};

class Reader {
public:
  Reader(const json &root, std::string path) : root_(root), path_(std::move(path)) {}

  bool has(const char *key) const {
    return root_.contains(key) && !root_.at(key).is_null();
  }
  int64_t integer(const char *key) const {
    const json &v = required(key);
    if (!v.is_number_integer())
      fail(key, "an integer", v);
    int64_t x = v.get<int64_t>();
    if (x <= 0)
      throw ConfigError{path_ + ": key '" + key + "' must be positive, got " +
                        std::to_string(x)};
    return x;
  }
  int64_t integer(const char *key, int64_t fallback) const {
    return has(key) ? integer(key) : fallback;
  }
  double number(const char *key) const {
    const json &v = required(key);
    if (!v.is_number())
      fail(key, "a number", v);
    return v.get<double>();
  }
  double number(const char *key, double fallback) const {
    return has(key) ? number(key) : fallback;
  }
  bool boolean(const char *key, bool fallback) const {
    if (!has(key))
      return fallback;
    const json &v = root_.at(key);
    if (!v.is_boolean())
      fail(key, "true or false", v);
    return v.get<bool>();
  }
  const json &required(const char *key) const {
    if (!has(key))
      throw ConfigError{path_ + ": missing key '" + key + "'"};
    return root_.at(key);
  }
  [[noreturn]] void fail(const char *key, const char *expected, const json &v) const {
    throw ConfigError{path_ + ": key '" + key + "' must be " + expected +
                      ", got " + v.dump()};
  }
  const std::string &path() const { return path_; }

private:
  const json &root_;
  std::string path_;
};

std::string lineColumn(const std::string &text, size_t byte) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i + 1 < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return std::to_string(line) + ":" + std::to_string(column);
}

std::optional<Llama3RopeScaling> readRopeScaling(const json &root, const Reader &r) {
  if (!r.has("rope_scaling"))
    return std::nullopt;
  const json &s = root.at("rope_scaling");
  if (!s.is_object())
    r.fail("rope_scaling", "an object or null", s);
  Reader sr(s, r.path() + ": rope_scaling");
  std::string type = s.value("rope_type", s.value("type", std::string()));
  if (type != "llama3")
    throw ConfigError{r.path() + ": rope_scaling type '" + type +
                      "' is not supported (supported: llama3)"};
  Llama3RopeScaling scaling;
  scaling.factor = sr.number("factor");
  scaling.lowFreqFactor = sr.number("low_freq_factor");
  scaling.highFreqFactor = sr.number("high_freq_factor");
  scaling.originalMaxPosition = sr.integer("original_max_position_embeddings");
  return scaling;
}

MoeSpec readMoe(const json &root, const Reader &r, const HfModelSpec &spec) {
  MoeSpec moe;
  if (spec.architecture == "MixtralForCausalLM") {
    moe.numExperts = r.integer("num_local_experts");
    moe.expertFfn = spec.ffn;
    moe.normTopkProb = true; // softmax over the chosen logits
    moe.routerName = "block_sparse_moe.gate";
    moe.expertsName = "block_sparse_moe.experts";
    moe.gateProj = "w1", moe.upProj = "w3", moe.downProj = "w2";
    moe.sparseLayers.assign(spec.numLayers, true);
  } else {
    moe.numExperts = r.integer("num_experts");
    moe.expertFfn = r.integer("moe_intermediate_size");
    moe.normTopkProb = r.boolean("norm_topk_prob", false);
    moe.routerName = "mlp.gate";
    moe.expertsName = "mlp.experts";
    moe.gateProj = "gate_proj", moe.upProj = "up_proj", moe.downProj = "down_proj";
    int64_t step = r.integer("decoder_sparse_step", 1);
    moe.sparseLayers.resize(spec.numLayers);
    for (int64_t i = 0; i < spec.numLayers; ++i)
      moe.sparseLayers[i] = (i + 1) % step == 0;
    if (r.has("mlp_only_layers")) {
      const json &dense = root.at("mlp_only_layers");
      if (!dense.is_array())
        r.fail("mlp_only_layers", "a list of layer indices", dense);
      for (const json &i : dense) {
        if (!i.is_number_integer() || i.get<int64_t>() < 0 ||
            i.get<int64_t>() >= spec.numLayers)
          r.fail("mlp_only_layers", "a list of layer indices below num_hidden_layers", dense);
        moe.sparseLayers[i.get<int64_t>()] = false;
      }
    }
  }
  moe.topK = r.integer("num_experts_per_tok");
  moe.auxLossCoeff = r.number("router_aux_loss_coef", 0.001);
  if (moe.topK > moe.numExperts)
    throw ConfigError{r.path() + ": num_experts_per_tok (" +
                      std::to_string(moe.topK) + ") exceeds the number of experts (" +
                      std::to_string(moe.numExperts) + ")"};
  return moe;
}

HfModelSpec readSpec(const json &root, const Reader &r) {
  HfModelSpec spec;
  const json &archs = r.required("architectures");
  if (!archs.is_array() || archs.size() != 1 || !archs[0].is_string())
    r.fail("architectures", "a list with one class name", archs);
  spec.architecture = archs[0].get<std::string>();
  const auto &supported = supportedArchitectures();
  if (std::find(supported.begin(), supported.end(), spec.architecture) ==
      supported.end()) {
    std::string list;
    for (const auto &a : supported)
      list += (list.empty() ? "" : ", ") + a;
    throw ConfigError{r.path() + ": architecture '" + spec.architecture +
                      "' is not supported (supported: " + list + ")"};
  }
  spec.vocabSize = r.integer("vocab_size");
  spec.hidden = r.integer("hidden_size");
  spec.ffn = r.integer("intermediate_size");
  spec.numLayers = r.integer("num_hidden_layers");
  spec.numHeads = r.integer("num_attention_heads");
  spec.numKvHeads = r.integer("num_key_value_heads", spec.numHeads);
  if (spec.hidden % spec.numHeads != 0 && !r.has("head_dim"))
    throw ConfigError{r.path() + ": hidden_size (" + std::to_string(spec.hidden) +
                      ") is not divisible by num_attention_heads (" +
                      std::to_string(spec.numHeads) + ") and no head_dim is given"};
  spec.headDim = r.integer("head_dim", spec.hidden / spec.numHeads);
  if (spec.numHeads % spec.numKvHeads != 0)
    throw ConfigError{r.path() + ": num_attention_heads (" +
                      std::to_string(spec.numHeads) +
                      ") must be divisible by num_key_value_heads (" +
                      std::to_string(spec.numKvHeads) + ")"};
  spec.normEps = r.number("rms_norm_eps");
  spec.ropeTheta = r.number("rope_theta", 10000.0);
  spec.initStd = r.number("initializer_range", 0.02);
  spec.tiedEmbeddings = r.boolean("tie_word_embeddings", false);
  spec.ropeScaling = readRopeScaling(root, r);
  if (r.boolean("use_sliding_window", false))
    throw ConfigError{r.path() + ": use_sliding_window: true is not supported"};

  const std::string &arch = spec.architecture;
  if (arch == "LlamaForCausalLM") {
    spec.qkvBias = spec.outputBias = r.boolean("attention_bias", false);
    spec.mlpBias = r.boolean("mlp_bias", false);
  } else if (arch == "Qwen2ForCausalLM") {
    spec.qkvBias = true;
  } else {
    spec.qkNorm = true; // Qwen3, Qwen3-MoE
    spec.qkvBias = spec.outputBias = r.boolean("attention_bias", false);
  }
  if (arch == "Qwen3MoeForCausalLM" || arch == "MixtralForCausalLM") {
    if (arch == "MixtralForCausalLM")
      spec.qkNorm = false;
    spec.moe = readMoe(root, r, spec);
  }
  return spec;
}

} // namespace

const std::vector<std::string> &supportedArchitectures() {
  static const std::vector<std::string> archs = {
      "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
      "Qwen3MoeForCausalLM", "MixtralForCausalLM"};
  return archs;
}

Expected<HfModelSpec> parseHfConfig(const std::string &text,
                                    const std::string &path) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error &e) {
    std::string what = e.what();
    // Keep the library's description, drop its "[json.exception...] " prefix.
    if (auto colon = what.find(": "); colon != std::string::npos)
      what = what.substr(what.find(": ") + 2);
    return Status::error(path + ":" + lineColumn(text, e.byte) +
                         ": malformed JSON: " + what);
  }
  if (!root.is_object())
    return Status::error(path + ":1:1: expected a JSON object");
  try {
    HfModelSpec spec = readSpec(root, Reader(root, path));
    spec.json = root.dump();
    return spec;
  } catch (const ConfigError &e) {
    return Status::error(e.message);
  }
}

Expected<HfModelSpec> readHfConfig(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(path + ": cannot open the file");
  std::stringstream text;
  text << in.rdbuf();
  return parseHfConfig(text.str(), path);
}

} // namespace mt
