// Reading a LLaMA-Factory-style YAML (with Trinity's `megatron:` block) and
// command-line overrides through the key table; the batch and schedule
// they imply.
#include "compiler/config/TrainConfig.h"

#include "compiler/config/ConfigVocabulary.h"
#include "compiler/config/TrainKeys.h"
#include "compiler/config/YamlText.h"
#include "runtime/support/Wording.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>

namespace mt {
namespace {

using trainkeys::Given;
using trainkeys::Key;
using trainkeys::Kind;

/// The sections whose entries are keys of the same table: Trinity's
/// `megatron:` and, inside it or at the top, `override_transformer_config:`.
bool isSection(const std::string &key) {
  return key == "megatron" || key == "override_transformer_config";
}

/// Whether `text` is YAML's spelling of null (core schema: null, Null, NULL,
/// ~, or nothing but spaces).
bool spelledNull(const std::string &text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos)
    return true;
  const std::string word = text.substr(first, text.find_last_not_of(" \t") - first + 1);
  return word == "null" || word == "Null" || word == "NULL" || word == "~";
}

using config::whereOf;

/// Reads keys one by one; every error and refusal is collected so that one
/// run names every key that is wrong.
struct Reader {
  TrainConfig &config;
  ConfigErrors &errors;
  std::map<std::string, std::string> seen; // key -> where first given in the file
  /// A setting of the table (trainkeys::settingOf) -> the qualified name
  /// it was first given under and its value: the same key at the top and in
  /// a section, or a key and its alias, would otherwise win by line order.
  std::map<std::string, std::pair<std::string, YAML::Node>> tableKeys;

  /// The known key nearest to an unknown `key` ("" when none is near).
  static std::string meantKey(const std::string &key) {
    std::vector<std::string> known;
    for (const Key &k : trainkeys::keys())
      known.push_back(k.name);
    known.push_back("megatron");
    known.push_back("override_transformer_config");
    return meantName(key, known);
  }

  /// `mtc compile`'s flag that `key` names ("tp" and "micro_batch" ->
  /// "--tp", "--micro-batch"), and the Megatron-Core key it sets; "" for none.
  static std::pair<std::string, std::string> flagOf(const std::string &key) {
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    return {flag, optionKeyOfFlag(flag)};
  }

  static Status unknown(const std::string &where, const std::string &key) {
    std::string message = where + "unknown key '" + key + "'";
    // The ranks are the launcher's, in mtc train (not mtc compile's --dp).
    const std::string ranks = ": mtc train takes the ranks from NPROC_PER_NODE (or torchrun's, "
                              "Slurm's or OpenMPI's environment), and the data-parallel size "
                              "is the ranks over tp x pp x cp";
    if (key == "data_parallel_size" || key == "world_size" || key == "nproc_per_node" ||
        key == "nnodes")
      return Status::error(message + ranks);
    if (key == "gradient_checkpointing" || key == "disable_gradient_checkpointing")
      return Status::error(message + ": activation recompute is Megatron-Core's "
                           "recompute_granularity (full or selective; none when not given), "
                           "with recompute_method and recompute_num_layers");
    const std::vector<std::string> &megatron = parallelConfigKeys();
    if (std::binary_search(megatron.begin(), megatron.end(), key))
      return Status::error(message + ": it is a name of Megatron-Core's option file (which `mtc "
                           "compile --config` reads, not with LLaMA-Factory's keys); " +
                           llamaFactoryNameOf(key));
    if (auto [flag, option] = flagOf(key); !option.empty()) {
      const auto &known = trainkeys::keys();
      if (std::any_of(known.begin(), known.end(), [&](const Key &k) { return k.name == option; }))
        return Status::error(message + "; did you mean '" + option + "' (what `mtc compile " +
                             flag + "` sets)?");
      if (option == "data_parallel_size" || option == "world_size")
        return Status::error(message + ranks);
      return Status::error(message + ": `mtc compile " + flag + "` sets Megatron-Core's " +
                           option + "; " + llamaFactoryNameOf(option));
    }
    if (std::string place = megatronArgumentInTrain(key); !place.empty())
      return Status::error(message + ": a Megatron-LM argument; " + place);
    if (std::string best = meantKey(key); !best.empty())
      message += "; did you mean '" + best + "'?";
    else
      message += " (the keys mtc knows are LLaMA-Factory's, MCoreAdapter's Megatron keys and "
                 "Trinity-RFT's megatron: block; see README's `mtc train` section)";
    return Status::error(message);
  }

