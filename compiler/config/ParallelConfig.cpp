// Validation of parallel sizes and of the optimizer schedule (the YAML reader
// of Megatron-Core names is ParallelConfigYaml.cpp).
#include "compiler/config/ParallelConfig.h"

#include "compiler/config/ConfigError.h"

#include "runtime/support/CheckedMath.h"
#include "runtime/support/Wording.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>
#include <sstream>

namespace mt {
namespace {

using config::fail;

/// The divisors of `n` (>= 1) in words, "1, 2, 4 or 8": the sizes a rule
/// "must divide n" leaves.
std::string divisorsText(int64_t n) {
  std::vector<int64_t> found;
  for (int64_t d = 1; d * d <= n; ++d)
    if (n % d == 0) {
      found.push_back(d);
      if (d != n / d)
        found.push_back(n / d);
    }
  std::sort(found.begin(), found.end());
  std::string text;
  for (size_t i = 0; i < found.size(); ++i)
    text += (i == 0 ? "" : i + 1 == found.size() ? " or " : ", ") + std::to_string(found[i]);
  return text;
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
                  Named{"expert_tensor_parallel_size (--etp)", c.etp},
                  Named{"world size (--world-size)", c.worldSize},
                  Named{"micro_batch_size (--micro-batch)", c.microBatch},
                  Named{"global_batch_size (--global-batch)", c.globalBatch},
                  Named{"seq_length (--seq)", c.seq}})
    if (n.value < 0)
      return fail(n.name, " must be >= 1, got ", n.value);

  return Status::ok();
}

/// Layers per virtual stage: even, or the uneven layout asked for.
Status resolveStageLayers(ParallelConfig &c, int64_t layers) {
  bool uneven = !c.ppLayout.empty() || c.firstStageLayers || c.lastStageLayers;
  int64_t chunks = c.pp * (c.vpp ? c.vpp : 1);
  if (!uneven) {
    if (chunks > layers)
      return fail("pipeline_model_parallel_size (--pp ", c.pp, ") x "
                  "virtual_pipeline_model_parallel_size (--vpp ", c.vpp ? c.vpp : 1, ") = ",
                  chunks, " exceed num_hidden_layers (", layers, "): pp x vpp may be ",
                  divisorsText(layers));
    if (layers % chunks != 0)
      return fail("num_hidden_layers (", layers, ") must be divisible by "
                  "pipeline_model_parallel_size (--pp ", c.pp, ") x "
                  "virtual_pipeline_model_parallel_size (--vpp ", c.vpp ? c.vpp : 1, ") = ",
                  chunks, ": pp x vpp may be ", divisorsText(layers),
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

/// Checks the recompute options as Megatron-Core's TransformerConfig does
/// (__post_init__) and fills in the defaults; `moe` and `moe_act` need a
/// mixture-of-experts model, and an option that would change nothing is
/// refused rather than ignored.
Status resolveRecompute(ParallelConfig &p, const ModelDims &model) {
  RecomputeConfig &r = p.recompute;
  const char *granularity = "recompute_granularity (--recompute-granularity)";
  const char *method = "recompute_method (--recompute-method)";
  const char *numLayers = "recompute_num_layers (--recompute-num-layers)";
  const char *modules = "recompute_modules (--recompute-modules)";
  for (auto [name, value] : {std::pair{granularity, &r.granularity}, {method, &r.method}})
    if (std::string error = optionValueError(name, *value); !error.empty())
      return fail(name, error);
  if (r.numLayers < 0)
    return fail(numLayers, " must be >= 1, got ", r.numLayers);
  if (r.moeLayerRecompute) { // Megatron-Core: selective, with moe added
    if (r.granularity == "full")
      return fail("moe_layer_recompute (--moe-layer-recompute) cannot be combined with ",
                  granularity, " full (which recomputes whole layers, MoE ones too): it is ",
                  "selective recompute with moe; give one of the two, or ", granularity,
                  " selective with ", modules, " moe");
    if (model.numExperts == 0)
      return fail("moe_layer_recompute (--moe-layer-recompute) recomputes mixture-of-experts "
                  "layers; this model is dense");
    r.granularity = "selective";
    if (r.modules.empty())
      r.modules = {"core_attn"};
    if (std::find(r.modules.begin(), r.modules.end(), "moe") == r.modules.end())
      r.modules.push_back("moe");
  }
  if (r.granularity.empty()) {
    if (!r.method.empty() || r.numLayers || !r.modules.empty())
      return fail(!r.method.empty() ? method : r.numLayers ? numLayers : modules,
                  " has no effect without ", granularity, " full or selective");
    return Status::ok();
  }
  if (r.granularity == "selective") {
    if (!r.method.empty() || r.numLayers)
      return fail(!r.method.empty() ? method : numLayers, " applies to ", granularity,
                  " full; selective recomputes its modules in every layer");
    if (r.modules.empty())
      r.modules = {"core_attn"};
    for (const std::string &m : r.modules) {
      if (std::string error = optionValueError(modules, m); !error.empty())
        return fail(modules, error);
      if ((m == "moe" || m == "moe_act") && model.numExperts == 0)
        return fail(modules, ": ", m, " recomputes mixture-of-experts layers; this model "
                    "is dense");
    }
    return Status::ok();
  }
  if (!r.modules.empty())
    return fail(modules, " applies to ", granularity, " selective; full recomputes whole "
                "layers");
  if (r.method.empty() && !r.numLayers) { // MCoreAdapter: every layer
    r.method = "uniform";
    r.numLayers = 1;
  }
  if (r.method.empty())
    return fail(granularity, " full needs ", method, " uniform or block");
  int64_t most = *std::max_element(p.chunkLayers.begin(), p.chunkLayers.end());
  if (r.numLayers < 1 || r.numLayers > most)
    return fail(numLayers, " must be between 1 and the layers of a pipeline chunk (", most,
                ") with ", granularity, " full and ", method, " ", r.method,
                r.numLayers ? ", got " + std::to_string(r.numLayers) : std::string(", not given"));
  return Status::ok();
}

} // namespace

void ParallelConfig::setSpeedSwitch(const std::string &key, bool on) {
  std::erase(speedSwitchesOff, key);
  if (!on)
    speedSwitchesOff.push_back(key);
}

/// The speed switches and why each given false changes nothing.
static const std::map<std::string, std::string> &speedSwitches() {
  static const char *kFusion = "mtc's kernels fuse as they see fit, with the same result "
                               "(`mtc compile --no-fuse` turns its fusions off by name)";
  static const std::map<std::string, std::string> switches = {
      {"apply_rope_fusion", kFusion},
      {"bias_activation_fusion", kFusion},
      {"moe_grouped_gemm", "the experts of a layer always run as one grouped op, with the same "
                           "result"},
      {"overlap_grad_reduce", "the CUDA backend always starts the data-parallel gradient "
                              "reduction behind the backward, with the same result "
                              "(MT_CUDA_OVERLAP=0 in mtrun's environment turns that off)"}};
  return switches;
}

const std::vector<std::string> &speedSwitchKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> names;
    for (const auto &[key, reason] : speedSwitches())
      names.push_back(key);
    return names;
  }();
  return keys;
}

