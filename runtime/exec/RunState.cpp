// trainer.json: the run's progress, settings and identity, written and read
// with every field checked.
#include "runtime/exec/RunState.h"

#include "runtime/kernels/Optimizer.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/support/FileKind.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

namespace mt::exec {
namespace {

using json = nlohmann::json;

/// Config keys that describe the file, not the model.
bool isMetadata(const std::string &key) {
  return key.empty() || key[0] == '_' || key == "transformers_version" ||
         key == "torch_dtype" || key == "dtype";
}

/// The optimizer hyperparameters that decide the rest of a run, by op; the
/// per-parameter sizes (adamw's `n`) depend on the layout and are left out.
const std::map<plan::Op, std::vector<std::string>> kOptimizerAttributes = {
    {plan::Op::lr_schedule, {"max_lr", "min_lr", "warmup_steps", "decay_steps", "style"}},
    {plan::Op::clip_coefficient, {"max_norm"}},
    {plan::Op::adamw, {"beta1", "beta2", "eps", "weight_decay"}},
};

json attributeValue(const plan::Attribute &a) {
  if (a.has_i())
    return a.i();
  if (a.has_f())
    return a.f();
  return a.s();
}

std::string text(const std::optional<std::string> &value) {
  return value ? *value : std::string("absent");
}

/// A field that is missing or has the wrong type; parseRunState turns it
/// into an error.
struct FieldError {
  std::string message;
};

/// `object[key]` as T. An integer field must hold an integer that T can
/// represent (json's get would truncate 2.5 and wrap -5 into an unsigned).
template <typename T>
T field(const json &object, const std::string &key, const std::string &path) {
  auto it = object.find(key);
  if (it == object.end())
    throw FieldError{path + ": field '" + key + "' is missing"};
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    const bool fits = it->is_number_unsigned()
                          ? it->get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max())
                          : it->is_number_integer() && std::is_signed_v<T> &&
                                it->get<int64_t>() >= int64_t(std::numeric_limits<T>::min());
    if (!fits)
      throw FieldError{path + ": field '" + key + "' must be an integer from " +
                       std::to_string(std::numeric_limits<T>::min()) + " to " +
                       std::to_string(std::numeric_limits<T>::max()) + ", got " + it->dump()};
  }
  try {
    return it->get<T>();
  } catch (const json::exception &) {
    throw FieldError{path + ": field '" + key + "' has the wrong type (" + it->dump() + ")"};
  }
}

template <typename T> json optionalJson(const std::optional<T> &v) {
  return v ? json(*v) : json(nullptr);
}

/// `object[key]` as T, or nullopt for a JSON null.
template <typename T>
std::optional<T> optionalField(const json &object, const std::string &key,
                               const std::string &path) {
  auto it = object.find(key);
  if (it != object.end() && it->is_null())
    return std::nullopt;
  return field<T>(object, key, path);
}

