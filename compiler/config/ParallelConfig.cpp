// Validation of parallel sizes and the YAML reader for Megatron-Core names.
#include "compiler/config/ParallelConfig.h"

#include "runtime/support/CheckedMath.h"
#include "runtime/support/Wording.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>
#include <sstream>

namespace mt {
namespace {

template <typename... Args> Status fail(Args &&...args) {
  std::ostringstream os;
  (os << ... << args);
  return Status::error(os.str());
}

/// Performance hints (booleans) that never change the result: their value
/// is checked to be a boolean, then not used.
const std::set<std::string> &hintKeys() {
  static const std::set<std::string> keys = {
      "bias_activation_fusion", "apply_rope_fusion", "moe_grouped_gemm", "overlap_grad_reduce"};
  return keys;
}

/// "; did you mean 'x'?" for a close known name, else the list of names.
std::string suggestion(const std::string &key, std::vector<std::string> known) {
  std::sort(known.begin(), known.end());
  if (std::string best = closestName(key, known); !best.empty())
    return "; did you mean '" + best + "'?";
  std::string all;
  for (const std::string &name : known)
    all += (all.empty() ? "" : ", ") + name;
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
  if (!r.granularity.empty() && r.granularity != "full" && r.granularity != "selective")
    return fail(granularity, " must be full or selective (or null: none), got '",
                r.granularity, "'");
  if (!r.method.empty() && r.method != "uniform" && r.method != "block")
    return fail(method, " must be uniform or block (or null), got '", r.method, "'");
  if (r.numLayers < 0)
    return fail(numLayers, " must be >= 1, got ", r.numLayers);
  if (r.moeLayerRecompute) { // Megatron-Core: selective, with moe added
    if (r.granularity == "full")
      return fail("moe_layer_recompute (--moe-layer-recompute) cannot be combined with ",
                  granularity, " full");
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
    static const std::set<std::string> known = {"core_attn", "mlp", "layernorm", "moe_act",
                                                "moe"};
    for (const std::string &m : r.modules) {
      if (!known.count(m))
        return fail(modules, ": unknown module '", m,
                    "' (valid: core_attn, mlp, layernorm, moe_act, moe)");
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
  if (c.moeTokenDispatcherType != "alltoall" && c.moeTokenDispatcherType != "allgather")
    return fail("moe_token_dispatcher_type (--moe-token-dispatcher-type) '",
                c.moeTokenDispatcherType, "': ",
                c.moeTokenDispatcherType == "flex"
                    ? "not built in this version of mtc; use alltoall or allgather"
                    : "expected one of Megatron-Core's alltoall, allgather, flex (this version "
                      "builds alltoall and allgather)");
  if (c.moeSharedExpertOverlap && c.moeTokenDispatcherType != "alltoall")
    return fail("moe_shared_expert_overlap overlaps the shared expert with the alltoall "
                "dispatcher's all-to-all; it needs moe_token_dispatcher_type "
                "(--moe-token-dispatcher-type) alltoall, got '", c.moeTokenDispatcherType, "'");
  if (model.numExperts == 0 && c.ep != 1)
    return fail("expert_model_parallel_size (--ep ", c.ep, ") needs a "
                "mixture-of-experts model; this model is dense");
  if (model.numExperts != 0 && model.numExperts % c.ep != 0)
    return fail("num_experts (", model.numExperts, ") must be divisible by "
                "expert_model_parallel_size (--ep ", c.ep, ")");
  if (c.etp == 0)
    c.etp = c.tp;
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

Status ParallelConfig::resolve(const ModelDims &model) {
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
  if (overlapParamGather && !distributedOptimizer)
    return fail("overlap_param_gather (--overlap-param-gather) needs use_distributed_optimizer "
                "(--use-distributed-optimizer): without it there is no parameter all-gather");
  // The deferred all-gathers would fill staged buckets after the copies
  // that take them to the host, or keep every bucket staged until the next
  // forward: the device would hold the whole model param_offload moves out.
  if (paramOffload && overlapParamGather)
    return fail("overlap_param_gather (--overlap-param-gather) with param_offload "
                "(--param-offload) is not supported: the weights all-gathered behind the next "
                "forward would have to stay on the device; use one of the two");
  if (vpp != 0 && pp == 1)
    return fail("virtual_pipeline_model_parallel_size (--vpp ", vpp, ") needs "
                "pipeline_model_parallel_size (--pp) > 1, got --pp 1");
  if (Status s = resolveStageLayers(*this, model.numLayers); !s)
    return s;
  if (Status s = resolveRecompute(*this, model); !s)
    return s;
  if (cp > 1 && seq % (2 * cp) != 0)
    return fail("seq_length (", seq, ") must be divisible by 2 x "
                "context_parallel_size (2 x ", cp, " = ", 2 * cp, ")");
  if (cpCommType != "p2p" && cpCommType != "all_gather" && cpCommType != "a2a")
    return fail("cp_comm_type (--cp-comm-type) '", cpCommType, "': ",
                cpCommType == "a2a+p2p"
                    ? "hierarchical context parallelism is not built in this version of mtc; "
                      "use p2p, all_gather or a2a"
                    : "expected one of Megatron-Core's p2p, all_gather, a2a");
  // a2a gives each cp rank 1/cp of the heads of its tp rank, queries and
  // keys/values alike (Transformer Engine's AttnFuncWithCPAndQKVOA2A).
  if (cp > 1 && cpCommType == "a2a" &&
      ((model.numHeads / tp) % cp != 0 || (model.numKvHeads / tp) % cp != 0))
    return fail("cp_comm_type a2a splits the attention heads over context_parallel_size (--cp ",
                cp, "): num_attention_heads (", model.numHeads, ") and num_key_value_heads (",
                model.numKvHeads, ") divided by tensor_model_parallel_size (--tp ", tp,
                ") must be divisible by it; use p2p or all_gather");

  if (Status s = resolveExpertLayout(*this, model); !s)
    return s;

  // MoE parallel folding: world = pp * dp * cp * tp; ep and etp divide the
  // same ranks differently in expert layers.
  int64_t modelParallel = tp * pp * cp;
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
                etp, ") = ", ep * etp, " must divide tp (", tp, ") x cp (", cp, ") x dp (", dp,
                ") = ", dp * cp * tp, ": expert layers fold over the ranks of a pipeline stage");

  // Every one of the dp ranks of a model replica reads its own micro-batches
  // (with ep too: the ranks of an ep group read different data).
  if (globalBatch == 0)
    globalBatch = microBatch * dp;
  if (globalBatch % (microBatch * dp) != 0)
    return fail("global_batch_size (", globalBatch, ") must be divisible by "
                "micro_batch_size (", microBatch, ") x data parallel size (", dp, ") = ",
                microBatch * dp);
  if (vpp != 0 && numMicroBatches() % pp != 0)
    return fail("with virtual pipeline stages, the number of micro-batches (",
                numMicroBatches(), " = global_batch_size ", globalBatch,
                " / (micro_batch_size ", microBatch, " x dp ", dp,
                ")) must be a multiple of pp (", pp, ")");
  return checkGradReduceInBf16(*this, model);
}

Status OptimizerConfig::validate() const {
  // YAML and the flags both read .inf/.nan (and inf/nan): never a setting.
  struct Named { const char *name; double value; };
  for (Named n : {Named{"lr (--lr)", lr}, Named{"min_lr (--min-lr)", minLr},
                  Named{"weight_decay (--weight-decay)", weightDecay},
                  Named{"adam_beta1 (--adam-beta1)", beta1}, Named{"adam_beta2 (--adam-beta2)", beta2},
                  Named{"adam_eps (--adam-eps)", eps}, Named{"clip_grad (--clip-grad)", clipGrad}})
    if (!std::isfinite(n.value))
      return fail(n.name, " must be a finite number, got ", n.value);
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
  // hf_*: transformers' schedules, set by the training front-end (TrainConfig.h).
  static const std::set<std::string> styles = {
      "cosine", "linear", "constant", "hf_constant", "hf_constant_with_warmup",
      "hf_linear", "hf_cosine", "hf_cosine_with_min_lr"};
  if (!styles.count(decayStyle))
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

namespace {

/// "file:line:col: " of a node, for messages.
std::string whereOf(const std::string &path, const YAML::Node &n) {
  std::ostringstream os;
  os << path << ":" << n.Mark().line + 1 << ":" << n.Mark().column + 1 << ": ";
  return os.str();
}

/// What a node holds, for messages: the scalar as written, or its kind.
std::string spellingOf(const YAML::Node &n) {
  if (n.IsScalar())
    return "'" + n.Scalar() + "'";
  if (n.IsNull())
    return "null";
  return n.IsSequence() ? "a list" : "a mapping";
}

/// Reads `n` through yaml-cpp's typed conversion, so that a value is read by
/// its type whatever its YAML spelling (True/yes/on, 0x10, 3e-4, .inf) and
/// anything else is refused with its position and what was expected.
template <typename T>
Status readTyped(const std::string &path, const YAML::Node &n, const char *expected, T &out) {
  try {
    if (n.IsScalar()) {
      out = n.as<T>();
      return Status::ok();
    }
  } catch (const YAML::Exception &) {
  }
  return fail(whereOf(path, n), "expected ", expected, ", got ", spellingOf(n));
}

using Setter = std::function<Status(const std::string &path, const YAML::Node &)>;

/// A setter of one typed option; `nullable` options read null as 0.
template <typename T> Setter typedSetter(T &out, const char *expected, bool nullable = false) {
  return [&out, expected, nullable](const std::string &path, const YAML::Node &n) {
    if (nullable && n.IsNull()) {
      out = T{};
      return Status::ok();
    }
    return readTyped(path, n, expected, out);
  };
}

/// recompute_modules: a list of names, or one comma-separated string
/// (MCoreAdapter's spelling); null: not given.
Setter moduleList(std::vector<std::string> &out) {
  return [&out](const std::string &path, const YAML::Node &n) {
    out.clear();
    if (n.IsNull())
      return Status::ok();
    std::vector<std::string> items;
    if (n.IsSequence()) {
      for (const YAML::Node &item : n) {
        std::string name;
        if (Status s = readTyped(path, item, "a module name", name); !s)
          return s;
        items.push_back(name);
      }
    } else {
      std::string text;
      if (Status s = readTyped(path, n, "a list of module names", text); !s)
        return s;
      items = splitModuleList(text);
    }
    out = items;
    return Status::ok();
  };
}

/// The options this version applies, by Megatron-Core name.
std::map<std::string, Setter> optionSetters(ParallelConfig &config, OptimizerConfig &optimizer) {
  auto integer = [](int64_t &out, bool nullable = false) {
    return typedSetter(out, "an integer", nullable);
  };
  auto number = [](double &out) { return typedSetter(out, "a number"); };
  return {
      {"lr", number(optimizer.lr)},
      {"min_lr", number(optimizer.minLr)},
      {"lr_warmup_iters", integer(optimizer.warmupSteps)},
      {"lr_decay_iters", integer(optimizer.decaySteps, true)},
      {"lr_decay_style", typedSetter(optimizer.decayStyle, "a string")},
      {"weight_decay", number(optimizer.weightDecay)},
      {"adam_beta1", number(optimizer.beta1)},
      {"adam_beta2", number(optimizer.beta2)},
      {"adam_eps", number(optimizer.eps)},
      {"clip_grad", number(optimizer.clipGrad)},
      {"train_iters", integer(optimizer.trainSteps)},
      {"decoder_first_pipeline_num_layers", integer(config.firstStageLayers, true)},
      {"decoder_last_pipeline_num_layers", integer(config.lastStageLayers, true)},
      {"tensor_model_parallel_size", integer(config.tp)},
      {"pipeline_model_parallel_size", integer(config.pp)},
      {"virtual_pipeline_model_parallel_size", integer(config.vpp, true)},
      {"expert_model_parallel_size", integer(config.ep)},
      {"expert_tensor_parallel_size", integer(config.etp, true)},
      {"context_parallel_size", integer(config.cp)},
      {"data_parallel_size", integer(config.dp)},
      {"world_size", integer(config.worldSize)},
      {"sequence_parallel", typedSetter(config.sequenceParallel, "true or false")},
      {"cp_comm_type", typedSetter(config.cpCommType, "a string")},
      {"moe_token_dispatcher_type", typedSetter(config.moeTokenDispatcherType, "a string")},
      {"moe_shared_expert_overlap", typedSetter(config.moeSharedExpertOverlap, "true or false")},
      {"use_distributed_optimizer", typedSetter(config.distributedOptimizer, "true or false")},
      {"grad_reduce_in_fp32", typedSetter(config.gradReduceInFp32, "true or false")},
      {"deterministic_mode", typedSetter(config.deterministicMode, "true or false")},
      {"overlap_param_gather", typedSetter(config.overlapParamGather, "true or false")},
      {"calculate_per_token_loss", typedSetter(config.perTokenLoss, "true or false")},
      {"optimizer_offload", typedSetter(config.optimizerOffload, "true or false")},
      {"grad_offload", typedSetter(config.gradOffload, "true or false")},
      {"param_offload", typedSetter(config.paramOffload, "true or false")},
      {"micro_batch_size", integer(config.microBatch)},
      {"global_batch_size", integer(config.globalBatch)},
      {"seq_length", integer(config.seq)},
      {"recompute_granularity", typedSetter(config.recompute.granularity, "a string", true)},
      {"recompute_method", typedSetter(config.recompute.method, "a string", true)},
      {"recompute_num_layers", integer(config.recompute.numLayers, true)},
      {"recompute_modules", moduleList(config.recompute.modules)},
      {"moe_layer_recompute", typedSetter(config.recompute.moeLayerRecompute, "true or false")},
  };
}

/// The error for a key nobody knows, with the closest known name.
Status unknownKey(const std::string &path, const YAML::Node &keyNode, const std::string &key,
                  const std::map<std::string, Setter> &setters) {
  std::vector<std::string> known;
  for (const auto &[name, _] : setters)
    known.push_back(name);
  return fail(whereOf(path, keyNode), "unknown option '", key, "'", suggestion(key, known));
}

/// `bf16`: a plan holds no precision; the backend that runs it decides
/// (CUDA: bf16 compute with fp32 master weights, CPU: fp32). true says what
/// the CUDA backend does anyway; false cannot be kept by the plan.
Status readBf16(const std::string &path, const YAML::Node &keyNode, const YAML::Node &value) {
  bool bf16 = true;
  if (Status s = readTyped(path, value, "true or false", bf16); !s)
    return s;
  if (!bf16)
    return fail(whereOf(path, keyNode),
                "bf16: false cannot be kept by a plan: its precision is the backend's that runs "
                "it (mtrun --backend cpu trains in fp32; the CUDA backend always computes in "
                "bf16 with fp32 master weights). Remove the key, or use mtc train, whose "
                "bf16: false picks the CPU backend");
  return Status::ok();
}

} // namespace

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

  const std::map<std::string, Setter> setters = optionSetters(config, optimizer);
  std::map<std::string, int> firstLine; // a key given twice would hide one value
  for (const auto &entry : root) {
    const YAML::Node &keyNode = entry.first, &value = entry.second;
    if (!keyNode.IsScalar())
      return fail(whereOf(path, keyNode), "expected an option name, got ", spellingOf(keyNode));
    const std::string key = keyNode.Scalar();
    if (auto [it, added] = firstLine.try_emplace(key, keyNode.Mark().line + 1); !added)
      return fail(whereOf(path, keyNode), "option '", key, "' is given twice (first on line ",
                  it->second, ")");
    if (auto it = setters.find(key); it != setters.end()) {
      if (Status s = it->second(path, value); !s)
        return s;
    } else if (key == "bf16") {
      if (Status s = readBf16(path, keyNode, value); !s)
        return s;
    } else if (hintKeys().count(key)) {
      bool hint = false;
      if (Status s = readTyped(path, value, "true or false", hint); !s)
        return s;
    } else {
      return unknownKey(path, keyNode, key, setters);
    }
  }
  return Status::ok();
}

} // namespace mt
