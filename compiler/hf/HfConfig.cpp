// Reading Hugging Face config.json for the supported decoder-only families,
// in the spellings of transformers 4 and 5. What each key means is taken
// from transformers 5.17 (configuration_*.py, modeling_*.py,
// modeling_rope_utils.py, masking_utils.py) and agrees with 4.5x.
#include "compiler/hf/HfConfig.h"

#include <nlohmann/json.hpp>

#include <algorithm>
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

/// One JSON object of the config: the top level, or a nested one such as
/// `rope_scaling` (then `prefix` is "rope_scaling." and messages name
/// `rope_scaling.factor`). `owner` is the transformers config class whose
/// defaults messages quote ("LlamaConfig"). `has` counts a key holding null
/// as absent; the typed getters refuse a null instead: transformers 5's
/// config classes refuse None for these keys (strict dataclass fields), and
/// transformers 4 kept it and failed, or trained something else, where the
/// model reads the key. The few keys whose None transformers resolves to a
/// value are read with `has`, at their call sites.
class Reader {
public:
  Reader(const json &object, std::string path, std::string prefix = "", std::string owner = "")
      : object_(object), path_(std::move(path)), prefix_(std::move(prefix)),
        owner_(std::move(owner)) {}

  bool has(const std::string &key) const {
    return object_.contains(key) && !object_.at(key).is_null();
  }
  /// Present, null included: Qwen2's absent `sliding_window` is 4096, null is none.
  bool present(const std::string &key) const { return object_.contains(key); }
  bool isNull(const std::string &key) const { return present(key) && at(key).is_null(); }
  const json &at(const std::string &key) const { return object_.at(key); }
  std::string name(const std::string &key) const { return prefix_ + key; }
  const std::string &path() const { return path_; }
  const std::string &owner() const { return owner_; }

  /// Refuses `key` written as null, saying what to give: `valid`, and the
  /// default taken where the key is left out (`fallback`, when there is one).
  void refuseNull(const std::string &key, const std::string &valid,
                  const std::string &fallback = "") const {
    if (isNull(key))
      error("key '" + name(key) + "' is null; give " + valid + defaultText(fallback));
  }
  /// " (LlamaConfig's default, taken where the key is left out, is 2048)".
  std::string defaultText(const std::string &fallback) const {
    if (fallback.empty())
      return "";
    return " (" + (owner_.empty() ? std::string("transformers") : owner_) +
           "'s default, taken where the key is left out, is " + fallback + ")";
  }

  /// A positive integer (sizes, counts).
  int64_t integer(const std::string &key) const {
    refuseNull(key, "a positive integer");
    return integerIn(key, required(key), 1);
  }
  int64_t integer(const std::string &key, int64_t fallback) const {
    refuseNull(key, "a positive integer", std::to_string(fallback));
    return has(key) ? integer(key) : fallback;
  }
  /// An integer >= 0 (layer thresholds).
  int64_t count(const std::string &key, int64_t fallback) const {
    refuseNull(key, "an integer >= 0", std::to_string(fallback));
    return has(key) ? integerIn(key, at(key), 0) : fallback;
  }
  double number(const std::string &key) const {
    refuseNull(key, "a number");
    return numberIn(key, required(key));
  }
  double number(const std::string &key, double fallback) const {
    refuseNull(key, "a number", json(fallback).dump());
    return has(key) ? number(key) : fallback;
  }
  bool boolean(const std::string &key, bool fallback) const {
    refuseNull(key, "true or false", fallback ? "true" : "false");
    if (!has(key))
      return fallback;
    if (!at(key).is_boolean())
      fail(key, "true or false", at(key));
    return at(key).get<bool>();
  }
  std::string string(const std::string &key, const std::string &fallback) const {
    refuseNull(key, "a string", json(fallback).dump());
    if (!has(key))
      return fallback;
    if (!at(key).is_string())
      fail(key, "a string", at(key));
    return at(key).get<std::string>();
  }
  const json &required(const std::string &key) const {
    if (!has(key))
      error("missing key '" + name(key) + "'");
    return at(key);
  }
  int64_t integerIn(const std::string &key, const json &v, int64_t min) const {
    if (!v.is_number_integer())
      fail(key, "an integer", v);
    int64_t x = v.get<int64_t>();
    if (x < min)
      error("key '" + name(key) + "' must be " + (min > 0 ? "positive" : "at least 0") +
            ", got " + std::to_string(x));
    return x;
  }
  double numberIn(const std::string &key, const json &v) const {
    if (!v.is_number())
      fail(key, "a number", v);
    return v.get<double>();
  }
  [[noreturn]] void fail(const std::string &key, const std::string &expected,
                         const json &v) const {
    error("key '" + name(key) + "' must be " + expected + ", got " + v.dump());
  }
  [[noreturn]] void error(const std::string &text) const {
    throw ConfigError{path_ + ": " + text};
  }

private:
  const json &object_;
  std::string path_, prefix_, owner_;
};