  /// Reads `key: given` into the config; an error is added to `errors`.
  /// `keyWhere`: the key's own position, for an unknown key.
  /// An unknown key counts as an error of the key it was meant to be, whose
  /// default would otherwise be judged in its place.
  void apply(const std::string &key, const Given &given, const std::string &keyWhere) {
    errors.add(trainkeys::find(key) ? key : meantKey(key), read(key, given, keyWhere));
  }

  Status read(const std::string &key, const Given &given, const std::string &keyWhere) {
    const Key *k = trainkeys::find(key);
    if (!k)
      return unknown(keyWhere, key);
    config.givenAt.push_back({key, given.where.substr(0, given.where.size() - 2)});
    const std::string value = trainkeys::canonical(given.node);
    switch (k->kind) {
    case Kind::Honoured:
      if (std::count(k->refusedValues.begin(), k->refusedValues.end(), value))
        return refuse(given, key, value, k->refusedWhy);
      return set(*k, given);
    case Kind::AlwaysDone:
      if (k->set) // a value of the wrong type is a mistake, even where unused
        if (Status s = k->set(config, given); !s)
          return s;
      // A speed switch given false gets resolve()'s warning instead.
      if (value != "false" || speedSwitchOffReason(key).empty())
        config.alwaysDone.push_back(key + ": " + k->meaning);
      return Status::ok();
    case Kind::Refused:
      break;
    }
    for (const std::string &ok : k->accepted)
      if (value == ok) {
        config.alwaysDone.push_back(key + ": " + value + " is what mtc does");
        return Status::ok();
      }
    std::string accepted;
    for (const std::string &ok : k->accepted)
      accepted += (accepted.empty() ? "" : " or ") + ok;
    return refuse(given, key, value,
                  k->meaning +
                      (accepted.empty() ? "; remove the key"
                                        : "; " + key + " may only be " + accepted) +
                      (*k->issue ? std::string(" (") + k->issue + " brings it)" : ""));
  }

  /// Sets `k` from `given`; a value it refuses leaves the configuration as
  /// it was (a setter may have stored an out-of-range value before
  /// refusing it), so later checks never meet it.
  Status set(const Key &k, const Given &given) {
    TrainConfig before = config;
    Status s = k.set(config, given);
    if (!s)
      config = std::move(before);
    return s;
  }

  /// Collects the refusal of `key: value`.
  Status refuse(const Given &given, const std::string &key, const std::string &value,
                const std::string &why) {
    errors.refuse(key, given.where + key + ": " + value + " is not supported: " + why);
    return Status::ok();
  }

  /// A section's own errors (a value that is no mapping, a misplaced
  /// section); ok when `mapping` may read into it.
  Status checkSection(const std::string &path, const std::string &key, const YAML::Node &value,
                      const std::string &section, const std::string &where) {
    if (!value.IsMap() && !value.IsNull())
      return Status::error(whereOf(path, value) + key + ": expected a mapping of Megatron keys");
    if (section == key || (key == "megatron" && !section.empty()))
      return Status::error(where + key + ": cannot be nested in " + section);
    return Status::ok();
  }

  /// Records where `qualified` (`key` in its section) sets its setting;
  /// false when an earlier line set it already (under this name, in
  /// another section, or under the setting's other name), with an error if
  /// the two values differ: otherwise the later line would win silently.
  bool firstOfSetting(const std::string &key, const std::string &qualified,
                      const YAML::Node &value, const std::string &where) {
    auto [it, added] = tableKeys.try_emplace(trainkeys::settingOf(key), qualified, value);
    if (added)
      return true;
    const auto &[first, firstValue] = it->second;
    if (firstValue.IsScalar() && value.IsScalar() && firstValue.Scalar() == value.Scalar())
      return false;
    const std::string firstKey = first.substr(first.rfind('.') + 1);
    errors.add(key, Status::error(where + "'" + qualified + "' and '" + first + "' (at " +
                                  seen[first].substr(0, seen[first].size() - 2) + ") are " +
                                  (firstKey == key ? "the same key with two values: give it once"
                                                   : "two names of the same setting with two "
                                                     "values: give one of them")));
    return false;
  }

