// Validation of parallel sizes and the YAML reader for Megatron-Core names.
#include "compiler/config/ParallelConfig.h"

#include "runtime/support/CheckedMath.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <type_traits>
#include <set>
#include <sstream>

namespace mt {
namespace {

template <typename... Args> Status fail(Args &&...args) {
  std::ostringstream os;
  (os << ... << args);
  return Status::error(os.str());
}

/// Megatron options whose defaults this version implements; any other value
/// is rejected rather than silently ignored.
const std::map<std::string, std::string> &pendingDefaults() {
  static const std::map<std::string, std::string> defaults = {
      {"use_distributed_optimizer", "false"},
      {"recompute_granularity", "null"},
      {"recompute_method", "null"},
      {"recompute_num_layers", "null"},
      {"param_offload", "false"},
      {"grad_offload", "false"},
      {"optimizer_offload", "false"},
      {"moe_token_dispatcher_type", "alltoall"},
  };
  return defaults;
}

/// Performance hints that never change the result; accepted and recorded.
const std::set<std::string> &hintKeys() {
  static const std::set<std::string> keys = {
      "bias_activation_fusion", "apply_rope_fusion",   "moe_grouped_gemm",
      "overlap_grad_reduce",    "overlap_param_gather", "bf16"};
  return keys;
}

size_t editDistance(const std::string &a, const std::string &b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

/// "; did you mean 'x'?" for a close known name, else the list of names.
std::string suggestion(const std::string &key, std::vector<std::string> known) {
  std::sort(known.begin(), known.end());
  std::string best, all;
  size_t bestDistance = 4; // a typo, not another option
  for (const std::string &name : known) {
    all += (all.empty() ? "" : ", ") + name;
    if (size_t d = editDistance(key, name); d < bestDistance)
      bestDistance = d, best = name;
  }
  if (!best.empty())
    return "; did you mean '" + best + "'?";
  return " (known: " + all + ")";
}

Status checkPositive(const char *name, int64_t value) {
  if (value < 1)
    return fail(name, " must be >= 1, got ", value);
  return Status::ok();
}


/// Every size is in range, and no option asks for what is not supported.
Status checkRanges(const ParallelConfig &c) {
  struct Named { const char *name; int64_t value; };
  for (Named n : {Named{"tensor_model_parallel_size (--tp)", c.tp},
                  Named{"pipeline_model_parallel_size (--pp)", c.pp},
                  Named{"expert_model_parallel_size (--ep)", c.ep},
                  Named{"context_parallel_size (--cp)", c.cp}})
    if (Status s = checkPositive(n.name, n.value); !s)
      return s;
  for (Named n : {Named{"virtual_pipeline_model_parallel_size (--vpp)", c.vpp},
                  Named{"data parallel size (--dp)", c.dp},
                  Named{"world size (--world-size)", c.worldSize},
                  Named{"micro_batch_size (--micro-batch)", c.microBatch},
                  Named{"global_batch_size (--global-batch)", c.globalBatch},
                  Named{"seq_length (--seq)", c.seq}})
    if (n.value < 0)
      return fail(n.name, " must be >= 1, got ", n.value);

  for (const auto &[key, value] : c.pending) {
    auto it = pendingDefaults().find(key);
    if (it != pendingDefaults().end() && value != it->second)
      return fail(key, ": ", value, " is not supported by this version of mtc "
                  "yet (only ", it->second, ")");
  }

  return Status::ok();
}

/// Layers per virtual stage: even, or the uneven layout asked for.
Status resolveStageLayers(ParallelConfig &c, int64_t layers) {
  bool uneven = !c.ppLayout.empty() || c.firstStageLayers || c.lastStageLayers;
  int64_t chunks = c.pp * (c.vpp ? c.vpp : 1);
  if (!uneven) {
    if (chunks > layers)
      return fail("pipeline stages pp (", c.pp, ") x vpp (", c.vpp ? c.vpp : 1, ") = ",
                  chunks, " exceed num_hidden_layers (", layers, ")");
    if (layers % chunks != 0)
      return fail("num_hidden_layers (", layers, ") must be divisible by pp (", c.pp,
                  ") x vpp (", c.vpp ? c.vpp : 1, ") = ", chunks,
                  " (or give an uneven --pp-layout)");
    c.chunkLayers.assign(chunks, layers / chunks);
    return Status::ok();
  }
  if (c.pp == 1)
    return fail("an uneven pipeline layout needs pipeline_model_parallel_size (--pp) > 1");
  if (c.vpp)
    return fail("an uneven pipeline layout cannot be combined with "
                "virtual_pipeline_model_parallel_size (--vpp ", c.vpp, ") in this version");
  if (!c.ppLayout.empty() && (c.firstStageLayers || c.lastStageLayers))
    return fail("give either --pp-layout or decoder_first/last_pipeline_num_layers, not both");
  if (c.ppLayout.empty()) {
    int64_t first = c.firstStageLayers, last = c.lastStageLayers;
    int64_t middle = c.pp - (first ? 1 : 0) - (last ? 1 : 0);
    int64_t rest = layers - first - last;
    if (first < 0 || last < 0 || rest < 0 || (middle > 0 && (rest < middle || rest % middle)) ||
        (middle == 0 && rest != 0))
      return fail("decoder_first_pipeline_num_layers (", first, ") and "
                  "decoder_last_pipeline_num_layers (", last, ") leave ", rest, " of ", layers,
                  " layers for ", middle, " other stages; they must split evenly, at least "
                  "one layer each");
    for (int64_t s = 0; s < c.pp; ++s)
      c.ppLayout.push_back(s == 0 && first ? first
                           : s == c.pp - 1 && last ? last : rest / std::max<int64_t>(middle, 1));
  }
  if (int64_t(c.ppLayout.size()) != c.pp)
    return fail("--pp-layout gives ", c.ppLayout.size(), " stages, but --pp is ", c.pp);
  int64_t total = 0;
  for (int64_t n : c.ppLayout) {
    if (n < 1)
      return fail("--pp-layout: every stage needs at least one layer, got ", n);
    total += n;
  }
  if (total != layers)
    return fail("--pp-layout assigns ", total, " layers, the model has ", layers);
  c.chunkLayers = c.ppLayout;
  return Status::ok();
}

} // namespace

Status ParallelConfig::resolve(const ModelDims &model) {
  if (Status s = checkRanges(*this); !s)
    return s;
  // Every product formed below is a sub-product of this one (all factors
  // are >= 1), so none overflows once it fits.
  if (!checkedProduct({tp, pp, std::max<int64_t>(vpp, 1), cp, ep, std::max<int64_t>(dp, 1),
                       std::max<int64_t>(worldSize, 1), std::max<int64_t>(microBatch, 1), 2}))
    return fail("tp (", tp, ") x pp (", pp, ") x vpp (", vpp, ") x cp (", cp, ") x ep (", ep,
                ") x dp (", dp, ") x world size (", worldSize, ") x micro_batch_size (",
                microBatch, ") overflows 64-bit integers: no layout has that many ranks");
  // Shapes are static in the model: batch and sequence come from it.
  if (microBatch == 0)
    microBatch = model.microBatch;
  else if (microBatch != model.microBatch)
    return fail("micro_batch_size (--micro-batch) is ", microBatch,
                " but the model's inputs have micro-batch ", model.microBatch,
                "; re-import with `mtc import-hf --micro-batch ", microBatch, "`");
  if (seq == 0)
    seq = model.seq;
  else if (seq != model.seq)
    return fail("seq_length (--seq) is ", seq, " but the model's inputs have "
                "sequence length ", model.seq, "; re-import with `mtc "
                "import-hf --seq ", seq, "`");

  if (model.numHeads % tp != 0)
    return fail("num_attention_heads (", model.numHeads, ") must be divisible "
                "by tensor_model_parallel_size (--tp ", tp, ")");
  if (model.numKvHeads % tp != 0)
    return fail("num_key_value_heads (", model.numKvHeads, ") must be "
                "divisible by tensor_model_parallel_size (--tp ", tp, ")");
  if (sequenceParallel && tp == 1)
    return fail("sequence_parallel (--sp) needs tensor_model_parallel_size "
                "(--tp) > 1, got --tp 1");
  if (vpp != 0 && pp == 1)
    return fail("virtual_pipeline_model_parallel_size (--vpp ", vpp, ") needs "
                "pipeline_model_parallel_size (--pp) > 1, got --pp 1");
  if (Status s = resolveStageLayers(*this, model.numLayers); !s)
    return s;
  if (model.numExperts == 0 && ep != 1)
    return fail("expert_model_parallel_size (--ep ", ep, ") needs a "
                "mixture-of-experts model; this model is dense");
  if (model.numExperts != 0 && model.numExperts % ep != 0)
    return fail("num_experts (", model.numExperts, ") must be divisible by "
                "expert_model_parallel_size (--ep ", ep, ")");
  if (cp > 1 && seq % (2 * cp) != 0)
    return fail("seq_length (", seq, ") must be divisible by 2 x "
                "context_parallel_size (2 x ", cp, " = ", 2 * cp, ")");

  // world = pp * dp * cp * ep * tp (mesh order of Megatron; ep is an axis).
  int64_t modelParallel = tp * pp * cp * ep;
  if (worldSize != 0 && worldSize % modelParallel != 0)
    return fail("world size (", worldSize, ") must be divisible by tp (", tp,
                ") x pp (", pp, ") x cp (", cp, ") x ep (", ep, ") = ",
                modelParallel);
  if (dp == 0)
    dp = worldSize ? worldSize / modelParallel : 1;
  if (worldSize == 0)
    worldSize = dp * modelParallel;
  else if (worldSize != dp * modelParallel)
    return fail("world size (", worldSize, ") must equal tp (", tp, ") x pp (",
                pp, ") x cp (", cp, ") x ep (", ep, ") x dp (", dp, ") = ",
                dp * modelParallel);

  if (globalBatch == 0)
    globalBatch = microBatch * dp;
  if (globalBatch % (microBatch * dp) != 0)
    return fail("global_batch_size (", globalBatch, ") must be divisible by "
                "micro_batch_size (", microBatch, ") x data parallel size (",
                dp, ") = ", microBatch * dp);
  if (vpp != 0 && numMicroBatches() % pp != 0)
    return fail("with virtual pipeline stages, the number of micro-batches (",
                numMicroBatches(), " = global_batch_size ", globalBatch,
                " / (micro_batch_size ", microBatch, " x dp ", dp,
                ")) must be a multiple of pp (", pp, ")");
  return Status::ok();
}

Status OptimizerConfig::validate() const {
  if (!(lr > 0))
    return fail("lr (--lr) must be > 0, got ", lr);
  if (!(minLr >= 0) || minLr > lr)
    return fail("min_lr (--min-lr) must be in [0, lr = ", lr, "], got ", minLr);
  if (trainSteps < 1)
    return fail("train_iters (--train-steps) must be >= 1, got ", trainSteps);
  if (warmupSteps < 0)
    return fail("lr_warmup_iters (--warmup-steps) must be >= 0, got ", warmupSteps);
  int64_t decay = decaySteps ? decaySteps : trainSteps;
  if (decay < warmupSteps)
    return fail("lr_decay_iters (", decay, ") must be >= lr_warmup_iters (",
                warmupSteps, ")");
  if (decayStyle != "cosine" && decayStyle != "linear" && decayStyle != "constant")
    return fail("lr_decay_style (--lr-decay-style) must be cosine, linear or "
                "constant, got '", decayStyle, "'");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
    return fail("adam_beta1 and adam_beta2 must be in [0, 1), got ", beta1,
                " and ", beta2);
  if (!(eps > 0))
    return fail("adam_eps must be > 0, got ", eps);
  if (!(weightDecay >= 0))
    return fail("weight_decay must be >= 0, got ", weightDecay);
  if (!(clipGrad >= 0))
    return fail("clip_grad must be >= 0 (0: off), got ", clipGrad);
  return Status::ok();
}

Status loadParallelConfigYaml(const std::string &path, ParallelConfig &config,
                              OptimizerConfig &optimizer) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile &) {
    return fail(path, ": cannot open the file");
  } catch (const YAML::Exception &e) {
    return fail(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg);
  }
  if (root.IsNull())
    return Status::ok();
  if (!root.IsMap())
    return fail(path, ":1:1: expected a mapping of Megatron-Core options");