/// A value stated under one of several keys, with its key as messages name it.
struct Spelled {
  std::string key;
  const json *value = nullptr;
  explicit operator bool() const { return value; }
};

/// The key as written, null included (`agreed` decides what a null means).
Spelled spelling(const Reader &r, const std::string &key) {
  return {r.name(key), r.present(key) ? &r.at(key) : nullptr};
}

/// The value of a setting that transformers 4 and 5 spell differently (a
/// config may carry both, and the versions prefer different ones): the
/// spellings present must agree. Empty when none is present. A spelling
/// written as null counts as absent where `ifNull` is empty, and is refused,
/// saying to give `ifNull`, otherwise.
Spelled agreed(const std::vector<Spelled> &spellings, const Reader &r,
               const std::string &ifNull = "") {
  Spelled first;
  for (const Spelled &s : spellings) {
    if (!s)
      continue;
    if (s.value->is_null()) {
      if (!ifNull.empty())
        r.error("key '" + s.key + "' is null; give " + ifNull);
      continue;
    }
    if (!first)
      first = s;
    else if (*s.value != *first.value)
      r.error(first.key + " (" + first.value->dump() + ") and " + s.key + " (" +
              s.value->dump() + ") disagree: transformers 4 and 5 read different ones; "
              "keep one");
  }
  return first;
}

double numberOf(const Reader &r, const Spelled &s) {
  if (!s.value->is_number())
    r.error("key '" + s.key + "' must be a number, got " + s.value->dump());
  return s.value->get<double>();
}

int64_t positiveIntegerOf(const Reader &r, const Spelled &s) {
  if (!s.value->is_number_integer() || s.value->get<int64_t>() <= 0)
    r.error("key '" + s.key + "' must be a positive integer, got " + s.value->dump());
  return s.value->get<int64_t>();
}

[[noreturn]] void unsupported(const Reader &r, const std::string &key, const json &value,
                              const std::string &valid) {
  r.error(key + " " + value.dump() + " is not supported by this version of mtc (" + valid +
          ")");
}

std::string joined(const std::vector<std::string> &items) {
  std::string out;
  for (const std::string &s : items)
    out += (out.empty() ? "" : ", ") + s;
  return out;
}

/// "0, 2, 4-7": the indices whose flag is set.
std::string layerList(const std::vector<bool> &layers) {
  std::vector<std::string> runs;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!layers[i])
      continue;
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1])
      ++j;
    runs.push_back(std::to_string(i) + (j > i ? "-" + std::to_string(j) : ""));
    i = j;
  }
  return joined(runs);
}

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

enum class Family { llama, qwen2, qwen3, qwen2Moe, qwen3Moe, mixtral };

/// The sizes a config class defaults to: those of the one model its
/// defaults describe (LlamaConfig's are Llama 2 7B's).
struct ShapeDefaults {
  int64_t vocab, hidden, ffn, layers, heads;
};

/// Each family's names and the defaults of its transformers config class
/// (the same in transformers 4.5x and 5).
struct FamilyInfo {
  Family family;
  const char *architecture, *modelType, *configClass;
  ShapeDefaults shape;
  double ropeTheta;     // rope_theta (MixtralConfig.default_theta is 1e6)
  int64_t maxPositions; // max_position_embeddings
  int64_t headDim;      // head_dim; 0: hidden_size / num_attention_heads
  int64_t kvHeads;      // num_key_value_heads; 0: num_attention_heads (LlamaConfig)
  double normEps;       // rms_norm_eps
  // The MoE classes': num_experts, num_experts_per_tok, moe_intermediate_size,
  // shared_expert_intermediate_size (Qwen2-MoE only).
  int64_t experts, topK, expertFfn, sharedExpertFfn;
};

