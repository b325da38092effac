// The key table of the training front-end: LLaMA-Factory's keys,
// MCoreAdapter's Megatron keys and Trinity-RFT's `megatron:` block.
#include "compiler/config/TrainKeys.h"

#include "compiler/config/YamlText.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>
#include <sstream>
#include <type_traits>

namespace mt::trainkeys {
namespace {

Status typeError(const Given &g, const char *key, const char *expected) {
  return Status::error(g.where + key + ": expected " + expected + ", got " +
                       config::spellingOf(g.node) +
                       (g.yamlError ? " (not valid YAML: " + *g.yamlError + ")" : ""));
}

/// Reads a scalar by its type whatever its YAML spelling (True/yes, 3e-6).
template <typename T> Status read(const Given &g, const char *key, const char *expected, T &out) {
  if constexpr (!std::is_same_v<T, bool>)
    if (g.bare)
      return Status::error(g.where + key + ": needs a value (--" + key + " VALUE); a bare --" +
                           key + " (or " + key + "=) is true, which only a true/false key takes");
  if constexpr (std::is_same_v<T, std::string>)
    if (g.literal && !g.node.IsNull()) {
      out = *g.literal;
      return Status::ok();
    }
  if constexpr (std::is_same_v<T, bool>)
    if (g.node.IsScalar()) {
      // HfArgumentParser's string_to_bool also takes 1, 0, t and f (and a
      // YAML 1 or 0 is truthy or falsy there); YAML's own spellings follow.
      std::string word = g.node.Scalar();
      std::transform(word.begin(), word.end(), word.begin(), ::tolower);
      if (word == "1" || word == "t" || word == "0" || word == "f") {
        out = word == "1" || word == "t";
        return Status::ok();
      }
    }
  try {
    if (g.node.IsScalar()) {
      out = g.node.as<T>();
      return Status::ok();
    }
  } catch (const YAML::Exception &) {
  }
  return typeError(g, key, expected);
}

using Setter = std::function<Status(TrainConfig &, const Given &)>;

Setter boolean(const char *key, bool TrainConfig::*field) {
  return [=](TrainConfig &c, const Given &g) { return read(g, key, "true or false", c.*field); };
}
/// A boolean of the parallel layout's options (sequence_parallel,
/// use_distributed_optimizer, ...).
Setter layoutFlag(const char *key, bool ParallelConfig::*field) {
  return [=](TrainConfig &c, const Given &g) {
    return read(g, key, "true or false", c.parallel.*field);
  };
}
Setter text(const char *key, std::string TrainConfig::*field) {
  return [=](TrainConfig &c, const Given &g) { return read(g, key, "a string", c.*field); };
}
/// A finite number >= `min` (> `min` where `minExcluded`), below `max`
/// where given (the optimizer's own ranges: OptimizerConfig::validate).
Setter number(const char *key, double TrainConfig::*field, double min, bool minExcluded = false,
              std::optional<double> max = std::nullopt, bool maxIncluded = false) {
  return [=](TrainConfig &c, const Given &g) {
    if (Status s = read(g, key, "a number", c.*field); !s)
      return s;
    const double v = c.*field;
    if (std::isfinite(v) && (minExcluded ? v > min : v >= min) &&
        (!max || (maxIncluded ? v <= *max : v < *max)))
      return Status::ok();
    std::ostringstream range; // 0, not to_string's 0.000000
    if (max)
      range << "in [" << min << ", " << *max << (maxIncluded ? "]" : ")");
    else
      range << (minExcluded ? "> " : ">= ") << min;
    return Status::error(g.where + key + ": must be a finite number " + range.str() + ", got " +
                         g.node.Scalar());
  };
}
/// An integer >= `min`; `nullable`: null reads as `ifNull`.
Setter integer(const char *key, int64_t TrainConfig::*field, int64_t min,
               std::optional<int64_t> ifNull = std::nullopt) {
  return [=](TrainConfig &c, const Given &g) {
    if (ifNull && g.node.IsNull()) {
      c.*field = *ifNull;
      return Status::ok();
    }
    if (Status s = read(g, key, "an integer", c.*field); !s)
      return s;
    if (c.*field < min)
      return Status::error(g.where + key + ": must be >= " + std::to_string(min) + ", got " +
                           g.node.Scalar());
    return Status::ok();
  };
}
/// A step interval (save_steps, logging_steps): an integer >= 1. A number
/// in (0, 1), transformers' fraction of the run's steps, is named as such.
Setter stepInterval(const char *key, int64_t TrainConfig::*field) {
  return [=](TrainConfig &c, const Given &g) {
    double fraction = 0;
    try {
      if (g.node.IsScalar() && !g.bare)
        fraction = g.node.as<double>();
    } catch (const YAML::Exception &) {
    }
    if (fraction > 0 && fraction < 1)
      return Status::error(g.where + key + ": " + g.node.Scalar() + " is a fraction of the "
                           "run's steps in transformers, which mtc train does not take: give "
                           "a step count >= 1 (--explain shows the steps per epoch)");
    return integer(key, field, 1)(c, g);
  };
}
Setter layout(const char *key, int64_t ParallelConfig::*field, int64_t min,
              bool nullable = false) {
  return [=](TrainConfig &c, const Given &g) {
    if (nullable && g.node.IsNull()) {
      c.parallel.*field = 0;
      return Status::ok();
    }
    if (Status s = read(g, key, "an integer", c.parallel.*field); !s)
      return s;
    if (c.parallel.*field < min)
      return Status::error(g.where + key + ": must be >= " + std::to_string(min) + ", got " +
                           g.node.Scalar());
    return Status::ok();
  };
}
/// Reads a string into `out` that must be one of `values`.
Status readOneOf(const Given &g, const char *key, const std::vector<std::string> &values,
                 std::string &out) {
  std::string v;
  if (Status s = read(g, key, "a string", v); !s)
    return s;
  std::string list;
  for (const std::string &ok : values) {
    if (v == ok) {
      out = v;
      return Status::ok();
    }
    list += (list.empty() ? "" : ", ") + ok;
  }
  return Status::error(g.where + key + ": must be one of " + list + ", got '" + v + "'");
}
/// A string that must be one of `values`.
Setter oneOf(const char *key, std::string TrainConfig::*field, std::vector<std::string> values) {
  return [=](TrainConfig &c, const Given &g) { return readOneOf(g, key, values, c.*field); };
}

/// resume_from_checkpoint: a path, true (the newest checkpoint-N in
/// output_dir), or false/null (none), as LLaMA-Factory reads it.
Status resumeFrom(TrainConfig &c, const Given &g) {
  if (g.node.IsNull())
    return c.resumeFromCheckpoint.clear(), Status::ok();
  bool flag = false;
  if (g.node.IsScalar() && YAML::convert<bool>::decode(g.node, flag)) {
    c.resumeFromCheckpoint = flag ? "true" : "";
    return Status::ok();
  }
  return read(g, "resume_from_checkpoint", "a checkpoint directory, true or false",
              c.resumeFromCheckpoint);
}

/// lr_scheduler_kwargs: the names transformers' schedules of
/// lr_scheduler_type take (num_cycles, min_lr, min_lr_rate); whether the
/// schedule in use takes them is TrainConfig::optimizer's check, as
/// lr_scheduler_type may come later.
Status schedulerKwargs(TrainConfig &c, const Given &g) {
  if (g.node.IsNull())
    return Status::ok();
  if (!g.node.IsMap())
    return typeError(g, "lr_scheduler_kwargs", "a mapping (num_cycles, min_lr or min_lr_rate)");
  for (const auto &entry : g.node) {
    std::string name = entry.first.Scalar();
    Given value{entry.second, g.where};
    double v = 0;
    std::string full = "lr_scheduler_kwargs." + name;
    if (name != "min_lr" && name != "min_lr_rate" && name != "num_cycles")
      return Status::error(g.where + full + ": unknown; of transformers' schedules (get_scheduler) "
                           "cosine takes num_cycles, cosine_with_min_lr num_cycles and min_lr or "
                           "min_lr_rate, and the others none");
    if (Status s = read(value, full.c_str(), "a number", v); !s)
      return s;
    if (!(v >= 0) || !std::isfinite(v))
      return Status::error(g.where + full + ": must be a finite number >= 0, got " +
                           entry.second.Scalar());
    (name == "min_lr" ? c.minLr : name == "min_lr_rate" ? c.minLrRate : c.numCycles) = v;
  }
  return Status::ok();
}

/// A string of the layout that takes one of a few values (optionValueError
/// says which); `nullable`: null is "not given" ("").
Setter layoutChoice(const char *key, std::string &(*field)(TrainConfig &), bool nullable) {
  return [=](TrainConfig &c, const Given &g) {
    std::string &out = field(c);
    if (nullable && g.node.IsNull())
      return out.clear(), Status::ok();
    if (Status s = read(g, key, nullable ? "a string or null" : "a string", out); !s)
      return s;
    if (std::string error = optionValueError(key, out); !error.empty())
      return Status::error(g.where + key + error);
    return Status::ok();
  };
}

/// recompute_modules: a list of names or one comma-separated string
/// (MCoreAdapter's spelling); null: not given (core_attn).
Status recomputeModules(TrainConfig &c, const Given &g) {
  std::vector<std::string> &out = c.parallel.recompute.modules;
  out.clear();
  if (g.node.IsNull())
    return Status::ok();
  if (!g.node.IsSequence()) {
    std::string text;
    if (Status s = read(g, "recompute_modules", "a list of module names", text); !s)
      return s;
    out = splitModuleList(text);
  } else {
    for (const YAML::Node &item : g.node) {
      std::string name;
      if (Status s = read(Given{item, g.where}, "recompute_modules", "a list of module names",
                          name);
          !s)
        return s;
      out.push_back(name);
    }
  }
  for (const std::string &name : out)
    if (std::string error = optionValueError("recompute_modules", name); !error.empty())
      return Status::error(g.where + "recompute_modules" + error);
  return Status::ok();
}

/// A number, or null for none (MoeOptions::validate checks its range).
Status moeNumber(const Given &g, const char *key, std::optional<double> &out) {
  if (g.node.IsNull())
    return out.reset(), Status::ok();
  double v = 0;
  if (Status s = read(g, key, "a number or null", v); !s)
    return s;
  out = v;
  return Status::ok();
}

/// A moe_* routing key: `read` stores it, then its value is checked alone
/// (MoeOptions::valueError), where it was given.
Setter moeKey(const char *key, Setter read) {
  return [=](TrainConfig &c, const Given &g) {
    if (Status s = read(c, g); !s)
      return s;
    if (std::string error = c.moe.valueError(key); !error.empty())
      return Status::error(g.where + key + ": " + error);
    return Status::ok();
  };
}

/// micro_batch_size (Megatron's name) is per_device_train_batch_size.
Status microBatch(TrainConfig &c, const Given &g) {
  return integer("micro_batch_size", &TrainConfig::perDeviceTrainBatchSize, 1)(c, g);
}

/// An AlwaysDone boolean: its value is checked to be true or false, then
/// not used (either value gives the same training).
Setter anyFlag(const char *key) {
  return [=](TrainConfig &, const Given &g) {
    bool unused = false;
    return read(g, key, "true or false", unused);
  };
}

/// A speed switch of Megatron-Core (speedSwitchKeys): a boolean; false goes
/// to the layout's speedSwitchesOff, which resolve() warns has no effect
/// (the last value given counts).
Setter speedSwitch(const char *key) {
  return [=](TrainConfig &c, const Given &g) {
    bool on = true;
    Status s = read(g, key, "true or false", on);
    if (s)
      c.parallel.setSpeedSwitch(key, on);
    if (s && !on) // given false after true: no longer done
      std::erase_if(c.alwaysDone, [&](const std::string &note) {
        return note.rfind(std::string(key) + ": ", 0) == 0;
      });
    return s;
  };
}

/// An AlwaysDone integer (or null): its value is checked to be one, then
/// not used.
Setter anyCount(const char *key) {
  return [=](TrainConfig &, const Given &g) {
    int64_t unused = 0;
    return g.node.IsNull() ? Status::ok() : read(g, key, "an integer or null", unused);
  };
}

/// An AlwaysDone string: checked to be one of `values`, then not used.
Setter anyOf(const char *key, std::vector<std::string> values) {
  return [=](TrainConfig &, const Given &g) {
    std::string unused;
    return readOneOf(g, key, values, unused);
  };
}

const char *kMultimodal = "multimodal models (Qwen2-VL and others) are not supported by mtc";

/// Trinity-RFT's roles (actor_rollout_ref: actor, rollout, ref; critic):
/// mtc trains one model, so only the actor's megatron: block applies.
const char *kRlRoles = "Trinity-RFT's reinforcement-learning roles (actor_rollout_ref: actor, "
                       "rollout, ref; critic) are not trained by mtc, which trains one model "
                       "(stage sft or pt): move the actor's megatron: block (with its "
                       "override_transformer_config:) to the top level";

/// LLaMA-Factory's templates of vision and audio models (an mm_plugin that
/// places image, video or audio tokens): refused as the multimodal keys are.
std::vector<std::string> multimodalTemplates() {
  return {"glm4v",      "intern_vl", "kimi_vl",  "llava",       "llava_next", "llava_next_video",
          "minicpm_v",  "mllama",    "paligemma", "pixtral",    "qwen2_audio", "qwen2_omni",
          "qwen2_vl",   "qwen3_vl",  "video_llava", "yi_vl"};
}

// Each table's entries: {name, kind, origin, meaning, accepted values,
// issue, setter}.
#define MT_KEY_TABLE_PROLOGUE                                                                      \
  using enum Kind;                                                                                 \
  using enum Origin;                                                                               \
  using T = TrainConfig;                                                                           \
  using P = ParallelConfig;                                                                        \
  const char *off = "false";                                                                       \
  (void)off

/// LLaMA-Factory's model, data and output keys.
std::vector<Key> llamaFactoryDataKeys() {
  MT_KEY_TABLE_PROLOGUE;
  return {
      // LLaMA-Factory: model and data.
      {"model_name_or_path", Honoured, LlamaFactory, "the local Hugging Face model directory "
       "(config.json, *.safetensors, tokenizer files)", {}, "", text("model_name_or_path", &T::modelNameOrPath)},
      {"train_from_scratch", Honoured, LlamaFactory, "start from random weights (the seed's), "
       "not model_name_or_path's; without it, a directory with no *.safetensors is refused",
       {}, "", boolean("train_from_scratch", &T::trainFromScratch)},
      {"do_train", Refused, LlamaFactory, "mtc train only trains (no evaluation or prediction)", {"true"}},
      {"stage", Honoured, LlamaFactory, "sft (chat fine-tuning) or pt (language modelling); rm, "
       "ppo, dpo and kto are not supported", {}, "", oneOf("stage", &T::stage, {"sft", "pt"})},
      {"finetuning_type", Refused, LlamaFactory, "only full fine-tuning (no LoRA, no freeze)", {"full"}},
      {"dataset", Honoured, LlamaFactory, "datasets (comma-separated) of dataset_info.json, or files "
       "in dataset_dir", {}, "", text("dataset", &T::dataset)},
      {"dataset_dir", Honoured, LlamaFactory, "where dataset_info.json and the data are", {}, "",
       text("dataset_dir", &T::datasetDir)},
      {"template", Honoured, LlamaFactory, "the chat template of sft data", {}, "",
       text("template", &T::chatTemplate), multimodalTemplates(),
       "multimodal models (Qwen2-VL and others) are not supported by mtc, and this is a "
       "multimodal model's template; give a text model's (qwen for qwen2_vl's text)"},
      {"cutoff_len", Honoured, LlamaFactory, "tokens per sample: the plan's seq_length", {}, "",
       integer("cutoff_len", &T::cutoffLen, 1)},
      {"max_samples", Honoured, LlamaFactory, "at most this many samples per dataset", {}, "",
       integer("max_samples", &T::maxSamples, 1, 0)},
      {"packing", Honoured, LlamaFactory, "concatenate samples into cutoff_len rows", {}, "",
       boolean("packing", &T::packing)},
      {"neat_packing", Honoured, LlamaFactory, "packing with attention and rotary positions "
       "confined to each sample (implies packing)", {}, "",
       boolean("neat_packing", &T::neatPacking)},
      {"train_on_prompt", Honoured, LlamaFactory, "the loss also covers the prompts", {}, "",
       boolean("train_on_prompt", &T::trainOnPrompt)},
      {"mask_history", Honoured, LlamaFactory, "the loss covers the last turn only", {}, "",
       boolean("mask_history", &T::maskHistory)},
      {"preprocessing_num_workers", AlwaysDone, LlamaFactory, "data preparation is deterministic "
       "whatever the worker count; mtc chooses its own", {}, "",
       anyCount("preprocessing_num_workers")},
  };
}

/// transformers' output, batch and schedule keys, and the multimodal ones.
std::vector<Key> trainingArgumentKeys() {
  MT_KEY_TABLE_PROLOGUE;
  return {
      // LLaMA-Factory / transformers: outputs.
      {"output_dir", Honoured, LlamaFactory, "checkpoint-N directories, the final model and logs",
       {}, "", text("output_dir", &T::outputDir)},
      {"overwrite_output_dir", Honoured, LlamaFactory, "output_dir may hold an earlier run", {}, "",
       boolean("overwrite_output_dir", &T::overwriteOutputDir)},
      {"logging_steps", Honoured, LlamaFactory, "log_history entries and log lines every N steps",
       {}, "", stepInterval("logging_steps", &T::loggingSteps)},
      {"save_steps", Honoured, LlamaFactory, "a checkpoint-N every N steps", {}, "",
       stepInterval("save_steps", &T::saveSteps)},
      {"save_total_limit", Honoured, LlamaFactory, "keep the newest N checkpoints (0 or null: "
       "all, as transformers)", {}, "", integer("save_total_limit", &T::saveTotalLimit, 0, 0)},
      {"resume_from_checkpoint", Honoured, LlamaFactory, "continue from a checkpoint (true: the "
       "newest in output_dir)", {}, "", resumeFrom},
      {"infer_dtype", Honoured, LlamaFactory, "dtype of the tensors of checkpoint-N and the "
       "final model (LLaMA-Factory's export dtype; mtrun --export-dtype): auto (the dtype "
       "model_name_or_path's config.json names, float32 where it names none; LLaMA-Factory's "
       "export would try bf16 for a float32 model), float32, bfloat16 or float16; the fp32 "
       "masters rounded to nearest even, mtc-state/ stays fp32", {}, "",
       oneOf("infer_dtype", &T::inferDtype, {"auto", "float32", "bfloat16", "float16"})},
      {"plot_loss", Honoured, LlamaFactory, "training_loss.svg in output_dir at the end (mtrun "
       "--no-plot-loss when false; true when not given)", {}, "",
       boolean("plot_loss", &T::plotLoss)},
      // LLaMA-Factory's examples/train_full keys for its other back-ends.
      {"deepspeed", Refused, LlamaFactory, "DeepSpeed is not used: mtc shards with Megatron-Core's "
       "options (use_distributed_optimizer shards the optimizer state as ZeRO-1 does; "
       "tensor_model_parallel_size and pipeline_model_parallel_size split the model); remove "
       "deepspeed", {"null", "none"}},
      {"flash_attn", AlwaysDone, LlamaFactory, "attention always runs fused (cuDNN's or mtc's "
       "flash kernels on the GPU: mtrun --attention-backend chooses; the exact reference on the "
       "CPU), with the same result up to rounding", {}, "",
       anyOf("flash_attn", {"auto", "disabled", "sdpa", "fa2", "fa3"})},
      {"overwrite_cache", AlwaysDone, LlamaFactory, "the dataset is prepared again on every run "
       "(mtc train keeps no cache)", {}, "", anyFlag("overwrite_cache")},
      {"dataloader_num_workers", AlwaysDone, LlamaFactory, "batches are read from the prepared "
       "token file by mtrun, with no loader workers", {}, "", anyCount("dataloader_num_workers")},
      {"ddp_timeout", AlwaysDone, LlamaFactory, "LLaMA-Factory raises it so that ranks wait out "
       "the dataset's preparation; mtc train prepares the data before any rank starts, and "
       "mtrun --comm-timeout bounds each collective", {}, "", anyCount("ddp_timeout")},
      {"save_only_model", Refused, LlamaFactory, "checkpoint-N always holds mtc-state/ (the "
       "optimizer state and the data position), which resuming needs", {off}},
      {"val_size", Refused, LlamaFactory, "evaluation is not implemented: mtc train only trains",
       {"0", "0.0"}},
      {"eval_strategy", Refused, LlamaFactory, "evaluation is not implemented: mtc train only "
       "trains", {"no", "false"}}, // YAML reads a bare no as false
      {"per_device_eval_batch_size", AlwaysDone, LlamaFactory, "used by evaluation only, which "
       "mtc train does not run (eval_strategy: no)", {}, "",
       anyCount("per_device_eval_batch_size")},
      {"eval_steps", AlwaysDone, LlamaFactory, "used by evaluation only, which mtc train does "
       "not run (eval_strategy: no)", {}, "", anyCount("eval_steps")},
      // transformers' TrainingArguments at their defaults: other values
      // ask for what mtc train does not do.
      {"optim", Refused, LlamaFactory, "mtc's optimizer is AdamW with fp32 master weights "
       "(Megatron-Core's); adam_beta1, adam_beta2, adam_epsilon and weight_decay set it",
       {"adamw_torch", "adamw_torch_fused"}},
      {"save_strategy", Refused, LlamaFactory, "checkpoint-N is saved every save_steps; set "
       "save_steps (for about once an epoch: steps per epoch, which --explain shows)", {"steps"}},
      {"logging_strategy", Refused, LlamaFactory, "the logs get an entry every logging_steps; "
       "set logging_steps", {"steps"}},
      {"do_eval", Refused, LlamaFactory, "evaluation is not implemented: mtc train only trains",
       {off}},
      {"do_predict", Refused, LlamaFactory, "prediction is not implemented: mtc train only "
       "trains; generate with the final model in transformers or vLLM", {off}},
      {"streaming", Refused, LlamaFactory, "the dataset is prepared whole before the first step "
       "(mtc train keeps no streaming loader); remove streaming", {off}},
      {"report_to", Refused, LlamaFactory, "experiment trackers; mtc logs to trainer_log.jsonl",
       {"none", "null"}},
      {"trust_remote_code", AlwaysDone, LlamaFactory, "mtc reads config.json itself and runs no "
       "model code", {}, "", anyFlag("trust_remote_code")},
      {"use_mca", AlwaysDone, LlamaFactory, "mtc is the Megatron-Core path", {}, "",
       anyFlag("use_mca")},
      // Batch, optimizer and schedule (transformers' TrainingArguments).
      {"per_device_train_batch_size", Honoured, LlamaFactory, "micro-batch size", {}, "",
       integer("per_device_train_batch_size", &T::perDeviceTrainBatchSize, 1)},
      {"gradient_accumulation_steps", Honoured, LlamaFactory, "micro-batches per step and "
       "data-parallel rank", {}, "", integer("gradient_accumulation_steps", &T::gradientAccumulationSteps, 1)},
      {"num_train_epochs", Honoured, LlamaFactory, "passes over the prepared data (unless max_steps)",
       {}, "", number("num_train_epochs", &T::numTrainEpochs, 0)},
      {"max_steps", Honoured, LlamaFactory, "optimizer steps (> 0: overrides num_train_epochs)", {},
       "", integer("max_steps", &T::maxSteps, -1)},
      {"learning_rate", Honoured, LlamaFactory, "peak learning rate", {}, "",
       number("learning_rate", &T::learningRate, 0, true)},
      {"lr_scheduler_type", Honoured, LlamaFactory, "transformers' schedule of that name", {}, "",
       oneOf("lr_scheduler_type", &T::lrSchedulerType,
             {"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_min_lr"})},
      {"lr_scheduler_kwargs", Honoured, LlamaFactory, "num_cycles of cosine and "
       "cosine_with_min_lr (0.5 only); min_lr or min_lr_rate of cosine_with_min_lr",
       {}, "", schedulerKwargs},
      {"warmup_ratio", Honoured, LlamaFactory, "warm-up steps as a fraction of the steps", {}, "",
       number("warmup_ratio", &T::warmupRatio, 0, false, 1.0, true)}, // transformers' [0, 1]
      {"warmup_steps", Honoured, LlamaFactory, "warm-up steps (> 0: overrides warmup_ratio)", {}, "",
       integer("warmup_steps", &T::warmupSteps, 0)},
      {"weight_decay", Honoured, Megatron, "AdamW weight decay", {}, "",
       number("weight_decay", &T::weightDecay, 0)},
      {"adam_beta1", Honoured, Megatron, "AdamW beta1", {}, "", number("adam_beta1", &T::adamBeta1, 0, false, 1.0)},
      {"adam_beta2", Honoured, Megatron, "AdamW beta2", {}, "", number("adam_beta2", &T::adamBeta2, 0, false, 1.0)},
      {"adam_epsilon", Honoured, LlamaFactory, "AdamW epsilon", {}, "",
       number("adam_epsilon", &T::adamEpsilon, 0, true)},
      {"max_grad_norm", Honoured, LlamaFactory, "gradient clipping norm (0: off)", {}, "",
       number("max_grad_norm", &T::maxGradNorm, 0)},
      {"exit_signal_handler", Honoured, Megatron, "SIGTERM, SIGHUP or Ctrl-C ends training "
       "after the current step, saving checkpoint-N there (mtrun --exit-signal-handler)", {}, "",
       boolean("exit_signal_handler", &T::exitSignalHandler)},
      {"exit_duration_in_mins", Honoured, Megatron, "end training, saving checkpoint-N, after "
       "the first step past this many minutes", {}, "",
       number("exit_duration_in_mins", &T::exitDurationInMins, 0, true)},
      {"exit_interval", Honoured, Megatron, "end training, saving checkpoint-N, after the first "
       "step divisible by N", {}, "", integer("exit_interval", &T::exitInterval, 1)},
      {"bf16", Honoured, Megatron, "true: the CUDA backend where a GPU is visible (bf16 "
       "compute, fp32 master weights); false: the CPU backend in fp32", {}, "", boolean("bf16", &T::bf16)},
      {"fp16", Refused, LlamaFactory, "fp16 with loss scaling is not implemented; use bf16", {off}},
      {"seed", Honoured, LlamaFactory, "seed of the data order (and of new weights)", {}, "",
       [](TrainConfig &c, const Given &g) { return read(g, "seed", "an integer >= 0", c.seed); }},
      // Multimodal keys (qwen2_vl_full.yaml).
      {"image_max_pixels", Refused, LlamaFactory, kMultimodal},
      {"image_min_pixels", Refused, LlamaFactory, kMultimodal},
      {"video_max_pixels", Refused, LlamaFactory, kMultimodal},
      {"video_min_pixels", Refused, LlamaFactory, kMultimodal},
      {"video_fps", Refused, LlamaFactory, kMultimodal},
      {"video_maxlen", Refused, LlamaFactory, kMultimodal},
      {"media_dir", Refused, LlamaFactory, kMultimodal},
      {"freeze_vision_tower", Refused, LlamaFactory, kMultimodal},
      {"freeze_multi_modal_projector", Refused, LlamaFactory, kMultimodal},
      {"freeze_language_model", Refused, LlamaFactory, kMultimodal},
  };
}

/// MCoreAdapter's Megatron keys and Trinity-RFT's megatron: block.
std::vector<Key> megatronKeys() {
  MT_KEY_TABLE_PROLOGUE;
  return {
      // Megatron / MCoreAdapter.
      {"tensor_model_parallel_size", Honoured, Megatron, "tp", {}, "",
       layout("tensor_model_parallel_size", &P::tp, 1)},
      {"pipeline_model_parallel_size", Honoured, Megatron, "pp", {}, "",
       layout("pipeline_model_parallel_size", &P::pp, 1)},
      {"virtual_pipeline_model_parallel_size", Honoured, Megatron, "vpp (interleaved 1F1B)", {}, "",
       layout("virtual_pipeline_model_parallel_size", &P::vpp, 1, true)},
      {"sequence_parallel", Honoured, Megatron, "sequence parallelism over tp", {}, "",
       layoutFlag("sequence_parallel", &P::sequenceParallel)},
      {"micro_batch_size", Honoured, Megatron, "per_device_train_batch_size", {}, "", microBatch},
      {"expert_model_parallel_size", Honoured, Megatron, "ep (experts split over the ranks of "
       "an ep group, MoE parallel folding)", {}, "",
       layout("expert_model_parallel_size", &P::ep, 1)},
      {"expert_tensor_parallel_size", Honoured, Megatron, "etp (null: tp): each expert's ffn "
       "columns split over etp ranks (MoE parallel folding)", {}, "",
       layout("expert_tensor_parallel_size", &P::etp, 1, true)},
      {"context_parallel_size", Honoured, Megatron, "cp: the sequence split over cp ranks "
       "(Megatron-Core's load balancing)", {}, "",
       layout("context_parallel_size", &P::cp, 1)},
      {"cp_comm_type", Honoured, Megatron, "how attention exchanges keys and values under cp: "
       "p2p (ring), all_gather or a2a (heads exchanged all-to-all)", {}, "",
       layoutChoice("cp_comm_type", [](T &c) -> std::string & { return c.parallel.cpCommType; },
                    false)},
      {"moe_token_dispatcher_type", Honoured, Megatron, "how tokens reach their experts under "
       "ep: alltoall or allgather (flex: not built yet)", {}, "",
       layoutChoice("moe_token_dispatcher_type",
                    [](T &c) -> std::string & { return c.parallel.moeTokenDispatcherType; },
                    false)},
      {"moe_grouped_gemm", AlwaysDone, Megatron, "the experts of a layer are one "
       "mt.moe_grouped_mlp op (in a model with experts; a dense one has none to group)", {}, "",
       speedSwitch("moe_grouped_gemm")},
      {"moe_shared_expert_overlap", Honoured, Megatron, "a scheduling hint (the shared expert "
       "computed while the alltoall dispatcher's all-to-all runs) that never changes the "
       "result; this version does not reorder anything for it yet", {}, "",
       [](TrainConfig &c, const Given &g) {
         Status s = read(g, "moe_shared_expert_overlap", "true or false",
                         c.parallel.moeSharedExpertOverlap);
         if (s && c.parallel.moeSharedExpertOverlap)
           c.alwaysDone.push_back("moe_shared_expert_overlap: a scheduling hint with the same "
                                  "results; mtc does not overlap the shared expert with the "
                                  "dispatch yet");
         return s;
       }},
      {"moe_aux_loss_coeff", Honoured, Megatron, "coefficient of Megatron-Core's load-balancing "
       "loss (default: the model's router_aux_loss_coef x top_k, the same loss)", {}, "",
       moeKey("moe_aux_loss_coeff", [](TrainConfig &c, const Given &g) {
         return moeNumber(g, "moe_aux_loss_coeff", c.moe.auxLossCoeff);
       })},
      {"moe_z_loss_coeff", Honoured, Megatron, "coefficient of the router z-loss", {}, "",
       moeKey("moe_z_loss_coeff", [](TrainConfig &c, const Given &g) {
         std::optional<double> z;
         Status s = moeNumber(g, "moe_z_loss_coeff", z);
         c.moe.zLossCoeff = z.value_or(0.0);
         return s;
       })},
      {"moe_router_load_balancing_type", Honoured, Megatron, "aux_loss, seq_aux_loss or none", {},
       "", moeKey("moe_router_load_balancing_type", [](TrainConfig &c, const Given &g) {
         return read(g, "moe_router_load_balancing_type", "a string", c.moe.loadBalancingType);
       })},
      {"moe_expert_capacity_factor", Honoured, Megatron, "expert capacity (null: dropless)", {}, "",
       moeKey("moe_expert_capacity_factor", [](TrainConfig &c, const Given &g) {
         return moeNumber(g, "moe_expert_capacity_factor", c.moe.capacityFactor);
       })},
      {"moe_token_drop_policy", Honoured, Megatron, "probs or position", {}, "",
       moeKey("moe_token_drop_policy", [](TrainConfig &c, const Given &g) {
         return read(g, "moe_token_drop_policy", "a string", c.moe.dropPolicy);
       })},
      {"moe_pad_expert_input_to_capacity", Honoured, Megatron, "experts take capacity rows", {}, "",
       [](TrainConfig &c, const Given &g) {
         return read(g, "moe_pad_expert_input_to_capacity", "true or false", c.moe.padToCapacity);
       }},
      {"moe_layer_recompute", Honoured, Megatron, "recompute each MoE layer before its backward "
       "(recompute_granularity selective with moe added)", {}, "",
       [](TrainConfig &c, const Given &g) {
         return read(g, "moe_layer_recompute", "true or false", c.parallel.recompute.moeLayerRecompute);
       }},
      {"recompute_granularity", Honoured, Megatron, "activation recompute: full (whole layers) or "
       "selective (recompute_modules)", {}, "",
       layoutChoice("recompute_granularity",
                    [](T &c) -> std::string & { return c.parallel.recompute.granularity; },
                    true)},
      {"recompute_method", Honoured, Megatron, "which layers full recompute covers: uniform or "
       "block", {}, "",
       layoutChoice("recompute_method",
                    [](T &c) -> std::string & { return c.parallel.recompute.method; }, true)},
      {"recompute_num_layers", Honoured, Megatron, "layers per recompute unit (uniform) or per "
       "pipeline chunk (block)", {}, "", [](TrainConfig &c, const Given &g) {
         if (g.node.IsNull())
           return c.parallel.recompute.numLayers = 0, Status::ok();
         Status s = read(g, "recompute_num_layers", "an integer", c.parallel.recompute.numLayers);
         if (s && c.parallel.recompute.numLayers < 1)
           return Status::error(g.where + "recompute_num_layers: must be >= 1, got " +
                                g.node.Scalar());
         return s;
       }},
      {"recompute_modules", Honoured, Megatron, "what selective recompute covers: core_attn, mlp, "
       "layernorm, moe_act, moe", {}, "", recomputeModules},
      {"use_distributed_optimizer", Honoured, Megatron, "AdamW state sharded over dp in gradient "
       "buckets (reduce-scatter, sharded update, all-gather)", {}, "",
       layoutFlag("use_distributed_optimizer", &P::distributedOptimizer)},
      {"grad_reduce_in_fp32", Honoured, Megatron, "the dp gradient reduction in fp32 (true, the "
       "default) or in bf16 (false: half the bytes; the CUDA backend, where the reduction "
       "overlaps backward; refused by name where another reduction would stay fp32: cp, "
       "the experts' edp, pp, grad_offload, or none exists: dp 1)", {}, "",
       layoutFlag("grad_reduce_in_fp32", &P::gradReduceInFp32)},
      {"deterministic_mode", Honoured, Megatron, "every kernel sums in a fixed order and a run "
       "repeats bit for bit (true; the CUDA backend's attention backward then keeps dP whole, "
       "slower) or attention's backward may accumulate with atomics (false, the default)",
       {}, "", layoutFlag("deterministic_mode", &P::deterministicMode)},
      {"overlap_grad_reduce", AlwaysDone, Megatron, "a speed choice: the CUDA backend starts the "
       "dp gradient reduction (all-reduce, or the distributed optimizer's bucket reduce-scatters) "
       "behind the last backward", {}, "", speedSwitch("overlap_grad_reduce")},
      {"overlap_param_gather", Honoured, Megatron, "the distributed optimizer's parameter "
       "all-gather of each bucket runs behind the next step's forward", {}, "",
       layoutFlag("overlap_param_gather", &P::overlapParamGather)},
      {"bias_activation_fusion", AlwaysDone, Megatron, "a speed choice: mtc's kernels fuse as they "
       "see fit, with the same result", {}, "", speedSwitch("bias_activation_fusion")},
      {"apply_rope_fusion", AlwaysDone, Megatron, "a speed choice: mtc's kernels fuse as they see "
       "fit, with the same result", {}, "", speedSwitch("apply_rope_fusion")},
      {"calculate_per_token_loss", Honoured, Megatron, "the loss is normalized by the step's "
       "loss tokens (over every micro-batch, dp and cp rank) instead of averaging each "
       "micro-batch's token mean; a mixture-of-experts router's aux loss is multiplied by its "
       "tokens first, as Megatron-Core's", {}, "",
       layoutFlag("calculate_per_token_loss", &P::perTokenLoss)},
      // Trinity-RFT's megatron: block.
      {"param_offload", Honoured, Megatron, "the weights in host memory; each program "
       "copies a weight to the GPU before each run of its uses there, and the optimizer's "
       "update back", {}, "", layoutFlag("param_offload", &P::paramOffload)},
      {"grad_offload", Honoured, Megatron, "the fp32 main gradients in host memory; each "
       "program copies a gradient to the GPU before its first use there and back after its "
       "last", {}, "", layoutFlag("grad_offload", &P::gradOffload)},
      {"optimizer_offload", Honoured, Megatron, "the fp32 master weights and AdamW state in "
       "host memory, updated there; the plan copies gradients to the host and the updated "
       "weights back", {}, "", layoutFlag("optimizer_offload", &P::optimizerOffload)},
      {"use_mbridge", AlwaysDone, Trinity, "mtc always reads and writes Hugging Face weights "
       "itself (no mbridge, no conversion)", {}, "", anyFlag("use_mbridge")},
      {"use_dist_checkpointing", Honoured, Trinity, "start from and save mtc's own checkpoints "
       "(reshardable: they reload on another layout)", {}, "",
       boolean("use_dist_checkpointing", &T::useDistCheckpointing)},
      {"dist_checkpointing_path", Honoured, Trinity, "the directory of mtc's own checkpoint", {}, "",
       [](TrainConfig &c, const Given &g) {
         if (g.node.IsNull())
           return c.distCheckpointingPath.clear(), Status::ok();
         return read(g, "dist_checkpointing_path", "a directory or null", c.distCheckpointingPath);
       }},
      // Trinity-RFT's layout around the block: a role's strategy, and the
      // roles of its reinforcement learning, which mtc does not train.
      {"strategy", Refused, Trinity, "Trinity-RFT's training backend of a role: mtc is the "
       "Megatron-Core path", {"megatron"}},
      {"actor_rollout_ref", Refused, Trinity, kRlRoles},
      {"actor", Refused, Trinity, kRlRoles},
      {"ref", Refused, Trinity, kRlRoles},
      {"critic", Refused, Trinity, kRlRoles},
  };
}

#undef MT_KEY_TABLE_PROLOGUE

std::vector<Key> buildKeys() {
  std::vector<Key> all;
  for (auto table : {llamaFactoryDataKeys, trainingArgumentKeys, megatronKeys})
    for (Key &k : table())
      all.push_back(std::move(k));
  return all;
}

} // namespace

const std::vector<Key> &keys() {
  static const std::vector<Key> table = buildKeys();
  return table;
}

const Key *find(const std::string &name) {
  static const std::map<std::string, const Key *> byName = [] {
    std::map<std::string, const Key *> m;
    for (const Key &k : keys())
      m[k.name] = &k;
    return m;
  }();
  auto it = byName.find(name);
  return it == byName.end() ? nullptr : it->second;
}

std::string settingOf(const std::string &name) {
  // Keep in step with the keys whose setter writes another key's field.
  return name == "micro_batch_size" ? "per_device_train_batch_size" : name;
}

std::string canonical(const YAML::Node &node) {
  if (node.IsNull())
    return "null";
  if (!node.IsScalar())
    return node.IsSequence() ? "a list" : "a mapping";
  bool flag = false;
  if (YAML::convert<bool>::decode(node, flag))
    return flag ? "true" : "false";
  return node.Scalar();
}

} // namespace mt::trainkeys
