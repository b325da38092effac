// The choice between Megatron-Core's option file and the LLaMA-Factory YAML
// of the training front-end, from the keys each reader takes, and the error
// for a file that mixes the two.
#include "compiler/config/ConfigVocabulary.h"

#include "compiler/config/ParallelConfig.h"
#include "compiler/config/TrainKeys.h"

#include "compiler/config/YamlText.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <vector>

namespace mt {
namespace {

/// A key that only one reader takes, and where it is.
struct Placed {
  std::string key;
  int line, column;
};

/// What a LLaMA-Factory key is called in a Megatron-Core option file, or
/// why there is no such key.
std::string megatronNameOf(const std::string &key) {
  static const char *kRouting = "a routing key shapes the model when it is imported: give it to "
                                "`mtc import-hf --moe-...` (or to `mtc train`)";
  static const std::map<std::string, std::string> names = {
      {"learning_rate", "Megatron-Core's name is lr"},
      {"max_steps", "Megatron-Core's name is train_iters"},
      {"warmup_steps", "Megatron-Core's name is lr_warmup_iters"},
      {"warmup_ratio", "Megatron-Core has no ratio: give lr_warmup_iters (steps)"},
      {"lr_scheduler_type", "Megatron-Core's name is lr_decay_style (cosine, linear or constant)"},
      {"lr_scheduler_kwargs", "Megatron-Core's name of its min_lr is min_lr"},
      {"adam_epsilon", "Megatron-Core's name is adam_eps"},
      {"max_grad_norm", "Megatron-Core's name is clip_grad"},
      {"cutoff_len", "Megatron-Core's name is seq_length"},
      {"per_device_train_batch_size", "Megatron-Core's name is micro_batch_size"},
      {"gradient_accumulation_steps", "Megatron-Core has none: give global_batch_size "
                                      "(micro_batch_size x accumulation x dp)"},
      {"seed", "a plan holds no seed: give it to mtrun --seed"},
      {"infer_dtype", "a plan holds no export dtype: give it to mtrun --export-dtype"},
      {"megatron", "a Megatron-Core option file holds these keys at the top level"},
      {"moe_aux_loss_coeff", kRouting},
      {"moe_z_loss_coeff", kRouting},
      {"moe_router_load_balancing_type", kRouting},
      {"moe_expert_capacity_factor", kRouting},
      {"moe_token_drop_policy", kRouting},
      {"moe_pad_expert_input_to_capacity", kRouting},
      {"override_transformer_config", "a Megatron-Core option file holds these keys at the top "
                                      "level"},
  };
  auto it = names.find(key);
  return it != names.end() ? it->second
                           : "a Megatron-Core option file has no such key (it belongs to "
                             "`mtc train`'s LLaMA-Factory YAML)";
}

} // namespace

std::string llamaFactoryNameOf(const std::string &key) {
  static const std::map<std::string, std::string> names = {
      {"lr", "LLaMA-Factory's name is learning_rate"},
      {"train_iters", "LLaMA-Factory's name is max_steps"},
      {"lr_warmup_iters", "LLaMA-Factory's name is warmup_steps"},
      {"lr_decay_style", "LLaMA-Factory's name is lr_scheduler_type (transformers' schedules)"},
      {"min_lr", "LLaMA-Factory's name is lr_scheduler_kwargs: {min_lr: ...}, with "
                 "lr_scheduler_type: cosine_with_min_lr"},
      {"lr_decay_iters", "LLaMA-Factory has none: transformers' schedules decay over max_steps"},
      {"adam_eps", "LLaMA-Factory's name is adam_epsilon"},
      {"clip_grad", "LLaMA-Factory's name is max_grad_norm"},
      {"seq_length", "LLaMA-Factory's name is cutoff_len"},
      {"global_batch_size", "LLaMA-Factory has none: per_device_train_batch_size x "
                            "gradient_accumulation_steps x dp makes it"},
      {"data_parallel_size", "LLaMA-Factory has none: give `mtc compile --dp`"},
      {"world_size", "LLaMA-Factory has none: give `mtc compile --world-size`"},
      {"decoder_first_pipeline_num_layers", "LLaMA-Factory has none: give `mtc compile "
                                            "--pp-layout`"},
      {"decoder_last_pipeline_num_layers", "LLaMA-Factory has none: give `mtc compile "
                                           "--pp-layout`"},
  };
  auto it = names.find(key);
  if (it != names.end())
    return it->second;
  std::string place = megatronArgumentInTrain(key);
  return place.empty() ? "LLaMA-Factory's reader has no such key" : place;
}

namespace {

/// "lr (line 1), train_iters (line 2)", at most four named.
std::string listOf(const std::vector<Placed> &keys) {
  std::string out;
  for (size_t i = 0; i < keys.size() && i < 4; ++i)
    out += (i ? ", " : "") + keys[i].key + " (line " + std::to_string(keys[i].line) + ")";
  if (keys.size() > 4)
    out += " and " + std::to_string(keys.size() - 4) + " more";
  return out;
}

Status mixedVocabularies(const std::string &path, const std::vector<Placed> &megatron,
                         const std::vector<Placed> &llamaFactory, ConfigVocabulary decided) {
  const bool isMegatron = decided == ConfigVocabulary::Megatron;
  const std::vector<Placed> &deciding = isMegatron ? megatron : llamaFactory;
  const std::vector<Placed> &misfits = isMegatron ? llamaFactory : megatron;
  std::string message =
      path + " mixes Megatron-Core's option names with LLaMA-Factory's keys, which `mtc "
             "compile` reads with different defaults (Megatron-Core's, transformers'). It reads "
             "as " + (isMegatron ? "a Megatron-Core option file" : "a LLaMA-Factory YAML") +
      " by " + listOf(deciding) + ", and only " +
      (isMegatron ? "LLaMA-Factory's reader" : "Megatron-Core's reader") + " takes " +
      (misfits.size() == 1 ? "this key:" : "these keys:");
  for (const Placed &p : misfits)
    message += "\n  " + path + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) +
               ": " + p.key + ": " +
               (isMegatron ? megatronNameOf(p.key) : llamaFactoryNameOf(p.key));
  message += "\nWrite the file in one vocabulary; keys both read alike "
             "(tensor_model_parallel_size, micro_batch_size, weight_decay, bf16, recompute_*, "
             "...) fit either.";
  return Status::error(message);
}

} // namespace