const FamilyInfo kFamilies[] = {
    {Family::llama, "LlamaForCausalLM", "llama", "LlamaConfig",
     {32000, 4096, 11008, 32, 32}, 1e4, 2048, 0, 0, 1e-6, 0, 0, 0, 0},
    {Family::qwen2, "Qwen2ForCausalLM", "qwen2", "Qwen2Config",
     {151936, 4096, 22016, 32, 32}, 1e4, 32768, 0, 32, 1e-6, 0, 0, 0, 0},
    {Family::qwen3, "Qwen3ForCausalLM", "qwen3", "Qwen3Config",
     {151936, 4096, 22016, 32, 32}, 1e4, 32768, 128, 32, 1e-6, 0, 0, 0, 0},
    {Family::qwen2Moe, "Qwen2MoeForCausalLM", "qwen2_moe", "Qwen2MoeConfig",
     {151936, 2048, 5632, 24, 16}, 1e4, 32768, 0, 16, 1e-6, 60, 4, 1408, 5632},
    {Family::qwen3Moe, "Qwen3MoeForCausalLM", "qwen3_moe", "Qwen3MoeConfig",
     {151936, 2048, 6144, 24, 32}, 1e4, 32768, 0, 4, 1e-6, 128, 8, 768, 0},
    {Family::mixtral, "MixtralForCausalLM", "mixtral", "MixtralConfig",
     {32000, 4096, 14336, 32, 32}, 1e6, 131072, 0, 8, 1e-5, 8, 2, 0, 0},
};

std::vector<std::string> modelTypes() {
  std::vector<std::string> out;
  for (const FamilyInfo &f : kFamilies)
    out.push_back(f.modelType);
  return out;
}

/// `architectures` names the model; transformers' Auto classes go by
/// `model_type`, which a config saved by `XConfig(...).save_pretrained()`
/// carries alone. Where both are given they must name the same model.
const FamilyInfo &readFamily(const Reader &r) {
  const FamilyInfo *byArch = nullptr, *byType = nullptr;
  std::string arch, type;
  if (r.has("architectures")) {
    const json &archs = r.at("architectures");
    if (!archs.is_array() || archs.size() != 1 || !archs[0].is_string())
      r.fail("architectures", "a list with one class name", archs);
    arch = archs[0].get<std::string>();
    for (const FamilyInfo &f : kFamilies)
      if (arch == f.architecture)
        byArch = &f;
    if (!byArch)
      r.error("architecture '" + arch + "' is not supported (supported: " +
              joined(supportedArchitectures()) + ")");
  }
  // AutoConfig looks a null model_type up, and fails, before architectures.
  r.refuseNull("model_type", "one of " + joined(modelTypes()) + ", or leave the key out "
               "(transformers' AutoConfig refuses a null one)");
  if (r.has("model_type")) {
    type = r.string("model_type", "");
    for (const FamilyInfo &f : kFamilies)
      if (type == f.modelType)
        byType = &f;
    if (!byType)
      r.error("model_type '" + type + "' is not supported (supported: " +
              joined(modelTypes()) + ")");
  }
  if (byArch && byType && byArch != byType)
    r.error("architectures '" + arch + "' and model_type '" + type +
            "' name different models (model_type '" + type + "' is " +
            byType->architecture + ")");
  if (!byArch && !byType)
    r.error("neither 'architectures' nor 'model_type' names the model (supported: " +
            joined(supportedArchitectures()) + "; or model_type " + joined(modelTypes()) +
            ")");
  return byArch ? *byArch : *byType;
}