Expected<RunState> parseRunState(const json &j, const std::string &path) try {
  if (!j.contains("format"))
    return Status::error(path + ": no 'format' field: written by an older mtrun, whose "
                                "checkpoints do not record the run they belong to; resume "
                                "it with that mtrun, or start from its weights with --load");
  const int format = field<int>(j, "format", path);
  if (format != kRunStateFormat && format != 2)
    return Status::error(path + ": format " + std::to_string(format) +
                         " is not supported (this mtrun reads formats 2 and " +
                         std::to_string(kRunStateFormat) + ")");
  RunState s;
  s.scheduleOneAhead = format == 2;
  s.step = field<int64_t>(j, "step", path);
  s.consumedSamples = field<int64_t>(j, "consumed_samples", path);
  s.skippedSteps = field<int64_t>(j, "skipped_steps", path);
  s.skippedInARow = field<int64_t>(j, "skipped_in_a_row", path);
  s.settings.seed = field<uint64_t>(j, "seed", path);
  s.settings.eosId = optionalField<uint32_t>(j, "eos_id", path);
  s.settings.peakLr = optionalField<double>(j, "lr", path);
  if (s.settings.peakLr && !(*s.settings.peakLr > 0 && std::isfinite(*s.settings.peakLr)))
    throw FieldError{path + ": field 'lr' must be a learning rate > 0 or null, got " +
                     j["lr"].dump()};
  if (j.contains("last_loss")) // absent in older checkpoints
    s.lastLoss = optionalField<double>(j, "last_loss", path);
  json run = field<json>(j, "run", path);
  if (!run.is_object())
    throw FieldError{path + ": field 'run' is not an object"};
  for (const auto &[key, value] : run.items())
    s.identity[key] = value.dump();
  int64_t batch = field<int64_t>(run, "global_batch", path);
  if (s.step < 0 || s.skippedSteps < 0 || s.skippedInARow < 0 ||
      s.skippedInARow > s.skippedSteps || s.skippedSteps > s.step)
    return Status::error(path + ": inconsistent counters: step " + std::to_string(s.step) +
                         ", skipped_steps " + std::to_string(s.skippedSteps) +
                         ", skipped_in_a_row " + std::to_string(s.skippedInARow));
  if (batch < 1 || s.consumedSamples < 0 || s.consumedSamples % batch != 0 ||
      s.consumedSamples / batch != s.step)
    return Status::error(path + ": consumed_samples " + std::to_string(s.consumedSamples) +
                         " is not step " + std::to_string(s.step) + " x global_batch " +
                         std::to_string(batch) + " (the file was edited or is corrupt)");
  return s;
} catch (const FieldError &e) {
  return Status::error(e.message);
}

} // namespace

RunIdentity runIdentity(const plan::Plan &plan, uint64_t dataTokens, uint64_t dataFingerprint) {
  RunIdentity id;
  json config = json::parse(plan.hf_config_json(), nullptr, false);
  if (config.is_object())
    for (const auto &[key, value] : config.items())
      if (!isMetadata(key))
        id["model." + key] = value.dump();
  const plan::Training &t = plan.training();
  id["seq"] = std::to_string(t.seq());
  id["global_batch"] = std::to_string(t.global_batch());
  id["train_steps"] = std::to_string(t.train_steps());
  id["vocab_size"] = std::to_string(t.vocab_size());
  id["data.tokens"] = std::to_string(dataTokens);
  char hex[19];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(dataFingerprint));
  id["data.fingerprint"] = json(hex).dump();
  // What --freeze keeps out of training; only where it keeps something, so
  // that the identity of a run without it is what it always was.
  json frozen = json::array();
  for (const plan::Parameter &p : plan.parameters())
    if (!p.trainable())
      frozen.push_back(p.name());
  if (!frozen.empty())
    id["frozen"] = frozen.dump();
  std::map<std::string, std::set<json>> values;
  for (const plan::Program &program : plan.programs())
    for (const plan::Instruction &instr : program.instructions()) {
      std::optional<plan::Op> op = plan::opOf(instr);
      auto names = op ? kOptimizerAttributes.find(*op) : kOptimizerAttributes.end();
      if (names == kOptimizerAttributes.end())
        continue;
      plan::Attrs attrs(instr);
      for (const std::string &name : names->second)
        if (const plan::Attribute *a = attrs.find(name))
          values[instr.op() + "." + name].insert(attributeValue(*a));
    }
  for (const auto &[key, set] : values)
    id[key] = set.size() == 1 ? set.begin()->dump() : json(set).dump();
  return id;
}