Expected<ConfigFileVocabulary> configVocabulary(const std::string &path) {
  if (!config::yamlFileProblem(path).empty())
    return ConfigFileVocabulary{}; // Megatron-Core's reader says why
  YAML::Node root;
  try {
    root = config::loadOneDocument(path);
  } catch (const YAML::Exception &) {
    return ConfigFileVocabulary{}; // Megatron-Core's reader says why
  }
  if (!root.IsMap())
    return ConfigFileVocabulary{};
  const std::vector<std::string> &megatronKeys = parallelConfigKeys();
  std::vector<Placed> megatron, llamaFactory;
  std::vector<ConfigVocabulary> order; // of the keys only one reader takes
  for (const auto &entry : root) {
    if (!entry.first.IsScalar())
      continue;
    const std::string key = entry.first.Scalar();
    // A Megatron-LM argument the plan does not hold (seed, log_interval) is
    // Megatron's too: its reader says where it goes.
    const bool inMegatron = std::binary_search(megatronKeys.begin(), megatronKeys.end(), key) ||
                            !megatronArgumentElsewhere(key).empty();
    const bool inTrain = trainkeys::find(key) || key == "megatron" ||
                         key == "override_transformer_config";
    if (inMegatron == inTrain) // both, alike; or neither: the reader names it
      continue;
    Placed placed{key, entry.first.Mark().line + 1, entry.first.Mark().column + 1};
    (inMegatron ? megatron : llamaFactory).push_back(placed);
    order.push_back(inMegatron ? ConfigVocabulary::Megatron : ConfigVocabulary::LlamaFactory);
  }
  if (llamaFactory.empty())
    return ConfigFileVocabulary{ConfigVocabulary::Megatron, listOf(megatron)};
  if (megatron.empty())
    return ConfigFileVocabulary{ConfigVocabulary::LlamaFactory, listOf(llamaFactory)};
  // The more numerous kind is what the file was meant to be; at a tie, the first.
  ConfigVocabulary decided = order.front();
  if (megatron.size() != llamaFactory.size())
    decided = megatron.size() > llamaFactory.size() ? ConfigVocabulary::Megatron
                                                    : ConfigVocabulary::LlamaFactory;
  return mixedVocabularies(path, megatron, llamaFactory, decided);
}

} // namespace mt