/// rope_theta and the rope scaling. transformers 4 reads the top-level
/// `rope_theta` and `rope_scaling`; 5 keeps everything in `rope_parameters`
/// and still takes `rope_scaling` and `rope_theta` as older spellings of it
/// (modeling_rope_utils.py, convert_rope_params_to_dict and
/// standardize_rope_params). The versions prefer different spellings when
/// they disagree, so every spelling present must agree.
void readRope(const Reader &r, const FamilyInfo &f, HfModelSpec &spec) {
  std::vector<Reader> dicts;
  for (const char *key : {"rope_scaling", "rope_parameters"}) {
    if (!r.has(key))
      continue;
    const json &d = r.at(key);
    if (!d.is_object())
      r.fail(key, "an object or null", d);
    if (d.contains("full_attention") || d.contains("sliding_attention"))
      r.error(std::string(key) + " per layer type is not supported by this version of mtc "
              "(one set of rotary parameters for every layer)");
    dicts.emplace_back(d, r.path(), std::string(key) + ".", r.owner());
  }
  // Every rotary parameter written as null is refused (`ifNull` says what to
  // give): transformers 4 computes the frequencies from the None and fails
  // (rope_theta ** ..., ROPE_INIT_FUNCTIONS[None]); 5 does too, or refuses it.
  auto param = [&](const std::string &key, bool topLevel, const std::string &ifNull,
                   const char *alias = nullptr) {
    std::vector<Spelled> spellings;
    if (topLevel)
      spellings.push_back(spelling(r, key));
    for (const Reader &d : dicts) {
      spellings.push_back(spelling(d, key));
      if (alias) // `type`: the older name of `rope_type`
        spellings.push_back(spelling(d, alias));
    }
    return agreed(spellings, r, ifNull);
  };

  std::string ropeType = "default";
  if (Spelled type = param("rope_type", false,
                           "\"default\" or \"llama3\", or leave the key out (\"default\")",
                           "type")) {
    if (!type.value->is_string())
      r.error("key '" + type.key + "' must be a string, got " + type.value->dump());
    ropeType = type.value->get<std::string>();
    if (ropeType != "default" && ropeType != "llama3")
      unsupported(r, type.key, *type.value, "supported: default, llama3");
  }
  Spelled theta = param("rope_theta", true,
                        "a positive number" + r.defaultText(json(f.ropeTheta).dump()));
  spec.ropeTheta = theta ? numberOf(r, theta) : f.ropeTheta;
  if (spec.ropeTheta <= 0)
    r.error("key '" + theta.key + "' must be positive, got " + theta.value->dump());
  if (Spelled partial = param("partial_rotary_factor", true, "1, or leave the key out");
      partial && numberOf(r, partial) != 1.0)
    unsupported(r, partial.key, *partial.value,
                "only 1: rotary embedding over the whole head");
  if (ropeType != "llama3")
    return;
  auto needed = [&](const std::string &key) {
    Spelled s = param(key, false, "a number");
    if (!s)
      r.error("missing key '" + key + "' of rope_type llama3 (in rope_scaling or "
              "rope_parameters)");
    return numberOf(r, s);
  };
  Llama3RopeScaling scaling;
  scaling.factor = needed("factor");
  scaling.lowFreqFactor = needed("low_freq_factor");
  scaling.highFreqFactor = needed("high_freq_factor");
  // transformers' rope validation warns (only) where factor < 1 or
  // low_freq_factor >= high_freq_factor; the frequencies divide by the
  // factor and by high - low, so a zero or a negative trains garbage
  // positions: refused here.
  if (!(scaling.factor >= 1))
    r.error("key 'factor' of rope_type llama3 must be >= 1, got " +
            param("factor", false, "").value->dump());
  if (!(scaling.lowFreqFactor > 0) || !(scaling.highFreqFactor > scaling.lowFreqFactor))
    r.error("rope_type llama3 needs 0 < low_freq_factor < high_freq_factor, got " +
            param("low_freq_factor", false, "").value->dump() + " and " +
            param("high_freq_factor", false, "").value->dump());
  // Absent: max_position_embeddings (transformers 5, standardize_rope_params).
  Spelled original = param("original_max_position_embeddings", true,
                           "a positive integer, or leave the key out (max_position_embeddings, " +
                               std::to_string(spec.maxPositionEmbeddings) + ")");
  scaling.originalMaxPosition =
      original ? positiveIntegerOf(r, original) : spec.maxPositionEmbeddings;
  spec.ropeScaling = scaling;
}

/// The biases each family's modules read (modeling_*.py): Llama
/// `attention_bias` (q/k/v/o) and `mlp_bias`; Qwen3 and Qwen3-MoE
/// `attention_bias`; Qwen2 has q/k/v biases whatever the config says;
/// Qwen2-MoE q/k/v biases unless `qkv_bias` is false (transformers 5 reads
/// the key, default true; 4 always has them, so a config of 4 never says
/// false); Mixtral none. A key the family ignores may only say false.
void readBiases(const Reader &r, const FamilyInfo &f, HfModelSpec &spec) {
  auto ignoredByFamily = [&](const char *key) {
    if (r.boolean(key, false))
      r.error(std::string(key) + " true is not supported for " + f.architecture +
              " (transformers' model has no such bias and ignores the key; only false)");
    return false;
  };
  bool readsAttentionBias = f.family == Family::llama || f.family == Family::qwen3 ||
                            f.family == Family::qwen3Moe;
  spec.qkvBias = spec.outputBias = readsAttentionBias ? r.boolean("attention_bias", false)
                                                      : ignoredByFamily("attention_bias");
  spec.mlpBias = f.family == Family::llama ? r.boolean("mlp_bias", false)
                                           : ignoredByFamily("mlp_bias");
  if (f.family == Family::qwen2)
    spec.qkvBias = true;
  if (f.family == Family::qwen2Moe)
    spec.qkvBias = r.boolean("qkv_bias", true);
  spec.qkNorm = f.family == Family::qwen3 || f.family == Family::qwen3Moe;
}