std::string speedSwitchOffReason(const std::string &key) {
  auto it = speedSwitches().find(key);
  return it == speedSwitches().end() ? "" : it->second;
}

std::string optionValueError(const std::string &name, const std::string &value) {
  // The option's own name: `name` may carry its flag ("cp_comm_type (--cp-comm-type)").
  const std::string key = name.substr(0, name.find(' '));
  auto got = "'" + value + "'";
  if (key == "recompute_granularity")
    return value.empty() || value == "full" || value == "selective"
               ? ""
               : " must be full or selective (or null for no recompute), got " + got;
  if (key == "recompute_method")
    return value.empty() || value == "uniform" || value == "block"
               ? ""
               : " must be uniform or block (or null), got " + got;
  if (key == "recompute_modules") {
    static const std::set<std::string> known = {"core_attn", "mlp", "layernorm", "moe_act",
                                                "moe"};
    return known.count(value) ? ""
                              : ": unknown module " + got +
                                    " (valid: core_attn, mlp, layernorm, moe_act, moe)";
  }
  if (key == "cp_comm_type") {
    if (value == "p2p" || value == "all_gather" || value == "a2a")
      return "";
    return " " + got + ": " +
           (value == "a2a+p2p" ? "hierarchical context parallelism is not built in this version "
                                 "of mtc; use p2p, all_gather or a2a"
                               : "expected one of Megatron-Core's p2p, all_gather, a2a");
  }
  if (key == "moe_token_dispatcher_type") {
    if (value == "alltoall" || value == "allgather")
      return "";
    return " " + got + ": " +
           (value == "flex" ? "not built in this version of mtc; use alltoall or allgather"
                            : "expected one of Megatron-Core's alltoall, allgather, flex (this "
                              "version builds alltoall and allgather)");
  }
  if (key == "lr_decay_style")
    return value == "cosine" || value == "linear" || value == "constant"
               ? ""
               : " must be cosine, linear or constant, got " + got;
  return "";
}