  void mapping(const std::string &path, const YAML::Node &map, const std::string &section) {
    for (const auto &entry : map) {
      const YAML::Node &keyNode = entry.first;
      std::string where = whereOf(path, keyNode);
      if (!keyNode.IsScalar()) {
        errors.add("", Status::error(where + "expected a key, got a " +
                                     (keyNode.IsMap() ? "mapping" : "list or null")));
        continue;
      }
      std::string key = keyNode.Scalar();
      std::string qualified = section.empty() ? key : section + "." + key;
      if (auto [it, added] = seen.try_emplace(qualified, where); !added) {
        errors.add(key, Status::error(where + "key '" + qualified + "' is given twice (first at " +
                                      it->second.substr(0, it->second.size() - 2) + ")"));
        continue;
      }
      if (!isSection(key) && !firstOfSetting(key, qualified, entry.second, where))
        continue;
      if (isSection(key)) {
        Status s = checkSection(path, key, entry.second, section, where);
        errors.add(key, s);
        if (s && entry.second.IsMap())
          mapping(path, entry.second, qualified);
        continue;
      }
      apply(key, Given{entry.second, whereOf(path, entry.second)}, where);
    }
  }
};

/// The YAML file at `path` as a node; a file that cannot be read or parsed
/// is an error.
Expected<YAML::Node> loadYaml(const std::string &path) {
  // A directory: yaml-cpp's read would throw past its types; a FIFO: wait.
  if (std::string problem = config::yamlFileProblem(path); !problem.empty())
    return Status::error(path + ": " + problem);
  try {
    return config::loadOneDocument(path);
  } catch (const YAML::BadFile &) {
    return Status::error(path + ": cannot open the file");
  } catch (const YAML::Exception &e) {
    return Status::error(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                         std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

} // namespace

void ConfigErrors::add(const std::string &key, const Status &s) {
  if (s)
    return;
  errors_.push_back(s.message());
  if (!key.empty())
    keys_.insert(key);
}

Status ConfigErrors::status() const {
  if (empty())
    return Status::ok();
  std::string message;
  if (errors_.size() == 1)
    message = errors_[0];
  else if (!errors_.empty())
    message = countOf(int64_t(errors_.size()), "configuration error") + ":";
  for (size_t i = 0; errors_.size() > 1 && i < errors_.size(); ++i)
    message += "\n  " + errors_[i];
  if (!refusals_.empty())
    message += std::string(message.empty() ? "" : "\n") +
               countOf(int64_t(refusals_.size()), "key") +
               (refusals_.size() == 1 ? " asks" : " ask") +
               " for what this version of mtc does not do:";
  for (const std::string &r : refusals_)
    message += "\n  " + r;
  return Status::error(message);
}

bool loadTrainConfig(const std::string &path,
                     const std::vector<std::pair<std::string, std::string>> &overrides,
                     TrainConfig &config, ConfigErrors &errors) {
  Reader reader{config, errors, {}};
  if (!path.empty()) {
    auto root = loadYaml(path);
    if (!root)
      return errors.add("", root.status()), false;
    if (!root->IsNull() && !root->IsMap())
      return errors.add("", Status::error(path + ":1:1: expected a mapping of training keys")),
             false;
    if (root->IsMap())
      reader.mapping(path, *root, "");
  }
  for (const auto &[given, text] : overrides) {
    const std::string where = "command line: ";
    // Trinity-RFT's dotted spelling of a block's key (megatron.KEY,
    // megatron.override_transformer_config.KEY) is the key itself.
    std::string key = given;
    for (size_t dot; (dot = key.find('.')) != std::string::npos && isSection(key.substr(0, dot));)
      key = key.substr(dot + 1);
    // HfArgumentParser: `--key` alone (or `--key=`) is a boolean flag's true.
    const bool bare = text.empty();
    YAML::Node value;
    std::optional<std::string> yamlError;
    try {
      value = YAML::Load(bare ? "true" : text);
    } catch (const YAML::Exception &e) {
      value = YAML::Node(text); // a string: what a key of another type refuses
      yamlError = e.msg;
    }
    // Only a spelled null is null: YAML reads '%x' (a directive) as one too.
    if (value.IsNull() && !spelledNull(text))
      value = YAML::Node(text);
    if (isSection(key))
      errors.add(key, Status::error(where + "--" + key + ": give the keys of the block "
                                    "themselves (--tensor_model_parallel_size 2)"));
    else
      reader.apply(key, Given{value, where, bare, &text, yamlError ? &*yamlError : nullptr},
                   where);
  }
  return true;
}

Status loadTrainConfig(const std::string &path,
                       const std::vector<std::pair<std::string, std::string>> &overrides,
                       TrainConfig &config) {
  ConfigErrors errors;
  loadTrainConfig(path, overrides, config, errors);
  return errors.status();
}

namespace {

/// Whether a command-line word starts an override (`--key`, `key=value`)
/// rather than being the value of the `--flag` before it.
bool isKeyWord(const std::string &word) {
  if (word.rfind("--", 0) == 0)
    return true;
  size_t eq = word.find('=');
  if (eq == std::string::npos || eq == 0)
    return false;
  return std::all_of(word.begin(), word.begin() + eq,
                     [](char c) { return std::isalnum((unsigned char)c) || c == '_' || c == '.'; });
}

} // namespace

Expected<std::vector<std::pair<std::string, std::string>>>
parseOverrides(const std::vector<std::string> &args) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &a = args[i];
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string body = a.substr(2);
      if (size_t eq = body.find('='); eq != std::string::npos) {
        out.push_back({body.substr(0, eq), body.substr(eq + 1)});
      } else if (i + 1 < args.size() && !isKeyWord(args[i + 1])) {
        out.push_back({body, args[++i]});
      } else {
        out.push_back({body, ""}); // a bare flag: true for a boolean key (loadTrainConfig)
      }
    } else if (size_t eq = a.find('='); eq != std::string::npos && eq > 0 && a[0] != '-') {
      out.push_back({a.substr(0, eq), a.substr(eq + 1)});
    } else {
      return Status::error("command line: '" + a + "' is not an override; write --key value, "
                           "--key=value or key=value");
    }
  }
  return out;
}