/// Settings that change the numbers and that mtc does not implement: only
/// the values under which transformers computes what mtc computes pass.
void refuseUnsupported(const Reader &r, const FamilyInfo &f) {
  // ACT2FN has no None: transformers 4 fails building the MLP, 5 refuses the config.
  r.refuseNull("hidden_act", "\"silu\" or \"swish\"", "\"silu\"");
  std::string act = r.string("hidden_act", "silu");
  if (act != "silu" && act != "swish") // both nn.SiLU in activations.py's ACT2FN
    unsupported(r, "hidden_act", r.at("hidden_act"), "supported: silu, swish");
  if (r.number("attention_dropout", 0) != 0)
    unsupported(r, "attention_dropout", r.at("attention_dropout"),
                "only 0: mtc trains without dropout");
  if (f.family == Family::mixtral && r.number("router_jitter_noise", 0) != 0)
    unsupported(r, "router_jitter_noise", r.at("router_jitter_noise"), "only 0");
  // The checkpoint's dtype: `dtype` since transformers 4.56, `torch_dtype`
  // before (configuration_utils.py keeps `dtype` when both are given).
  if (Spelled dtype = agreed({spelling(r, "dtype"), spelling(r, "torch_dtype")}, r)) {
    if (!dtype.value->is_string())
      r.error("key '" + dtype.key + "' must be a string, got " + dtype.value->dump());
    std::string d = dtype.value->get<std::string>();
    if (d != "float32" && d != "bfloat16" && d != "float16")
      unsupported(r, dtype.key, *dtype.value, "supported: float32, bfloat16, float16");
  }
}

/// The sliding window each family applies, as transformers does it:
/// - Llama: none (LlamaAttention passes no sliding_window).
/// - Mixtral: `sliding_window`, when not null, on every layer
///   (modeling_mixtral.py: MixtralAttention, MixtralModel's mask).
/// - Qwen2, Qwen3: `sliding_window` (absent: 4096) only with
///   `use_sliding_window`, on the layers `layer_types` marks
///   "sliding_attention", by default those >= `max_window_layers` (default
///   28) (configuration_qwen2.py __post_init__, modeling_qwen2.py Qwen2Attention).
/// - Qwen3-MoE: like Qwen2 but on every layer; `max_window_layers` and
///   `layer_types` are not read (modeling_qwen3_moe.py).
/// - Qwen2-MoE: `sliding_window` with `use_sliding_window`, on layers that
///   transformers 4 and 5 choose differently (5: `layer_types`, by default
///   the even layers below `max_window_layers`): taken as every layer, so
///   that a window shorter than the sequence is always refused.
std::optional<SlidingWindow> readSlidingWindow(const Reader &r, const FamilyInfo &f,
                                               int64_t numLayers) {
  if (f.family == Family::llama)
    return std::nullopt;
  std::optional<int64_t> size;
  std::string keys;
  if (f.family == Family::mixtral) {
    if (r.has("sliding_window"))
      size = r.integer("sliding_window");
    keys = "sliding_window " + std::to_string(size.value_or(0));
  } else {
    bool enabled = r.boolean("use_sliding_window", false);
    if (enabled && (r.has("sliding_window") || !r.present("sliding_window")))
      size = r.integer("sliding_window", 4096);
    keys = "sliding_window " + std::to_string(size.value_or(0)) + " with use_sliding_window true";
  }
  // Read by transformers 5 for its layer_types only; a null it refuses.
  if (f.family == Family::qwen2Moe)
    r.count("max_window_layers", 28);
  std::vector<bool> layers(numLayers, size.has_value());
  std::string which = f.family == Family::qwen2Moe
                          ? "on layers transformers 4 and 5 choose differently"
                          : "every layer";
  if (f.family == Family::qwen2 || f.family == Family::qwen3) {
    if (r.has("layer_types")) {
      const json &types = r.at("layer_types");
      auto valid = [](const json &t) {
        return t == "full_attention" || t == "sliding_attention";
      };
      if (!types.is_array() || int64_t(types.size()) != numLayers ||
          !std::all_of(types.begin(), types.end(), valid))
        r.fail("layer_types",
               "a list of num_hidden_layers (" + std::to_string(numLayers) +
                   ") entries, each \"full_attention\" or \"sliding_attention\"",
               types);
      for (int64_t i = 0; i < numLayers; ++i) {
        layers[i] = types[i] == "sliding_attention";
        // transformers refuses it too (masking_utils.create_sliding_window_causal_mask).
        if (layers[i] && !size)
          r.error("layer_types marks layer " + std::to_string(i) +
                  " 'sliding_attention' but no window is set (use_sliding_window false or "
                  "sliding_window null)");
      }
      which = "layers " + layerList(layers) + ", from layer_types";
    } else {
      int64_t first = r.count("max_window_layers", 28);
      for (int64_t i = 0; i < numLayers; ++i)
        layers[i] = size && i >= first;
      which = "layers " + layerList(layers) + ", from max_window_layers " +
              std::to_string(first);
    }
  }
  if (!size || std::none_of(layers.begin(), layers.end(), [](bool b) { return b; }))
    return std::nullopt;
  return SlidingWindow{*size, layers, keys + " (" + which + ")"};
}

