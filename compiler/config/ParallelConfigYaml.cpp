// The YAML reader of Megatron-Core option names (`mtc compile --config` on a
// Megatron-Core file): each value checked where it is read, so that its
// error names the file:line:col, the key, the value and what is valid.
#include "compiler/config/ParallelConfig.h"

#include "compiler/config/ConfigError.h"
#include "compiler/config/YamlText.h"

#include "runtime/support/Wording.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

namespace mt {
namespace {

using config::fail;
using config::spellingOf;
using config::whereOf;

/// Reads `n` through yaml-cpp's typed conversion, so that a value is read by
/// its type whatever its YAML spelling (True/yes/on, 0x10, 3e-4, .inf) and
/// anything else is refused with its position, the key and what was expected.
template <typename T>
Status readTyped(const std::string &path, const std::string &key, const YAML::Node &n,
                 const char *expected, T &out) {
  try {
    if (n.IsScalar()) {
      out = n.as<T>();
      return Status::ok();
    }
  } catch (const YAML::Exception &) {
  }
  return fail(whereOf(path, n), key, ": expected ", expected, ", got ", spellingOf(n));
}

using Setter =
    std::function<Status(const std::string &path, const std::string &key, const YAML::Node &)>;

/// A setter of one typed option; `nullable` options read null as T{}.
template <typename T> Setter typedSetter(T &out, const char *expected, bool nullable = false) {
  return [&out, expected, nullable](const std::string &path, const std::string &key,
                                    const YAML::Node &n) {
    if (nullable && n.IsNull()) {
      out = T{};
      return Status::ok();
    }
    return readTyped(path, key, n, expected, out);
  };
}

/// An integer >= `min` (null: 0, "not given", where `nullable`).
Setter integer(int64_t &out, int64_t min, bool nullable = false) {
  return [&out, min, nullable](const std::string &path, const std::string &key,
                               const YAML::Node &n) {
    if (Status s = typedSetter(out, nullable ? "an integer or null" : "an integer",
                               nullable)(path, key, n);
        !s || n.IsNull())
      return s;
    if (out < min)
      return fail(whereOf(path, n), key, ": must be >= ", min, nullable ? " (or null)" : "",
                  ", got ", n.Scalar());
    return Status::ok();
  };
}

/// A finite number in [min, max) (or (min, max) where `minExcluded`).
Setter number(double &out, double min, bool minExcluded,
              double max = std::numeric_limits<double>::infinity()) {
  return [&out, min, minExcluded, max](const std::string &path, const std::string &key,
                                       const YAML::Node &n) {
    if (Status s = readTyped(path, key, n, "a number", out); !s)
      return s;
    if (std::isfinite(out) && (minExcluded ? out > min : out >= min) && out < max)
      return Status::ok();
    std::ostringstream range;
    if (std::isinf(max))
      range << (minExcluded ? "> " : ">= ") << min;
    else
      range << "in " << (minExcluded ? "(" : "[") << min << ", " << max << ")";
    return fail(whereOf(path, n), key, ": must be a finite number ", range.str(), ", got ",
                n.Scalar());
  };
}

/// A string that optionValueError checks (one of a few values).
Setter choice(std::string &out, bool nullable = false) {
  return [&out, nullable](const std::string &path, const std::string &key, const YAML::Node &n) {
    const char *expected = nullable ? "a string or null" : "a string";
    if (Status s = typedSetter(out, expected, nullable)(path, key, n); !s)
      return s;
    if (std::string error = optionValueError(key, out); !error.empty())
      return fail(whereOf(path, n), key, error);
    return Status::ok();
  };
}

/// recompute_modules: a list of names, or one comma-separated string
/// (MCoreAdapter's spelling); null: not given. Each name is checked.
Setter moduleList(std::vector<std::string> &out) {
  return [&out](const std::string &path, const std::string &key, const YAML::Node &n) {
    out.clear();
    if (n.IsNull())
      return Status::ok();
    std::vector<std::pair<std::string, YAML::Node>> items;
    if (n.IsSequence()) {
      for (const YAML::Node &item : n) {
        std::string name;
        if (Status s = readTyped(path, key, item, "a module name", name); !s)
          return s;
        items.push_back({name, item});
      }
    } else {
      std::string text;
      if (Status s = readTyped(path, key, n, "a list of module names", text); !s)
        return s;
      for (const std::string &name : splitModuleList(text))
        items.push_back({name, n});
    }
    for (const auto &[name, node] : items) {
      if (std::string error = optionValueError(key, name); !error.empty())
        return fail(whereOf(path, node), key, error);
      out.push_back(name);
    }
    return Status::ok();
  };
}

/// The options this version applies, by Megatron-Core name.
std::map<std::string, Setter> optionSetters(ParallelConfig &config, OptimizerConfig &optimizer) {
  auto flag = [](bool &out) { return typedSetter(out, "true or false"); };
  RecomputeConfig &recompute = config.recompute;
  return {
      {"lr", number(optimizer.lr, 0, true)},
      {"min_lr", number(optimizer.minLr, 0, false)},
      {"lr_warmup_iters", integer(optimizer.warmupSteps, 0)},
      {"lr_decay_iters", integer(optimizer.decaySteps, 1, true)},
      {"lr_decay_style", choice(optimizer.decayStyle)},
      {"weight_decay", number(optimizer.weightDecay, 0, false)},
      {"adam_beta1", number(optimizer.beta1, 0, false, 1)},
      {"adam_beta2", number(optimizer.beta2, 0, false, 1)},
      {"adam_eps", number(optimizer.eps, 0, true)},
      {"clip_grad", number(optimizer.clipGrad, 0, false)},
      {"train_iters", integer(optimizer.trainSteps, 1)},
      {"decoder_first_pipeline_num_layers", integer(config.firstStageLayers, 1, true)},
      {"decoder_last_pipeline_num_layers", integer(config.lastStageLayers, 1, true)},
      {"tensor_model_parallel_size", integer(config.tp, 1)},
      {"pipeline_model_parallel_size", integer(config.pp, 1)},
      {"virtual_pipeline_model_parallel_size", integer(config.vpp, 1, true)},
      {"expert_model_parallel_size", integer(config.ep, 1)},
      {"expert_tensor_parallel_size", integer(config.etp, 1, true)},
      {"context_parallel_size", integer(config.cp, 1)},
      {"data_parallel_size", integer(config.dp, 1)},
      {"world_size", integer(config.worldSize, 1)},
      {"sequence_parallel", flag(config.sequenceParallel)},
      {"cp_comm_type", choice(config.cpCommType)},
      {"moe_token_dispatcher_type", choice(config.moeTokenDispatcherType)},
      {"moe_shared_expert_overlap", flag(config.moeSharedExpertOverlap)},
      {"use_distributed_optimizer", flag(config.distributedOptimizer)},
      {"grad_reduce_in_fp32", flag(config.gradReduceInFp32)},
      {"deterministic_mode", flag(config.deterministicMode)},
      {"overlap_param_gather", flag(config.overlapParamGather)},
      {"calculate_per_token_loss", flag(config.perTokenLoss)},
      {"optimizer_offload", flag(config.optimizerOffload)},
      {"grad_offload", flag(config.gradOffload)},
      {"param_offload", flag(config.paramOffload)},
      {"micro_batch_size", integer(config.microBatch, 1)},
      {"global_batch_size", integer(config.globalBatch, 1)},
      {"seq_length", integer(config.seq, 1)},
      {"recompute_granularity", choice(recompute.granularity, true)},
      {"recompute_method", choice(recompute.method, true)},
      {"recompute_num_layers", integer(recompute.numLayers, 1, true)},
      {"recompute_modules", moduleList(recompute.modules)},
      {"moe_layer_recompute", flag(recompute.moeLayerRecompute)},
  };
}

/// Where a Megatron-LM argument's value goes: for `mtc compile --config`,
/// and in `mtc train`'s YAML ("" where that reader takes the key).
struct MegatronArgument {
  const char *inCompile, *inTrain;
};

const MegatronArgument *findMegatronArgument(const std::string &key) {
  static const MegatronArgument kShape = {
      "the model's shape comes from its Hugging Face config.json, which `mtc import-hf` reads "
      "into the MLIR this command compiles",
      "the model's shape comes from model_name_or_path's config.json"};
  static const MegatronArgument kRouting = {
      "a routing key shapes the model when it is imported: give it to `mtc import-hf "
      "--moe-...`",
      ""};
  static const MegatronArgument kTokens = {
      "the plan reads token ids: tokenize with mt-tokenize (or let `mtc train` prepare a chat "
      "dataset)",
      "mtc train tokenizes with model_name_or_path's tokenizer.json"};
  static const MegatronArgument kMetrics = {
      "`mtrun --metrics FILE` writes every step's metrics as JSON lines",
      "mtc train writes trainer_log.jsonl and training_loss.svg in output_dir"};
  static const MegatronArgument kEvaluation = {
      "mtc has no evaluation loop: a plan is one training step",
      "mtc has no evaluation loop (LLaMA-Factory's eval keys are refused by name)"};
  static const MegatronArgument kEnding = {
      "a plan holds no run control: give it to mtrun (--exit-signal-handler, "
      "--exit-duration-in-mins, --exit-interval)",
      ""};
  static const std::map<std::string, MegatronArgument> arguments = {
      {"seed", {"a plan holds no seed: give it to `mtrun --seed`", ""}},
      {"log_interval", {"a plan holds no logging: give it to `mtrun --log-interval`",
                        "LLaMA-Factory's name is logging_steps"}},
      {"save", {"a plan holds no paths: give it to `mtrun --save`",
                "LLaMA-Factory's name is output_dir"}},
      {"save_interval", {"a plan holds no paths: give `mtrun --save DIR --save-every N`",
                         "LLaMA-Factory's name is save_steps"}},
      {"load", {"a plan holds no paths: give `mtrun --load DIR` (Hugging Face weights) or "
                "`mtrun --resume DIR` (a checkpoint of mtrun --save)",
                "LLaMA-Factory reads the weights from model_name_or_path, or a run's "
                "checkpoint from resume_from_checkpoint"}},
      {"data_path", {"a plan holds no paths: give the token file to `mtrun --data`",
                     "LLaMA-Factory names its data with dataset (and dataset_dir)"}},
      {"exit_signal_handler", kEnding}, {"exit_duration_in_mins", kEnding},
      {"exit_interval", kEnding},
      {"tensorboard_dir", kMetrics}, {"wandb_project", kMetrics},
      {"eval_iters", kEvaluation}, {"eval_interval", kEvaluation},
      {"use_flash_attn", {"attention always runs fused (cuDNN's kernels or mtc's, `mtrun "
                          "--attention-backend`): the key would change nothing; remove it",
                          "attention always runs fused (LLaMA-Factory's flash_attn says so too)"}},
      {"tokenizer_type", kTokens}, {"tokenizer_model", kTokens},
      {"vocab_file", kTokens}, {"merge_file", kTokens},
      {"num_layers", kShape}, {"hidden_size", kShape}, {"ffn_hidden_size", kShape},
      {"num_attention_heads", kShape}, {"num_query_groups", kShape},
      {"group_query_attention", kShape}, {"kv_channels", kShape},
      {"max_position_embeddings", kShape}, {"normalization", kShape}, {"norm_epsilon", kShape},
      {"swiglu", kShape}, {"untie_embeddings_and_output_weights", kShape},
      {"position_embedding_type", kShape}, {"rotary_base", kShape}, {"add_qkv_bias", kShape},
      {"qk_layernorm", kShape}, {"disable_bias_linear", kShape}, {"num_experts", kShape},
      {"moe_router_topk", kShape}, {"moe_ffn_hidden_size", kShape},
      {"moe_shared_expert_intermediate_size", kShape},
      {"moe_aux_loss_coeff", kRouting}, {"moe_z_loss_coeff", kRouting},
      {"moe_router_load_balancing_type", kRouting}, {"moe_expert_capacity_factor", kRouting},
      {"moe_token_drop_policy", kRouting}, {"moe_pad_expert_input_to_capacity", kRouting},
  };
  auto it = arguments.find(key);
  return it == arguments.end() ? nullptr : &it->second;
}

} // namespace

std::string megatronArgumentElsewhere(const std::string &key) {
  const MegatronArgument *argument = findMegatronArgument(key);
  return argument ? argument->inCompile : "";
}

std::string megatronArgumentInTrain(const std::string &key) {
  const MegatronArgument *argument = findMegatronArgument(key);
  return argument ? argument->inTrain : "";
}

namespace {

/// The error for a key this reader does not take: where it goes instead, or
/// the closest known name, or the known names.
Status unknownKey(const std::string &path, const YAML::Node &keyNode, const std::string &key) {
  if (std::string reason = megatronArgumentElsewhere(key); !reason.empty())
    return fail(whereOf(path, keyNode), key, ": not an option of the plan: ", reason);
  std::vector<std::string> known = parallelConfigKeys();
  std::string message = whereOf(path, keyNode) + "unknown option '" + key + "'";
  if (std::string best = meantName(key, known); !best.empty())
    return Status::error(message + "; did you mean '" + best + "'?");
  std::string all;
  for (const std::string &name : known)
    all += (all.empty() ? "" : ", ") + name;
  return Status::error(message + " (known: " + all + ")");
}

/// `bf16` and `fp16`: a plan holds no precision; the backend that runs it
/// decides (CUDA: bf16 compute with fp32 master weights, CPU: fp32).
/// bf16: true and fp16: false say what the CUDA backend does anyway; the
/// others cannot be kept by the plan.
Status readPrecision(const std::string &path, const std::string &key, const YAML::Node &value) {
  bool on = false;
  if (Status s = readTyped(path, key, value, "true or false", on); !s)
    return s;
  if (key == "bf16" && !on)
    return fail(whereOf(path, value), "bf16: false ", bf16FalseReason());
  if (key == "fp16" && on)
    return fail(whereOf(path, value), "fp16: true is not supported: fp16 with loss scaling is "
                "not implemented; remove the key, or use bf16: true (the CUDA backend computes "
                "in bf16 with fp32 master weights; mtrun --backend cpu in fp32)");
  return Status::ok();
}

} // namespace

std::string bf16FalseReason() {
  return "cannot be kept by a plan: its precision is the backend's that runs it (mtrun "
         "--backend cpu trains in fp32; the CUDA backend always computes in bf16 with fp32 "
         "master weights). Remove the key, or train with `mtc train`, whose bf16: false picks "
         "the CPU backend";
}

const std::vector<std::string> &parallelConfigKeys() {
  static const std::vector<std::string> keys = [] {
    ParallelConfig config;
    OptimizerConfig optimizer;
    std::vector<std::string> names = {"bf16", "fp16"};
    for (const auto &[name, _] : optionSetters(config, optimizer))
      names.push_back(name);
    names.insert(names.end(), speedSwitchKeys().begin(), speedSwitchKeys().end());
    std::sort(names.begin(), names.end());
    return names;
  }();
  return keys;
}

Status loadParallelConfigYaml(const std::string &path, ParallelConfig &config,
                              OptimizerConfig &optimizer,
                              std::map<std::string, std::string> *where) {
  if (std::string problem = config::yamlFileProblem(path); !problem.empty())
    return fail(path, ": ", problem);
  YAML::Node root;
  try {
    root = config::loadOneDocument(path);
  } catch (const YAML::BadFile &) {
    return fail(path, ": cannot open the file");
  } catch (const YAML::Exception &e) {
    return fail(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg);
  }
  if (root.IsNull())
    return Status::ok();
  if (!root.IsMap())
    return fail(path, ":1:1: expected a mapping of Megatron-Core options");

  const std::map<std::string, Setter> setters = optionSetters(config, optimizer);
  std::map<std::string, int> firstLine; // a key given twice would hide one value
  std::vector<std::string> errors;      // every key's, told together
  for (const auto &entry : root) {
    const YAML::Node &keyNode = entry.first, &value = entry.second;
    if (!keyNode.IsScalar()) {
      errors.push_back(fail(whereOf(path, keyNode), "expected an option name, got ",
                            spellingOf(keyNode)).message());
      continue;
    }
    const std::string key = keyNode.Scalar();
    Status s = Status::ok();
    if (auto [it, added] = firstLine.try_emplace(key, keyNode.Mark().line + 1); !added)
      s = fail(whereOf(path, keyNode), "option '", key, "' is given twice (first on line ",
               it->second, ")");
    else if (auto setter = setters.find(key); setter != setters.end())
      s = setter->second(path, key, value);
    else if (key == "bf16" || key == "fp16")
      s = readPrecision(path, key, value);
    else if (!speedSwitchOffReason(key).empty()) {
      bool on = true;
      s = readTyped(path, key, value, "true or false", on);
      if (s)
        config.setSpeedSwitch(key, on);
    } else
      s = unknownKey(path, keyNode, key);
    if (!s)
      errors.push_back(s.message());
    else if (where)
      (*where)[key] = whereOf(path, value);
  }
  return config::errorList(errors, "error", " in " + path);
}

} // namespace mt