std::string takeConfigPath(std::vector<std::string> &args) {
  if (args.empty() || args[0].empty() || args[0][0] == '-' || isKeyWord(args[0]))
    return "";
  std::string path = args[0];
  args.erase(args.begin());
  return path;
}

int64_t TrainConfig::dataParallelSize() const {
  const ParallelConfig &p = parallel;
  if (p.dp > 0)
    return p.dp;
  int64_t modelParallel = p.tp * p.pp * p.cp;
  if (p.worldSize > 0 && modelParallel > 0 && p.worldSize % modelParallel == 0)
    return p.worldSize / modelParallel;
  // ParallelConfig::resolve's default: the fewest ranks that hold ep x etp.
  int64_t experts = p.ep * (p.etp > 0 ? p.etp : p.tp), stage = p.tp * p.cp;
  return experts > 0 && stage > 0 ? experts / std::gcd(experts, stage) : 1;
}

ParallelConfig TrainConfig::layout() const {
  ParallelConfig p = parallel;
  p.microBatch = perDeviceTrainBatchSize;
  p.seq = cutoffLen;
  p.globalBatch = globalBatchSize();
  return p;
}

int64_t TrainConfig::stepsPerEpoch(int64_t datasetSamples) const {
  return std::max<int64_t>(1, datasetSamples / globalBatchSize());
}