/// A key that the family's config class gives a default, which transformers
/// takes where the key is left out: mtc takes it too and says so in a note.
int64_t defaulted(const Reader &r, const std::string &key, int64_t fallback,
                  HfModelSpec &spec) {
  if (!r.present(key))
    spec.notes.push_back(key + " is not given: " + std::to_string(fallback) + ", " +
                         r.owner() + "'s default, as transformers takes it (give " + key +
                         " to set another)");
  return r.integer(key, fallback);
}

/// A default transformers would take for a left-out key but that cannot be
/// this model's: refused, saying what transformers would assume and why.
[[noreturn]] void unusableDefault(const Reader &r, const std::string &key, int64_t fallback,
                                  const std::string &why) {
  r.error("missing key '" + key + "': transformers would take " + r.owner() + "'s default, " +
          std::to_string(fallback) + ", which " + why + "; give the model's own");
}

MoeSpec readMoe(const Reader &r, const FamilyInfo &f, HfModelSpec &spec) {
  MoeSpec moe;
  // MixtralConfig's attribute_map makes num_experts an alias of
  // num_local_experts; Qwen3MoeConfig of transformers 5 saves its
  // num_experts as num_local_experts.
  bool mixtral = f.family == Family::mixtral;
  const char *name = mixtral ? "num_local_experts" : "num_experts";
  const char *alias = mixtral ? "num_experts" : "num_local_experts";
  Spelled experts = agreed({spelling(r, name), spelling(r, alias)}, r,
                           "a positive integer" + r.defaultText(std::to_string(f.experts)));
  moe.numExperts = experts ? positiveIntegerOf(r, experts) : defaulted(r, name, f.experts, spec);
  if (mixtral) {
    moe.expertFfn = spec.ffn;
    moe.normTopkProb = true; // softmax over the chosen logits
    moe.routerName = "block_sparse_moe.gate";
    moe.expertsName = "block_sparse_moe.experts";
    moe.gateProj = "w1", moe.upProj = "w3", moe.downProj = "w2";
    moe.sparseLayers.assign(spec.numLayers, true);
  } else {
    moe.expertFfn = defaulted(r, "moe_intermediate_size", f.expertFfn, spec);
    if (f.family == Family::qwen2Moe) // Qwen2MoeSparseMoeBlock.shared_expert(_gate)
      moe.sharedExpertFfn =
          defaulted(r, "shared_expert_intermediate_size", f.sharedExpertFfn, spec);
    moe.normTopkProb = r.boolean("norm_topk_prob", false);
    moe.routerName = "mlp.gate";
    moe.expertsName = "mlp.experts";
    moe.gateProj = "gate_proj", moe.upProj = "up_proj", moe.downProj = "down_proj";
    int64_t step = r.integer("decoder_sparse_step", 1);
    moe.sparseLayers.resize(spec.numLayers);
    for (int64_t i = 0; i < spec.numLayers; ++i)
      moe.sparseLayers[i] = (i + 1) % step == 0;
    if (r.has("mlp_only_layers")) {
      const json &dense = r.at("mlp_only_layers");
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
  if (!r.present("num_experts_per_tok") && f.topK > moe.numExperts)
    unusableDefault(r, "num_experts_per_tok", f.topK,
                    "exceeds the number of experts (" + std::to_string(moe.numExperts) + ")");
  moe.topK = defaulted(r, "num_experts_per_tok", f.topK, spec);
  moe.auxLossCoeff = r.number("router_aux_loss_coef", 0.001);
  if (!(moe.auxLossCoeff >= 0))
    r.fail("router_aux_loss_coef", "a number >= 0 (the load-balancing loss's weight; 0: none)",
           r.at("router_aux_loss_coef"));
  if (moe.topK > moe.numExperts)
    r.error("num_experts_per_tok (" + std::to_string(moe.topK) +
            ") exceeds the number of experts (" + std::to_string(moe.numExperts) +
            (experts ? "" : ", " + r.owner() + "'s default: " + name + " is not given") + ")");
  return moe;
}

/// The keys behind megatronChoiceNotes.
void readTransformersOnlyKeys(const Reader &r, HfModelSpec &spec) {
  spec.outputRouterLogits = r.boolean("output_router_logits", false);
  if (r.has("pad_token_id") && r.at("pad_token_id").is_number_integer() &&
      r.at("pad_token_id").get<int64_t>() >= 0 &&
      r.at("pad_token_id").get<int64_t>() < spec.vocabSize)
    spec.padTokenId = r.at("pad_token_id").get<int64_t>();
}

/// A size that defines the model's shape. transformers would take its config
/// class's default for a left-out one, but those are the sizes of one
/// particular model (LlamaConfig's, Llama 2 7B's), not a default of this one:
/// refused, saying what transformers would assume.
int64_t shapeKey(const Reader &r, const std::string &key, int64_t fallback) {
  if (!r.present(key))
    unusableDefault(r, key, fallback,
                    "is one particular model's size (the one the class's defaults describe)");
  return r.integer(key);
}

/// num_key_value_heads and head_dim, with what each family makes of a null
/// (configuration_*.py and the attention modules, transformers 4.5x and 5):
/// - num_key_value_heads null: num_attention_heads in LlamaConfig,
///   Qwen2Config and Qwen3Config; refused by 5's MixtralConfig and
///   Qwen3MoeConfig (4's Qwen3MoeConfig kept the None), and kept by
///   Qwen2MoeConfig, whose attention then fails dividing by it.
/// - head_dim null: hidden_size / num_attention_heads in LlamaConfig and
///   MixtralAttention (`getattr(config, "head_dim", None) or ...`); refused by
///   5's Qwen3Config; the Qwen2, Qwen2-MoE and Qwen3-MoE attentions take the
///   None (getattr with a default only for a missing key) and fail.
void readHeads(const Reader &r, const FamilyInfo &f, HfModelSpec &spec) {
  spec.numHeads = shapeKey(r, "num_attention_heads", f.shape.heads);
  const bool kvNullIsHeads = f.family == Family::llama || f.family == Family::qwen2 ||
                             f.family == Family::qwen3;
  std::string divides = "a positive integer that divides num_attention_heads (" +
                        std::to_string(spec.numHeads) + ")";
  if (!kvNullIsHeads)
    r.refuseNull("num_key_value_heads", divides, std::to_string(f.kvHeads));
  if (!r.has("num_key_value_heads") && (f.kvHeads == 0 || r.isNull("num_key_value_heads")))
    spec.numKvHeads = spec.numHeads;
  else if (!r.present("num_key_value_heads") && spec.numHeads % f.kvHeads != 0)
    unusableDefault(r, "num_key_value_heads", f.kvHeads,
                    "does not divide num_attention_heads (" + std::to_string(spec.numHeads) +
                        ")");
  else
    spec.numKvHeads = defaulted(r, "num_key_value_heads", f.kvHeads, spec);
  const bool headDimNullOk = f.family == Family::llama || f.family == Family::mixtral;
  std::string quotient = "hidden_size / num_attention_heads";
  if (!headDimNullOk)
    r.refuseNull("head_dim", "a positive even integer",
                 f.headDim ? std::to_string(f.headDim) : quotient);
  if (f.headDim == 0 && spec.hidden % spec.numHeads != 0 && !r.has("head_dim"))
    r.error("hidden_size (" + std::to_string(spec.hidden) +
            ") is not divisible by num_attention_heads (" + std::to_string(spec.numHeads) +
            ") and no head_dim is given");
  spec.headDim = r.has("head_dim") ? r.integer("head_dim")
                                   : (f.headDim ? f.headDim : spec.hidden / spec.numHeads);
  if (spec.numHeads % spec.numKvHeads != 0)
    r.error("num_attention_heads (" + std::to_string(spec.numHeads) +
            ") must be divisible by num_key_value_heads (" +
            std::to_string(spec.numKvHeads) + ")");
  // Rotary embedding turns pairs of a head's dimensions.
  if (spec.headDim % 2 != 0)
    r.error((r.has("head_dim") ? std::string("key 'head_dim'") : "head_dim (" + quotient + ")") +
            " must be even (rotary position embedding rotates pairs of dimensions), got " +
            std::to_string(spec.headDim));
}

HfModelSpec readSpec(const Reader &r, const FamilyInfo &f) {
  HfModelSpec spec;
  spec.architecture = f.architecture;
  spec.vocabSize = shapeKey(r, "vocab_size", f.shape.vocab);
  spec.hidden = shapeKey(r, "hidden_size", f.shape.hidden);
  spec.ffn = shapeKey(r, "intermediate_size", f.shape.ffn);
  spec.numLayers = shapeKey(r, "num_hidden_layers", f.shape.layers);
  // The graph holds every layer's ops: a count no model has would take the
  // import's memory and time before anything else could refuse it.
  constexpr int64_t kMaxLayers = 4096;
  if (spec.numLayers > kMaxLayers)
    r.error("key 'num_hidden_layers' must be at most " + std::to_string(kMaxLayers) +
            " (the deepest Hugging Face models have a few hundred layers), got " +
            std::to_string(spec.numLayers));
  readHeads(r, f, spec);
  spec.maxPositionEmbeddings = r.integer("max_position_embeddings", f.maxPositions);
  if (!r.present("rms_norm_eps"))
    spec.notes.push_back("rms_norm_eps is not given: " + json(f.normEps).dump() + ", " +
                         r.owner() + "'s default, as transformers takes it (give rms_norm_eps "
                         "to set another)");
  spec.normEps = r.number("rms_norm_eps", f.normEps);
  if (!(spec.normEps > 0) || !std::isfinite(spec.normEps))
    r.error("key 'rms_norm_eps' must be a positive number (RMSNorm's epsilon, e.g. 1e-06), "
            "got " + r.at("rms_norm_eps").dump());
  spec.initStd = r.number("initializer_range", 0.02);
  if (!(spec.initStd > 0) || !std::isfinite(spec.initStd))
    r.error("key 'initializer_range' must be a positive number (the standard deviation of "
            "the weights' normal initialization, e.g. 0.02), got " +
            r.at("initializer_range").dump());
  spec.tiedEmbeddings = r.boolean("tie_word_embeddings", false);
  readRope(r, f, spec);
  readBiases(r, f, spec);
  refuseUnsupported(r, f);
  spec.slidingWindow = readSlidingWindow(r, f, spec.numLayers);
  if (f.family == Family::qwen2Moe || f.family == Family::qwen3Moe ||
      f.family == Family::mixtral)
    spec.moe = readMoe(r, f, spec);
  readTransformersOnlyKeys(r, spec);
  return spec;
}

} // namespace

const std::vector<std::string> &supportedArchitectures() {
  static const std::vector<std::string> archs = [] {
    std::vector<std::string> out;
    for (const FamilyInfo &f : kFamilies)
      out.push_back(f.architecture);
    return out;
  }();
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
    const FamilyInfo &family = readFamily(Reader(root, path));
    HfModelSpec spec = readSpec(Reader(root, path, "", family.configClass), family);
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

Status checkSequenceLength(const HfModelSpec &spec, int64_t seq, const std::string &path,
                           const std::string &option) {
  std::string s = std::to_string(seq);
  if (seq > spec.maxPositionEmbeddings) {
    std::string max = std::to_string(spec.maxPositionEmbeddings);
    return Status::error(path + ": the sequence length " + s +
                         " (" + option + ") exceeds max_position_embeddings " + max +
                         ": the model has no trained positions beyond " + max +
                         " (Megatron-LM refuses the same): give " + option + " " + max +
                         " or less, or, to train at a longer context, "
                         "raise max_position_embeddings in the config");
  }
  // Query i sees key j when i - size < j <= i: at seq <= size every j <= i.
  if (const auto &w = spec.slidingWindow; w && w->size < seq)
    return Status::error(path + ": " + w->keys + " takes effect at sequence length " + s +
                         " (" + option + "): a query would see only the last " +
                         std::to_string(w->size) +
                         " positions. Sliding-window attention is not supported by this "
                         "version of mtc yet; a window of at least the sequence length has "
                         "no effect and is accepted");
  return Status::ok();
}

} // namespace mt