std::vector<std::string> splitModuleList(const std::string &text) {
  std::vector<std::string> names;
  std::stringstream in(text);
  for (std::string name; std::getline(in, name, ',');) {
    size_t first = name.find_first_not_of(" \t"), last = name.find_last_not_of(" \t");
    names.push_back(first == std::string::npos ? "" : name.substr(first, last - first + 1));
  }
  return names;
}

std::string RecomputeConfig::describe() const {
  if (granularity.empty())
    return "none";
  if (granularity == "full")
    return "full, " + method + ", " + countOf(numLayers, "layer") +
           (method == "uniform" ? " per unit" : " per pipeline chunk");
  std::string out = "selective:";
  for (const std::string &m : modules)
    out += (out.back() == ':' ? " " : ", ") + m;
  return out;
}

/// Expert parallelism against the model: ep needs experts and divides
/// them; the token dispatcher is alltoall or allgather; etp defaults to tp
/// (Megatron-Core's expert_tensor_parallel_size).
Status resolveExpertLayout(ParallelConfig &c, const ModelDims &model) {
  const char *dispatcher = "moe_token_dispatcher_type (--moe-token-dispatcher-type)";
  if (std::string error = optionValueError(dispatcher, c.dispatcher()); !error.empty())
    return fail(dispatcher, error);
  if (c.moeSharedExpertOverlap && c.dispatcher() != "alltoall")
    return fail("moe_shared_expert_overlap overlaps the shared expert with the alltoall "
                "dispatcher's all-to-all; it needs moe_token_dispatcher_type "
                "(--moe-token-dispatcher-type) alltoall, got '", c.dispatcher(), "'");
  if (model.numExperts == 0 && c.ep != 1)
    return fail("expert_model_parallel_size (--ep ", c.ep, ") needs a "
                "mixture-of-experts model; this model is dense");
  if (model.numExperts != 0 && model.numExperts % c.ep != 0)
    return fail("num_experts (", model.numExperts, ") must be divisible by "
                "expert_model_parallel_size (--ep ", c.ep, "): ep may be ",
                divisorsText(model.numExperts));
  // Megatron-Core sizes an expert capacity by each rank's tokens: with the
  // sequence split over tp or cp a rank would drop other tokens than one
  // rank does (mt-partition-tp and mt-partition-cp refuse it too).
  if (model.expertCapacity && (c.tp > 1 || c.cp > 1))
    return fail("moe_expert_capacity_factor (an expert capacity, given at import) with ",
                c.tp > 1 ? "tensor_model_parallel_size (--tp " : "context_parallel_size (--cp ",
                c.tp > 1 ? c.tp : c.cp, ") is not supported yet: each rank would size the "
                "capacity by its own share of the tokens and drop other tokens than one rank "
                "would; "
                "import the model dropless (without --moe-expert-capacity-factor), or use ",
                c.tp > 1 && c.cp > 1 ? "--tp 1 and --cp 1" : c.tp > 1 ? "--tp 1" : "--cp 1");
  // A dense model has no expert layers: etp, whatever was given, is tp.
  const bool etpGiven = c.etp != 0;
  if (c.etp == 0 || model.numExperts == 0)
    c.etp = c.tp;
  if (model.expertFfn != 0 && model.expertFfn % c.etp != 0)
    return fail("moe_intermediate_size (", model.expertFfn, ", the experts' ffn width) must be "
                "divisible by expert_tensor_parallel_size (--etp ", c.etp,
                etpGiven ? "" : ", by default tensor_model_parallel_size", "): etp may be ",
                divisorsText(model.expertFfn));
  return Status::ok();
}