std::string TrainConfig::warmupIgnoredWarning() const {
  if (lrSchedulerType != "constant" || (warmupSteps <= 0 && warmupRatio <= 0))
    return "";
  const std::string key = warmupSteps > 0 ? "warmup_steps" : "warmup_ratio";
  std::ostringstream value;
  value << (warmupSteps > 0 ? double(warmupSteps) : warmupRatio);
  return whereGiven(key) + key + " " + value.str() + " has no effect: lr_scheduler_type "
         "constant has no warm-up (transformers' get_constant_schedule); "
         "constant_with_warmup warms up";
}

std::string TrainConfig::repeatedSamplesWarning(int64_t datasetSamples) const {
  const int64_t batch = globalBatchSize();
  if (datasetSamples <= 0 || datasetSamples >= batch)
    return "";
  const std::string unit = stage == "sft" ? "rows" : "samples of cutoff_len tokens";
  std::ostringstream times;
  times.precision(2);
  times << double(batch) / double(datasetSamples);
  return "the prepared data has " + std::to_string(datasetSamples) + " " + unit +
         ", and every step reads " + std::to_string(batch) + " (the global batch: "
         "per_device_train_batch_size " + std::to_string(perDeviceTrainBatchSize) +
         " x gradient_accumulation_steps " + std::to_string(gradientAccumulationSteps) +
         " x data-parallel size " + std::to_string(dataParallelSize()) +
         "): every step repeats samples, each about " + times.str() + " times; lower "
         "per_device_train_batch_size or gradient_accumulation_steps to a global batch of at "
         "most " + std::to_string(datasetSamples) + ", or give more data" +
         (maxSamples > 0 ? " (max_samples " + std::to_string(maxSamples) + " keeps only the "
                           "first examples)" : std::string());
}

Expected<int64_t> TrainConfig::trainSteps(std::optional<int64_t> datasetSamples) const {
  if (maxSteps > 0)
    return maxSteps;
  std::ostringstream epochs; // 0.5, not to_string's 0.500000
  epochs << numTrainEpochs;
  if (!datasetSamples)
    return Status::error("num_train_epochs (" + epochs.str() + ") needs the dataset's size, "
                         "known once the data is prepared: `mtc train` computes it; give "
                         "max_steps to compile a plan alone");
  const int64_t steps =
      int64_t(std::ceil(numTrainEpochs * double(stepsPerEpoch(*datasetSamples))));
  if (steps < 1)
    return Status::error(whereGiven("num_train_epochs") + "num_train_epochs (" + epochs.str() +
                         ") gives no optimizer step; give more epochs or max_steps");
  return steps;
}

namespace {

/// The lr_scheduler_kwargs that transformers' schedule `type` takes and
/// mtc honours.
std::string schedulerKwargsOf(const std::string &type) {
  if (type == "cosine")
    return "num_cycles (0.5 only)";
  if (type == "cosine_with_min_lr")
    return "min_lr or min_lr_rate, and num_cycles (0.5 only)";
  return "no lr_scheduler_kwargs";
}

} // namespace

Status TrainConfig::checkNumCycles() const {
  if (!numCycles)
    return Status::ok();
  std::ostringstream value;
  value << *numCycles;
  const std::string where = whereGiven("lr_scheduler_kwargs") + "lr_scheduler_kwargs.num_cycles";
  if (lrSchedulerType != "cosine" && lrSchedulerType != "cosine_with_min_lr")
    return Status::error(where + " applies to cosine and cosine_with_min_lr only; "
                         "lr_scheduler_type is " + lrSchedulerType + ", which takes " +
                         schedulerKwargsOf(lrSchedulerType));
  if (*numCycles == 0.5)
    return Status::ok();
  // The plan's lr_schedule has transformers' default half wave built in.
  return Status::error(where + ": " + value.str() + " is not supported: mtc's " +
                       lrSchedulerType + " is transformers' with num_cycles 0.5 (one half "
                       "cosine wave from the peak down to " +
                       (lrSchedulerType == "cosine" ? "0" : "min_lr") + "); remove num_cycles "
                       "or give 0.5");
}