  auto where = [&](const YAML::Node &n) {
    std::ostringstream os;
    os << path << ":" << n.Mark().line + 1 << ":" << n.Mark().column + 1 << ": ";
    return os.str();
  };
  using Setter = std::function<Status(const YAML::Node &)>;
  // A setter for one scalar option; `nullable` options read null as 0.
  auto scalarOf = [&](auto &out, const char *expected, bool nullable = false) -> Setter {
    return [&out, expected, nullable, &where](const YAML::Node &n) -> Status {
      using T = std::remove_reference_t<decltype(out)>;
      if (nullable && n.IsNull()) {
        out = T{};
        return Status::ok();
      }
      try {
        out = n.as<T>();
        return Status::ok();
      } catch (const YAML::Exception &) {
        return fail(where(n), "expected ", expected, ", got '", n.Scalar(), "'");
      }
    };
  };
  auto intOf = [&](int64_t &out, bool nullable) { return scalarOf(out, "an integer", nullable); };
  auto doubleOf = [&](double &out) { return scalarOf(out, "a number"); };
  auto boolOf = [&](bool &out) { return scalarOf(out, "true or false"); };
  auto stringOf = [&](std::string &out) { return scalarOf(out, "a string"); };
  const std::map<std::string, Setter> setters = {
      {"lr", doubleOf(optimizer.lr)},
      {"min_lr", doubleOf(optimizer.minLr)},
      {"lr_warmup_iters", intOf(optimizer.warmupSteps, false)},
      {"lr_decay_iters", intOf(optimizer.decaySteps, true)},
      {"lr_decay_style", stringOf(optimizer.decayStyle)},
      {"weight_decay", doubleOf(optimizer.weightDecay)},
      {"adam_beta1", doubleOf(optimizer.beta1)},
      {"adam_beta2", doubleOf(optimizer.beta2)},
      {"adam_eps", doubleOf(optimizer.eps)},
      {"clip_grad", doubleOf(optimizer.clipGrad)},
      {"train_iters", intOf(optimizer.trainSteps, false)},
      {"decoder_first_pipeline_num_layers", intOf(config.firstStageLayers, true)},
      {"decoder_last_pipeline_num_layers", intOf(config.lastStageLayers, true)},
      {"tensor_model_parallel_size", intOf(config.tp, false)},
      {"pipeline_model_parallel_size", intOf(config.pp, false)},
      {"virtual_pipeline_model_parallel_size", intOf(config.vpp, true)},
      {"expert_model_parallel_size", intOf(config.ep, false)},
      {"context_parallel_size", intOf(config.cp, false)},
      {"data_parallel_size", intOf(config.dp, false)},
      {"world_size", intOf(config.worldSize, false)},
      {"sequence_parallel", boolOf(config.sequenceParallel)},
      {"micro_batch_size", intOf(config.microBatch, false)},
      {"global_batch_size", intOf(config.globalBatch, false)},
      {"seq_length", intOf(config.seq, false)},
  };

  for (const auto &entry : root) {
    std::string key = entry.first.as<std::string>();
    const YAML::Node &value = entry.second;
    if (auto it = setters.find(key); it != setters.end()) {
      if (Status s = it->second(value); !s)
        return s;
    } else if (pendingDefaults().count(key)) {
      config.pending[key] = value.IsNull() ? "null" : value.Scalar();
    } else if (!hintKeys().count(key)) {
      std::vector<std::string> known;
      for (const auto &[name, _] : setters)
        known.push_back(name);
      for (const auto &[name, _] : pendingDefaults())
        known.push_back(name);
      return fail(where(entry.first), "unknown option '", key, "'",
                  suggestion(key, known));
    }
  }
  return Status::ok();
}

} // namespace mt