/// grad_reduce_in_fp32 = false where it would not round the whole gradient
/// reduction to bf16. Megatron-Core's makes the grad buffers bf16 for every
/// data-parallel reduction: the dense gradients' over dp x cp and the
/// experts' over the expert data-parallel group. The CUDA backend rounds to
/// bf16 only in the one reduction it overlaps with the last backward (the
/// optimizer's leading run over dp, runtime/cuda/NcclOverlap.h), and the
/// CPU backend never does: a layout that reduces over any other group, or
/// reduces outside that run, would half-apply the option silently.
/// Resolved configurations only (dp, etp derived).
static Status checkGradReduceInBf16(const ParallelConfig &c, const ModelDims &model) {
  if (c.gradReduceInFp32)
    return Status::ok();
  const char *option = "grad_reduce_in_fp32: false (--grad-reduce-in-bf16)";
  if (c.cp > 1)
    return fail(option, " needs context_parallel_size (--cp) 1, got --cp ", c.cp,
                ": the dense gradients also sum over cp, and the CUDA backend rounds to bf16 "
                "only the dp reduction it overlaps with backward (forward_backward "
                "communicates over cp itself); use --cp 1, or keep grad_reduce_in_fp32: true");
  // The experts leave @mesh for @expert_mesh (their own edp reduction) with
  // ep, etp or tp above 1 (mt-partition-ep); otherwise they sum over dp.
  const bool expertMesh = model.numExperts > 0 && (c.ep > 1 || c.etp > 1 || c.tp > 1);
  if (expertMesh && c.edp() > 1)
    return fail(option, " would leave the expert gradients' reduction over the expert "
                "data-parallel group (edp = tp x cp x dp / (ep x etp) = ", c.edp(),
                ") in fp32: the CUDA backend rounds to bf16 only the dp reduction; use "
                "expert_model_parallel_size (--ep) x expert_tensor_parallel_size (--etp) = tp "
                "x cp x dp = ", c.tp * c.cp * c.dp, " (edp 1), or keep grad_reduce_in_fp32: true");
  if (c.dp == 1)
    return fail(option, " needs data parallelism (--dp > 1): with dp 1 there is no gradient "
                "reduction to round to bf16 (the gradients themselves are fp32)");
  if (c.pp > 1)
    return fail(option, " needs pipeline_model_parallel_size (--pp) 1, got --pp ", c.pp,
                ": pipelines reduce the dp gradients in each stage's optimizer program, in "
                "fp32; the CUDA backend rounds to bf16 only the reduction it overlaps with "
                "backward (one stage)");
  if (c.gradOffload)
    return fail(option, " with grad_offload (--grad-offload) is not supported: the offloaded "
                "gradients are reduced in the optimizer program, in fp32; the CUDA backend "
                "rounds to bf16 only the reduction it overlaps with backward; use one of the two");
  return Status::ok();
}

/// ParallelConfig::warnings of a layout resolved against `model`;
/// `etpGiven`: expert_tensor_parallel_size as set (0: not given).
static std::vector<std::string> noEffectWarnings(const ParallelConfig &c, const ModelDims &model,
                                                 int64_t etpGiven) {
  std::vector<std::string> out;
  if (c.cp == 1 && c.cpCommType != "p2p")
    out.push_back("cp_comm_type (--cp-comm-type) " + c.cpCommType + " has no effect: "
                  "context_parallel_size (--cp) is 1, so no rank exchanges keys and values");
  const std::string dense = "this model has no experts (dense)";
  if (!c.moeTokenDispatcherType.empty() && (model.numExperts == 0 || c.ep == 1))
    out.push_back("moe_token_dispatcher_type (--moe-token-dispatcher-type) " +
                  c.moeTokenDispatcherType + " has no effect: " +
                  (model.numExperts == 0 ? dense
                                         : "expert_model_parallel_size (--ep) is 1, so every "
                                           "rank holds every expert and no token is dispatched"));
  if (c.distributedOptimizer && !c.shardsOptimizerState(model.numExperts != 0))
    out.push_back(std::string("use_distributed_optimizer (--use-distributed-optimizer) has no "
                              "effect: data_parallel_size x context_parallel_size is 1") +
                  (model.numExperts != 0 ? " and so is the experts' edp" : "") +
                  ", so there is no optimizer state to shard" +
                  (c.overlapParamGather ? " (and overlap_param_gather nothing to gather)" : ""));
  if (c.moeSharedExpertOverlap)
    out.push_back(std::string("moe_shared_expert_overlap has no effect: ") +
                  (model.sharedExpert
                       ? "this version computes the shared expert after the dispatch, not "
                         "overlapped with it (the results are the same)"
                       : "this model has no shared expert"));
  if (etpGiven != 0 && model.numExperts == 0)
    out.push_back("expert_tensor_parallel_size (--etp " + std::to_string(etpGiven) +
                  ") has no effect: " + dense);
  for (const std::string &key : c.speedSwitchesOff)
    out.push_back(key + ": false has no effect: " + speedSwitchOffReason(key));
  return out;
}