void resolveNullSizes(json &config) {
  auto integer = [&](const char *key) -> int64_t {
    auto it = config.find(key);
    return it != config.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  auto isNull = [&](const char *key) { return config.contains(key) && config[key].is_null(); };
  const int64_t heads = integer("num_attention_heads"), hidden = integer("hidden_size");
  if (heads <= 0)
    return;
  if (isNull("num_key_value_heads"))
    config["num_key_value_heads"] = heads;
  if (isNull("head_dim") && hidden > 0)
    config["head_dim"] = hidden / heads;
}

namespace {

/// A config's rotary scaling other than the default, as "key: value"
/// (transformers 4's rope_scaling or 5's rope_parameters, which also holds
/// rope_theta), "" for none.
std::string ropeScaling(const json &config) {
  for (const char *key : {"rope_scaling", "rope_parameters"}) {
    auto it = config.find(key);
    if (it == config.end() || !it->is_object())
      continue;
    const json type = it->contains("rope_type") ? (*it)["rope_type"] : it->value("type", json());
    if (!type.is_null() && type != "default")
      return std::string(key) + ": " + it->dump();
  }
  return "";
}

} // namespace

std::string loadedConfigNote(const plan::Plan &plan, const std::string &dir) {
  const std::string path = dir + "/config.json";
  const std::string unchecked =
      ": the weights fit the plan's shapes, and nothing else of their model could be compared "
      "with the plan's";
  if (std::string what = notARegularFile(path); !what.empty())
    return path + " is " + what + ", not a file" + unchecked;
  std::ifstream in(path);
  if (!in)
    return path + " is missing" + unchecked;
  json loaded = json::parse(in, nullptr, false);
  if (loaded.is_discarded() || !loaded.is_object())
    return path + " is not a JSON object (truncated or corrupt)" + unchecked;
  json ours = json::parse(plan.hf_config_json(), nullptr, false);
  if (!ours.is_object())
    return "";
  // A size written null on one side and as its value on the other agrees
  // (an export writes the values; the source may have had the nulls).
  resolveNullSizes(loaded);
  resolveNullSizes(ours);
  std::string differences;
  for (const auto &[key, value] : ours.items())
    if (!isMetadata(key) && loaded.contains(key) && loaded[key] != value)
      differences += "\n  " + key + ": " + loaded[key].dump() + " there, " + value.dump() +
                     " in the plan";
  // What changes the model's math, set there and absent from the plan's
  // config: the plan does not apply it (mtc import-hf refuses what it does
  // not support).
  if (std::string scaling = ropeScaling(loaded); !scaling.empty() && ropeScaling(ours).empty())
    differences += "\n  " + scaling + " there, not in the plan (not applied)";
  for (const char *key : {"partial_rotary_factor", "sliding_window", "attn_logit_softcapping",
                          "final_logit_softcapping", "mlp_bias", "attention_bias"})
    if (!ours.contains(key) && loaded.contains(key) && !loaded[key].is_null() &&
        loaded[key] != false)
      differences += "\n  " + std::string(key) + ": " + loaded[key].dump() +
                     " there, not in the plan (not applied)";
  if (differences.empty())
    return "";
  return path + " differs from the model the plan was compiled from; the plan's values "
                "train:" + differences;
}

std::string identityDifferences(const RunIdentity &checkpoint, const RunIdentity &current) {
  std::set<std::string> keys;
  for (const RunIdentity *id : {&checkpoint, &current})
    for (const auto &entry : *id)
      keys.insert(entry.first);
  std::string out;
  for (const std::string &key : keys) {
    auto find = [&](const RunIdentity &id) -> std::optional<std::string> {
      auto it = id.find(key);
      return it == id.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    auto a = find(checkpoint), b = find(current);
    if (a != b)
      out += "\n  " + key + ": checkpoint " + text(a) + ", this run " + text(b);
  }
  return out;
}

Status writeRunState(const std::string &path, const RunState &state) {
  json run = json::object();
  for (const auto &[key, value] : state.identity)
    run[key] = json::parse(value);
  nlohmann::ordered_json j = {{"format", kRunStateFormat},
                              {"step", state.step},
                              {"consumed_samples", state.consumedSamples},
                              {"skipped_steps", state.skippedSteps},
                              {"skipped_in_a_row", state.skippedInARow},
                              {"seed", state.settings.seed},
                              {"eos_id", optionalJson(state.settings.eosId)},
                              {"lr", optionalJson(state.settings.peakLr)},
                              {"last_loss", optionalJson(state.lastLoss)},
                              {"run", run}};
  std::ofstream out(path);
  if (!out)
    return Status::error(path + ": cannot create the file");
  out << j.dump(2) << "\n";
  if (!out.flush())
    return Status::error(path + ": cannot write the file");
  return Status::ok();
}

Expected<RunState> readRunState(const std::string &path) {
  if (std::string what = notARegularFile(path); !what.empty())
    return Status::error(path + ": " + what + ", not a checkpoint's trainer.json");
  std::ifstream in(path);
  if (!in)
    return Status::error(path + ": missing (not a checkpoint written by mtrun --save)");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status::error(path + ": not a JSON object (truncated or corrupt)");
  return parseRunState(j, path);
}

Expected<RunSettings> resumedSettings(const RunFlags &flags, const RunState &checkpoint,
                                      const std::string &checkpointDir) {
  auto contradiction = [&](const std::string &flag, const std::string &given,
                           const std::string &saved) {
    return Status::error(flag + " " + given + " contradicts the checkpoint " + checkpointDir +
                         ", whose run has " + saved + ": leave " + flag +
                         " out to continue that run");
  };
  const RunSettings &saved = checkpoint.settings;
  if (flags.seed && *flags.seed != saved.seed)
    return contradiction("--seed", std::to_string(*flags.seed),
                         "seed " + std::to_string(saved.seed));
  if (flags.eosId && flags.eosId != saved.eosId)
    return contradiction("--eos-id", std::to_string(*flags.eosId),
                         saved.eosId ? "end-of-document id " + std::to_string(*saved.eosId)
                                     : std::string("no end-of-document id"));
  if (flags.peakLr) {
    // The peak the checkpoint's run trained with: its --lr, else its plan's.
    auto planPeak = checkpoint.identity.find("lr_schedule.max_lr");
    std::optional<double> peak = saved.peakLr;
    if (!peak && planPeak != checkpoint.identity.end())
      if (json v = json::parse(planPeak->second, nullptr, false); v.is_number())
        peak = v.get<double>();
    if (peak && *peak != *flags.peakLr)
      return contradiction("--lr", json(*flags.peakLr).dump(),
                           "peak learning rate " + json(*peak).dump());
  }
  RunSettings s = saved;
  if (flags.peakLr)
    s.peakLr = flags.peakLr;
  return s;
}

Expected<std::vector<std::string>> metricsUpTo(const std::string &path, int64_t step,
                                               std::optional<double> lastLoss,
                                               const std::string &option) {
  std::vector<std::string> kept;
  if (fileKindOf(path) != FileKind::Regular) // a pipe or device: nothing to keep, nor wait for
    return kept;
  std::ifstream in(path);
  bool records = false;
  std::optional<json> atStep;
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      continue;
    records = true;
    if (j["step"].get<int64_t>() == step)
      atStep = j.value("loss", json());
    if (j["step"].get<int64_t>() <= step)
      kept.push_back(line);
  }
  if (!lastLoss || !records || (atStep && atStep->is_number() && *atStep == json(*lastLoss)))
    return kept;
  return Status::error(option + " " + path + " is not this run's metrics file: the checkpoint "
                       "logged loss " + json(*lastLoss).dump() + " at step " + std::to_string(step) +
                       ", the file " + (atStep ? "logs " + atStep->dump() : "has no line") +
                       " there; resuming would keep only its lines up to step " +
                       std::to_string(step) + ". Give the run's own metrics file, or a new path");
}

void overrideLearningRate(plan::Plan &plan, double lr) {
  for (const plan::PeakLearningRate::Target &t : plan.peak_learning_rate().targets()) {
    plan::Instruction &instr =
        *plan.mutable_programs(int(t.program()))->mutable_instructions(int(t.instruction()));
    for (plan::Attribute &a : *instr.mutable_attributes())
      if (a.name() == t.attribute())
        a.set_f(lr * t.ratio());
  }
}

std::string pastScheduleNote(const plan::Plan &plan, int64_t last) {
  const int64_t trainSteps = plan.training().train_steps();
  if (last <= trainSteps)
    return "";
  for (const plan::Program &program : plan.programs())
    for (const plan::Instruction &instr : program.instructions())
      if (plan::isOp(instr, plan::Op::lr_schedule)) {
        std::ostringstream lr;
        lr << kernels::scheduledLearningRate(plan::Attrs(instr), trainSteps + 1);
        return "--steps " + std::to_string(last) + " runs past the plan's train_steps (" +
               std::to_string(trainSteps) + "): steps " + std::to_string(trainSteps + 1) +
               " to " + std::to_string(last) + " keep the schedule's final learning rate, " +
               lr.str();
      }
  return "";
}

} // namespace mt::exec