Expected<OptimizerConfig> TrainConfig::optimizer(std::optional<int64_t> datasetSamples) const {
  OptimizerConfig o;
  o.lr = learningRate;
  o.weightDecay = weightDecay;
  o.beta1 = adamBeta1;
  o.beta2 = adamBeta2;
  o.eps = adamEpsilon;
  o.clipGrad = maxGradNorm;
  auto steps = trainSteps(datasetSamples);
  if (!steps)
    return steps.status();
  o.trainSteps = *steps;
  o.warmupSteps = warmupSteps > 0 ? warmupSteps
                                  : int64_t(std::ceil(warmupRatio * double(o.trainSteps)));
  o.decaySteps = o.trainSteps;
  o.decayStyle = "hf_" + lrSchedulerType;
  if (lrSchedulerType == "constant")
    o.warmupSteps = 0; // transformers' get_constant_schedule ignores warm-up
  if (lrSchedulerType == "cosine_with_min_lr") {
    if (minLr.has_value() == minLrRate.has_value())
      return Status::error(whereGiven(minLr ? "lr_scheduler_kwargs" : "lr_scheduler_type") +
                           "lr_scheduler_type cosine_with_min_lr needs exactly one of "
                           "lr_scheduler_kwargs.min_lr and lr_scheduler_kwargs.min_lr_rate" +
                           (minLr ? ", not both" : ""));
    o.minLr = minLr ? *minLr : *minLrRate * learningRate;
  } else if (minLr || minLrRate) {
    return Status::error(whereGiven("lr_scheduler_kwargs") + "lr_scheduler_kwargs." +
                         (minLr ? "min_lr" : "min_lr_rate") + " applies to cosine_with_min_lr "
                         "only; lr_scheduler_type is " + lrSchedulerType + ", which takes " +
                         schedulerKwargsOf(lrSchedulerType));
  }
  if (Status s = checkNumCycles(); !s)
    return s;
  if (Status s = o.validate(); !s)
    return s;
  return o;
}

Status TrainConfig::checkPlanKeys() const {
  if (bf16 || whereGiven("bf16").empty())
    return Status::ok();
  return Status::error(whereGiven("bf16") + "bf16: false " + bf16FalseReason());
}

std::string TrainConfig::whereGiven(const std::string &key) const {
  for (auto it = givenAt.rbegin(); it != givenAt.rend(); ++it)
    if (it->first == key)
      return it->second + ": ";
  return "";
}

std::map<std::string, std::string> TrainConfig::layoutGivenAt() const {
  // LLaMA-Factory's names of the options Megatron-Core names otherwise.
  static const std::map<std::string, std::string> kMegatronName = {
      {"per_device_train_batch_size", "micro_batch_size"},
      {"cutoff_len", "seq_length"},
      {"learning_rate", "lr"},
      {"adam_epsilon", "adam_eps"},
      {"max_grad_norm", "clip_grad"},
      {"warmup_steps", "lr_warmup_iters"},
      {"lr_scheduler_type", "lr_decay_style"},
      {"max_steps", "train_iters"},
  };
  std::map<std::string, std::string> notes;
  for (const auto &[key, where] : givenAt) { // in order: the last one given counts
    auto alias = kMegatronName.find(key);
    const std::string &name = alias == kMegatronName.end() ? key : alias->second;
    notes[name] = givenAtNote(name, where, key);
  }
  // mtc train's global batch is per_device_train_batch_size x
  // gradient_accumulation_steps x dp: a rule on global_batch_size (or the
  // micro-batches it makes) is one on gradient_accumulation_steps.
  for (const auto &[key, where] : givenAt)
    if (key == "gradient_accumulation_steps" && whereGiven("global_batch_size").empty())
      notes["global_batch_size"] = "global_batch_size is per_device_train_batch_size x "
                                   "gradient_accumulation_steps x dp; " +
                                   givenAtNote(key, where);
  if (!worldSource.empty() && !notes.count("data_parallel_size"))
    notes["data_parallel_size"] = "data_parallel_size is the world size (" + worldSource +
                                  ") over tp x pp x cp";
  return notes;
}