/// The rules of each size against the model that do not depend on one
/// another (tp and the heads, pp x vpp and the layers, cp and the sequence,
/// ep and etp and the experts), all checked: one broken rule is its error,
/// several are one error listing them ("2 layout errors:"). Fills the stage
/// layers and etp.
static Status resolveModelSizes(ParallelConfig &c, const ModelDims &model) {
  const int64_t tp = c.tp, cp = c.cp, seq = c.seq;
  std::vector<std::string> errors;
  auto check = [&](const Status &s) {
    if (!s)
      errors.push_back(s.message());
  };
  // Megatron-Core splits query and key/value heads alike over tp.
  const std::string validTp = "; tensor_model_parallel_size may be " +
                              divisorsText(std::gcd(model.numHeads, model.numKvHeads));
  if (model.numHeads % tp != 0)
    check(fail("num_attention_heads (", model.numHeads, ") must be divisible "
               "by tensor_model_parallel_size (--tp ", tp, ")", validTp));
  else if (model.numKvHeads % tp != 0)
    check(fail("num_key_value_heads (", model.numKvHeads, ") must be "
               "divisible by tensor_model_parallel_size (--tp ", tp, ")", validTp));
  if (c.vpp != 0 && c.pp == 1)
    check(fail("virtual_pipeline_model_parallel_size (--vpp ", c.vpp, ") needs "
               "pipeline_model_parallel_size (--pp) > 1, got --pp 1"));
  else
    check(resolveStageLayers(c, model.numLayers));
  if (cp > 1 && seq % (2 * cp) != 0) {
    const int64_t below = seq / (2 * cp) * (2 * cp);
    check(fail("seq_length (", seq, ") must be divisible by 2 x "
               "context_parallel_size (2 x ", cp, " = ", 2 * cp, "): context_parallel_size "
               "may be ", divisorsText(seq % 2 == 0 ? seq / 2 : 1), ", or seq_length ",
               below ? std::to_string(below) + " or " : "", below + 2 * cp,
               " (Megatron-Core's load balancing cuts the sequence into 2 x cp chunks)"));
  }
  check(resolveExpertLayout(c, model));
  return config::errorList(errors, "layout error");
}

/// dp and the world size from each other (Megatron-Core's MoE parallel
/// folding: world = pp x dp x cp x tp; ep and etp divide the same ranks of
/// expert layers), or dp as the fewest ranks that hold ep x etp; a dp chosen
/// so (neither dp nor a world size given: !`dpGiven`) is noted; an etp not
/// given (`etpGiven` false) is named as tp's default.
static Status resolveMeshSizes(ParallelConfig &c, bool dpGiven, bool etpGiven) {
  const int64_t tp = c.tp, pp = c.pp, cp = c.cp, ep = c.ep, etp = c.etp;
  int64_t &dp = c.dp, &worldSize = c.worldSize;
  const int64_t modelParallel = tp * pp * cp;
  if (worldSize != 0 && worldSize % modelParallel != 0)
    return fail("world size (", worldSize, ") must be divisible by tp (", tp,
                ") x pp (", pp, ") x cp (", cp, ") = ", modelParallel);
  if (dp == 0 && worldSize != 0)
    dp = worldSize / modelParallel;
  else if (dp == 0) // the fewest ranks that hold ep x etp
    dp = ep * etp / std::gcd(ep * etp, tp * cp);
  if (worldSize == 0)
    worldSize = dp * modelParallel;
  else if (worldSize != dp * modelParallel)
    return fail("world size (", worldSize, ") must equal tp (", tp, ") x pp (",
                pp, ") x cp (", cp, ") x dp (", dp, ") = ", dp * modelParallel);
  if ((dp * cp * tp) % (ep * etp) != 0)
    return fail("expert_model_parallel_size (--ep ", ep, ") x expert_tensor_parallel_size (--etp ",
                etp, etpGiven ? "" : ", by default tensor_model_parallel_size", ") = ", ep * etp,
                " must divide tp (", tp, ") x cp (", cp, ") x dp (", dp, ") = ", dp * cp * tp,
                ": expert layers fold over the ranks of a pipeline stage; ep x etp may be ",
                divisorsText(dp * cp * tp), " (or more ranks)",
                !etpGiven && etp > 1 ? "; expert_tensor_parallel_size (--etp) 1 splits no "
                                       "expert over tp"
                                     : "");
  if (!dpGiven && dp > 1)
    c.notes.push_back("data_parallel_size (not given) is " + std::to_string(dp) +
                      ", the smallest at which tp (" + std::to_string(tp) + ") x cp (" +
                      std::to_string(cp) + ") x dp is a multiple of expert_model_parallel_size "
                      "(--ep " + std::to_string(ep) + ") x expert_tensor_parallel_size (--etp " +
                      std::to_string(etp) + "): the plan runs on " + std::to_string(worldSize) +
                      " ranks; --dp or a world size sets it");
  return Status::ok();
}

/// Batch and sequence are static in the model: a given micro_batch_size or
/// seq_length must be the model's (both mismatches told at once, with the
/// one import that mends them); ungiven ones are taken from it.
static Status resolveInputShape(ParallelConfig &c, const ModelDims &model) {
  const bool batchDiffers = c.microBatch != 0 && c.microBatch != model.microBatch;
  const bool seqDiffers = c.seq != 0 && c.seq != model.seq;
  if (batchDiffers || seqDiffers) {
    std::string what, flags;
    if (batchDiffers) {
      what = "micro_batch_size (--micro-batch) is " + std::to_string(c.microBatch) +
             " but the model's inputs have micro-batch " + std::to_string(model.microBatch);
      flags = " --micro-batch " + std::to_string(c.microBatch);
    }
    if (seqDiffers) {
      what += std::string(batchDiffers ? ", and " : "") + "seq_length (--seq) is " +
              std::to_string(c.seq) + " but the model's inputs have sequence length " +
              std::to_string(model.seq);
      flags += " --seq " + std::to_string(c.seq);
    }
    return fail(what, "; re-import with `mtc import-hf", flags, "`");
  }
  if (c.microBatch == 0)
    c.microBatch = model.microBatch;
  if (c.seq == 0)
    c.seq = model.seq;
  return Status::ok();
}

/// The options that need or exclude one another (sp and tp,
/// overlap_param_gather and the distributed optimizer or param_offload),
/// recompute, and cp_comm_type against the heads.
static Status checkOptionRules(ParallelConfig &c, const ModelDims &model) {
  if (c.sequenceParallel && c.tp == 1)
    return fail("sequence_parallel (--sp) needs tensor_model_parallel_size "
                "(--tp) > 1, got --tp 1");
  if (c.overlapParamGather && !c.distributedOptimizer)
    return fail("overlap_param_gather (--overlap-param-gather) needs use_distributed_optimizer "
                "(--use-distributed-optimizer): without it there is no parameter all-gather");
  // The deferred all-gathers would fill staged buckets after the copies
  // that take them to the host, or keep every bucket staged until the next
  // forward: the device would hold the whole model param_offload moves out.
  if (c.paramOffload && c.overlapParamGather)
    return fail("overlap_param_gather (--overlap-param-gather) with param_offload "
                "(--param-offload) is not supported: the weights all-gathered behind the next "
                "forward would have to stay on the device; use one of the two");
  if (Status s = resolveRecompute(c, model); !s)
    return s;
  const char *commType = "cp_comm_type (--cp-comm-type)";
  if (std::string error = optionValueError(commType, c.cpCommType); !error.empty())
    return fail(commType, error);
  // a2a gives each cp rank 1/cp of the heads of its tp rank, queries and
  // keys/values alike (Transformer Engine's AttnFuncWithCPAndQKVOA2A).
  if (c.cp > 1 && c.cpCommType == "a2a" &&
      ((model.numHeads / c.tp) % c.cp != 0 || (model.numKvHeads / c.tp) % c.cp != 0))
    return fail("cp_comm_type a2a splits the attention heads over context_parallel_size (--cp ",
                c.cp, "): num_attention_heads (", model.numHeads, ") and num_key_value_heads (",
                model.numKvHeads, ") divided by tensor_model_parallel_size (--tp ", c.tp,
                ") must be divisible by it; use p2p or all_gather");
  return Status::ok();
}