void TrainConfig::checkStageKeys(ConfigErrors &errors) const {
  if (stage == "sft")
    return;
  auto where = [&](const std::string &key) { return whereGiven(key); };
  const std::string notSft = " applies to stage sft only, and stage is " + stage;
  if (!chatTemplate.empty())
    errors.add("template", Status::error(
        where("template") + "template: " + chatTemplate + notSft + ": stage pt trains on the "
        "raw text and applies no chat template (LLaMA-Factory reads template in pt only to "
        "choose the end-of-text token it appends to each example; mtc's pt tokenizes the text "
        "as one stream and appends none); remove template, or set stage: sft"));
  if (neatPacking)
    errors.add("neat_packing", Status::error(
        where("neat_packing") + "neat_packing: true" + notSft + ": stage pt reads one token "
        "stream, where documents are separated by EOS (LLaMA-Factory refuses it outside sft "
        "too); remove neat_packing"));
  for (auto [key, on] : {std::pair<const char *, bool>{"train_on_prompt", trainOnPrompt},
                         {"mask_history", maskHistory}})
    if (on)
      errors.add(key, Status::error(where(key) + key + ": true" + notSft + ": pt data has no "
                                    "prompts or turns, every token is trained on (LLaMA-Factory "
                                    "refuses it outside sft too); remove " + key));
  if (!where("packing").empty() && !packing)
    errors.add("packing", Status::error(
        where("packing") + "packing: false" + notSft + ": stage pt always concatenates the text "
        "into samples of cutoff_len tokens (LLaMA-Factory's packing, which it turns on for pt); "
        "remove packing or set it true"));
}

std::string TrainConfig::expertParallelBatchNote() const {
  const int64_t dp = dataParallelSize();
  if (parallel.ep <= 1 || dp % parallel.ep != 0)
    return "";
  return "MCoreAdapter's comment counts dp as world / (tp x pp x cp x ep) = " +
         std::to_string(dp / parallel.ep) + ", which gives " +
         countOf(globalBatchSize() / parallel.ep, "sample") + "; mtc follows Megatron-Core: "
         "the ranks of an ep group read different data";
}

std::string TrainConfig::explain(std::optional<int64_t> datasetSamples) const {
  std::ostringstream os;
  int64_t dp = dataParallelSize();
  os << "global batch: per_device_train_batch_size (" << perDeviceTrainBatchSize
     << ") x gradient_accumulation_steps (" << gradientAccumulationSteps << ") x dp (" << dp
     << ") = " << countOf(globalBatchSize(), "sample") << " of cutoff_len " << cutoffLen
     << " tokens\n";
  if (std::string note = expertParallelBatchNote(); !note.empty())
    os << "(" << note << ")\n";
  os << "dp: " << dp;
  if (parallel.dp > 0)
    os << " (given)";
  else if (parallel.worldSize > 0)
    os << " (world size / (tp x pp x cp), Megatron-Core's; expert parallelism folds over the "
          "same ranks)";
  else if (dp > 1)
    os << " (no world size given: the fewest ranks that hold ep x etp)";
  else
    os << " (one model replica: no world size given)";
  os << "\n";
  if (maxSteps > 0)
    os << "steps: max_steps = " << maxSteps << "\n";
  else if (auto steps = trainSteps(datasetSamples))
    os << "steps: num_train_epochs " << numTrainEpochs << " x "
       << countOf(stepsPerEpoch(*datasetSamples), "step") << " per epoch (" << *datasetSamples
       << (*datasetSamples < globalBatchSize()
               ? " samples, fewer than the global batch " + std::to_string(globalBatchSize()) +
                     ": one step, samples repeated"
               : " samples / global batch " + std::to_string(globalBatchSize()) +
                     ", a last partial batch dropped")
       << ") = " << *steps << " steps\n";
  else if (datasetSamples)
    os << "steps: num_train_epochs " << numTrainEpochs << " gives no optimizer step\n";
  else
    os << "steps: num_train_epochs " << numTrainEpochs
       << " (the step count needs the prepared data: `mtc train` computes it)\n";
  os << "schedule: transformers' " << lrSchedulerType << ", peak learning_rate "
     << learningRate << "\n";
  for (const std::string &note : alwaysDone)
    os << "accepted: " << note << "\n";
  return os.str();
}

} // namespace mt