Status ParallelConfig::resolve(const ModelDims &model) {
  warnings.clear();
  notes.clear();
  const int64_t etpGiven = etp;
  const bool dpGiven = dp != 0 || worldSize != 0;
  if (Status s = checkRanges(*this); !s)
    return s;
  // Every product formed below is a sub-product of this one (all factors
  // are >= 1), so none overflows once it fits.
  if (!checkedProduct({tp, pp, std::max<int64_t>(vpp, 1), cp, ep, std::max<int64_t>(etp, 1),
                       std::max<int64_t>(dp, 1),
                       std::max<int64_t>(worldSize, 1), std::max<int64_t>(microBatch, 1), 2}))
    return fail("tp (", tp, ") x pp (", pp, ") x vpp (", vpp, ") x cp (", cp, ") x ep (", ep,
                ") x etp (", etp, ") x dp (", dp, ") x world size (", worldSize, ") x micro_batch_size (",
                microBatch, ") overflows 64-bit integers: no layout has that many ranks");
  if (Status s = resolveInputShape(*this, model); !s)
    return s;

  // The sizes against the model, rule by rule: every one broken is told.
  if (Status s = resolveModelSizes(*this, model); !s)
    return s;
  if (Status s = checkOptionRules(*this, model); !s)
    return s;

  if (Status s = resolveMeshSizes(*this, dpGiven, etpGiven != 0); !s)
    return s;
  warnings = noEffectWarnings(*this, model, etpGiven);

  // Every one of the dp ranks of a model replica reads its own micro-batches
  // (with ep too: the ranks of an ep group read different data).
  if (globalBatch == 0)
    globalBatch = microBatch * dp;
  // The plan lists each micro-batch's programs in the schedule (about 90
  // bytes each, times the virtual stages): a typo of a few digits must not
  // exhaust the memory. Checked first: the nearest valid batch below could
  // overflow.
  constexpr int64_t kMaxMicroBatches = int64_t(1) << 17;
  if (globalBatch / (microBatch * dp) > kMaxMicroBatches)
    return fail("the number of micro-batches per step (global_batch_size ", globalBatch,
                " / (micro_batch_size ", microBatch, " x dp ", dp, ")) must be at most ",
                kMaxMicroBatches, ": the plan schedules each one; lower global_batch_size, or "
                "raise micro_batch_size or dp");
  if (globalBatch % (microBatch * dp) != 0) {
    const int64_t step = microBatch * dp, below = globalBatch / step * step;
    return fail("global_batch_size (", globalBatch, ") must be divisible by "
                "micro_batch_size (", microBatch, ") x data parallel size (", dp, ") = ", step,
                "; the nearest valid: ", below ? std::to_string(below) + " and " : "",
                below + step);
  }
  if (vpp != 0 && numMicroBatches() % pp != 0)
    return fail("with virtual pipeline stages, the number of micro-batches (",
                numMicroBatches(), " = global_batch_size ", globalBatch,
                " / (micro_batch_size ", microBatch, " x dp ", dp,
                ")) must be a multiple of pp (", pp, ")");
  return checkGradReduceInBf16(*this, model);
}

namespace {

/// An option as the messages of resolve() and validate() name it.
struct OptionName {
  const char *key, *flag, *shortName; // shortName: "" where messages use none
};

const OptionName kOptionNames[] = {
    {"tensor_model_parallel_size", "--tp", "tp"},
    {"pipeline_model_parallel_size", "--pp", "pp"},
    {"virtual_pipeline_model_parallel_size", "--vpp", "vpp"},
    {"context_parallel_size", "--cp", "cp"},
    {"cp_comm_type", "--cp-comm-type", ""},
    {"expert_model_parallel_size", "--ep", "ep"},
    {"expert_tensor_parallel_size", "--etp", "etp"},
    {"moe_token_dispatcher_type", "--moe-token-dispatcher-type", ""},
    {"moe_shared_expert_overlap", "", ""},
    {"data_parallel_size", "--dp", "dp"},
    {"world_size", "--world-size", "world size"},
    {"micro_batch_size", "--micro-batch", ""},
    {"global_batch_size", "--global-batch", ""},
    {"seq_length", "--seq", ""},
    {"sequence_parallel", "--sp", ""},
    {"use_distributed_optimizer", "--use-distributed-optimizer", ""},
    {"overlap_param_gather", "--overlap-param-gather", ""},
    {"grad_reduce_in_fp32", "--grad-reduce-in-bf16", ""},
    {"optimizer_offload", "--optimizer-offload", ""},
    {"grad_offload", "--grad-offload", ""},
    {"param_offload", "--param-offload", ""},
    {"recompute_granularity", "--recompute-granularity", ""},
    {"recompute_method", "--recompute-method", ""},
    {"recompute_num_layers", "--recompute-num-layers", ""},
    {"recompute_modules", "--recompute-modules", ""},
    {"moe_layer_recompute", "--moe-layer-recompute", ""},
    {"decoder_first_pipeline_num_layers", "", ""},
    {"decoder_last_pipeline_num_layers", "", ""},
    {"lr", "--lr", ""},
    {"min_lr", "--min-lr", ""},
    {"lr_warmup_iters", "--warmup-steps", ""},
    {"lr_decay_iters", "--decay-steps", ""},
    {"lr_decay_style", "--lr-decay-style", ""},
    {"weight_decay", "--weight-decay", ""},
    {"adam_beta1", "--adam-beta1", ""},
    {"adam_beta2", "--adam-beta2", ""},
    {"adam_eps", "--adam-eps", ""},
    {"clip_grad", "--clip-grad", ""},
    {"train_iters", "--train-steps", ""},
};

bool wordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

/// Whether `message` holds `word` with no word character before it and,
/// after it, `next` (a flag: neither a word character nor '-').
bool namesWord(const std::string &message, const std::string &word, const std::string &next) {
  for (size_t at = message.find(word); at != std::string::npos;
       at = message.find(word, at + 1)) {
    size_t end = at + word.size();
    bool before = at == 0 || !wordChar(message[at - 1]);
    bool after = next.empty() ? end == message.size() ||
                                    !(wordChar(message[end]) || message[end] == '-')
                              : message.compare(end, next.size(), next) == 0;
    if (before && after)
      return true;
  }
  return false;
}

} // namespace

std::string optionKeyOfFlag(const std::string &flag) {
  for (const OptionName &o : kOptionNames)
    if (*o.flag && flag == o.flag)
      return o.key;
  return "";
}

std::string flagOfOptionKey(const std::string &key) {
  for (const OptionName &o : kOptionNames)
    if (key == o.key)
      return o.flag;
  return "";
}

std::string notAFlag(const std::string &arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    return "";
  const std::string key = arg.substr(0, eq), flag = flagOfOptionKey(key);
  return "'" + arg + "': key=value overrides are `mtc train`'s; mtc compile takes flags" +
         (flag.empty() ? std::string(" (`mtc compile --help` lists them)")
                       : ": " + flag + " " + arg.substr(eq + 1)) +
         ", and --config FILE for Megatron-Core's keys in a file";
}

std::string givenAtNote(const std::string &key, std::string where, const std::string &as) {
  if (where.size() >= 2 && where.compare(where.size() - 2, 2, ": ") == 0)
    where.resize(where.size() - 2);
  if (as.empty() || as == key)
    return key + " was given at " + where;
  return key + " is " + as + ", given at " + where;
}

std::string withGivenAt(const std::string &message,
                        const std::map<std::string, std::string> &givenAt) {
  std::string notes;
  for (const OptionName &o : kOptionNames) {
    auto it = givenAt.find(o.key);
    if (it == givenAt.end())
      continue;
    if (namesWord(message, o.key, "") || (*o.flag && namesWord(message, o.flag, "")) ||
        (*o.shortName && namesWord(message, o.shortName, " (")))
      notes += "\nnote: " + it->second;
  }
  return message + notes;
}

std::string sequenceParallelOffAtTp1(ParallelConfig &c, const std::string &where) {
  if (!c.sequenceParallel || c.tp != 1)
    return "";
  c.sequenceParallel = false;
  return where + "sequence_parallel: true needs tensor_model_parallel_size > 1, and it is 1: "
         "sequence parallelism is off (as Megatron-Core turns it off); set "
         "tensor_model_parallel_size >= 2 for it, or remove the key";
}

Status OptimizerConfig::validate() const {
  // YAML and the flags both read .inf/.nan (and inf/nan): never a setting.
  struct Named { const char *name; double value; };
  for (Named n : {Named{"lr (--lr)", lr}, Named{"min_lr (--min-lr)", minLr},
                  Named{"weight_decay (--weight-decay)", weightDecay},
                  Named{"adam_beta1 (--adam-beta1)", beta1}, Named{"adam_beta2 (--adam-beta2)", beta2},
                  Named{"adam_eps (--adam-eps)", eps},
                  Named{"clip_grad (--clip-grad)", clipGrad}}) {
    if (!std::isfinite(n.value))
      return fail(n.name, " must be a finite number, got ", n.value);
    if (!fitsFp32(n.value))
      return fail(n.name, " ", n.value, " ", kOutsideFp32);
  }
  if (!(lr > 0))
    return fail("lr (--lr) must be > 0, got ", lr);
  if (!(minLr >= 0) || minLr > lr)
    return fail("min_lr (--min-lr) must be in [0, lr = ", lr, "], got ", minLr);
  if (trainSteps < 1)
    return fail("train_iters (--train-steps) must be >= 1, got ", trainSteps);
  if (warmupSteps < 0)
    return fail("lr_warmup_iters (--warmup-steps) must be >= 0, got ", warmupSteps);
  int64_t decay = decaySteps ? decaySteps : trainSteps;
  // Megatron-Core's scheduler asserts warmup < decay; transformers' (hf_*)
  // takes any warm-up (longer than the run: its slope all run long).
  const bool transformersStyle = decayStyle.rfind("hf_", 0) == 0;
  if (!transformersStyle && decay <= warmupSteps)
    return fail("lr_decay_iters (", decay,
                decaySteps ? "" : ": train_iters (--train-steps), as none was given",
                ") must be > lr_warmup_iters (", warmupSteps, ")");
  // hf_*: transformers' schedules, set by the training front-end (TrainConfig.h).
  static const std::set<std::string> styles = {
      "cosine", "linear", "constant", "hf_constant", "hf_constant_with_warmup",
      "hf_linear", "hf_cosine", "hf_cosine_with_min_lr"};
  if (const char *style = "lr_decay_style (--lr-decay-style)"; !styles.count(decayStyle))
    return fail(style, optionValueError(style, decayStyle));
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

} // namespace mt
