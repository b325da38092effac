// ParallelConfig: how one training step is laid out over ranks, from flags or
// a Megatron-style YAML file, validated against the model up front.
#ifndef MT_COMPILER_CONFIG_PARALLELCONFIG_H
#define MT_COMPILER_CONFIG_PARALLELCONFIG_H

#include "runtime/support/Status.h"

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mt {

/// The dimensions of a model that parallel layouts must divide.
struct ModelDims {
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t numExperts = 0; // 0 for a dense model
  /// Mixture-of-experts layers, their routed slots per token (top_k) and
  /// the rows' width (hidden size), for the all-to-all volume.
  int64_t moeLayers = 0, topK = 0, hidden = 0;
  /// The experts' ffn width (moe_intermediate_size), which etp splits.
  int64_t expertFfn = 0;
  bool expertCapacity = false; // moe_expert_capacity_factor was given at import
  bool sharedExpert = false;   // a shared expert beside the routed ones (Qwen2-MoE)
  int64_t vocabSize = 0;
  int64_t microBatch = 0; // the model's static input shape [microBatch, seq]
  int64_t seq = 0;
};

/// Megatron-Core's activation recompute options (transformer_config.py:
/// recompute_granularity, recompute_method, recompute_num_layers,
/// recompute_modules, moe_layer_recompute). Empty / 0: not given.
struct RecomputeConfig {
  std::string granularity;          // "full" or "selective"
  std::string method;               // full: "uniform" or "block"
  int64_t numLayers = 0;            // full: layers per unit (uniform) or per chunk (block)
  std::vector<std::string> modules; // selective: core_attn, mlp, layernorm, moe_act, moe
  bool moeLayerRecompute = false;   // deprecated spelling of selective + moe

  bool enabled() const { return !granularity.empty(); }
  /// In words, for --explain: "full, uniform, 1 layer per unit",
  /// "selective: core_attn, mlp", "none".
  std::string describe() const;
};

/// "core_attn, mlp" -> {"core_attn", "mlp"}: recompute_modules given as
/// one comma-separated string (MCoreAdapter's spelling, and the flag's).
std::vector<std::string> splitModuleList(const std::string &text);

/// Sizes of the mesh and of the batch, with Megatron-Core's MoE parallel
/// folding: attention and dense layers use tp·cp·dp·pp, expert layers
/// etp·ep·edp·pp over the same ranks, so world = pp·dp·cp·tp and
/// dp = world / (tp·pp·cp) (ep does not divide the world: the ranks of an
/// ep group read different data). A value of 0 means "not given": derived
/// from the others (dp, world size, global batch, etp = tp) or taken from
/// the model (micro-batch, seq).
struct ParallelConfig {
  int64_t tp = 1, pp = 1, vpp = 0, ep = 1, etp = 0, cp = 1, dp = 0, worldSize = 0;
  bool sequenceParallel = false;
  /// Megatron-Core's cp_comm_type: how attention under context parallelism
  /// sees the other cp ranks' keys and values: p2p (the ring, Megatron-Core's
  /// default), all_gather, or a2a (heads exchanged: each rank attends over
  /// the whole sequence for 1/cp of the heads).
  std::string cpCommType = "p2p";
  /// Megatron-Core's moe_token_dispatcher_type: how the tokens of MoE
  /// layers reach the ranks of their experts under expert parallelism:
  /// alltoall (counts exchanged, then all-to-all-v of the rows and back)
  /// or allgather (every rank's rows gathered over ep, the local experts
  /// computed, then reduce-scatter); flex is refused by name. Empty: not
  /// given, alltoall (dispatcher()); one given where nothing is dispatched
  /// is warned of.
  std::string moeTokenDispatcherType;
  const std::string &dispatcher() const {
    static const std::string byDefault = "alltoall";
    return moeTokenDispatcherType.empty() ? byDefault : moeTokenDispatcherType;
  }
  /// Megatron-Core's moe_shared_expert_overlap: compute the shared expert
  /// (Qwen2-MoE) while the alltoall dispatcher's all-to-all runs. A
  /// scheduling hint that never changes the result; this version accepts it
  /// (with the alltoall dispatcher, as Megatron-Core) and does not reorder
  /// anything for it yet.
  bool moeSharedExpertOverlap = false;
  /// Megatron-Core's speed switches (speedSwitchKeys()) given false, in
  /// order: mtc's kernels decide that work for themselves, so resolve()
  /// warns that the value has no effect.
  std::vector<std::string> speedSwitchesOff;
  /// Records a speed switch's value (the last one given counts).
  void setSpeedSwitch(const std::string &key, bool on);
  /// Megatron-Core's use_distributed_optimizer: gradients reduce-scattered
  /// in buckets over dp, each rank updating 1/dp of the weights and AdamW
  /// state (mt-build-optimizer).
  bool distributedOptimizer = false;
  /// Megatron-Core's grad_reduce_in_fp32: the dp gradient reduction sums
  /// fp32 gradients; false sums them rounded to bf16 (half the bytes on the
  /// wire; the CUDA backend only). Carried by the plan
  /// (Training.grad_reduce_in_bf16). Megatron-Core's false covers the whole
  /// data-parallel reduction (dp x cp, the experts' edp); the CUDA backend
  /// rounds only the dp one it overlaps with backward, so resolve() refuses
  /// false unless that is the only one: dp > 1, cp 1, pp 1, no edp
  /// reduction, no grad_offload.
  bool gradReduceInFp32 = true;
  /// Megatron-Core's deterministic_mode: every kernel sums in a fixed
  /// order, so that a run repeats bit for bit (the CUDA backend then takes
  /// cuDNN attention's deterministic backward, which keeps dP whole: slower
  /// and, at long sequences, gigabytes of workspace). False, Megatron-Core's
  /// default, lets attention's backward accumulate dQ with atomics. Carried
  /// by the plan (Training.deterministic_mode).
  bool deterministicMode = false;
  /// Megatron-Core's overlap_param_gather (needs distributedOptimizer): the
  /// all-gather of each bucket's updated weights runs behind the next
  /// step's forward, which waits for it before the bucket's first use.
  bool overlapParamGather = false;
  /// Megatron-Core's calculate_per_token_loss: each micro-batch's loss is
  /// the sum of its token losses, the gradients are summed over dp and cp
  /// and divided by the step's loss tokens (every micro-batch, dp and cp
  /// rank), and the reported loss is the step's loss sum over those tokens
  /// (mt-per-token-loss, mt-build-optimizer, mt-build-step-loss). False:
  /// the mean of each micro-batch's token mean, averaged over dp.
  bool perTokenLoss = false;
  /// Trinity-RFT's optimizer_offload (Megatron-Core's optimizer_cpu_offload
  /// with optimizer_offload_fraction 1): the fp32 master weights and AdamW
  /// state live in host arenas and AdamW runs on the host; the plan copies
  /// each gradient to the host before its update and the updated weights
  /// back (compiler/plan/OptimizerOffload.h).
  bool optimizerOffload = false;
  /// Trinity-RFT's grad_offload: the fp32 main gradients live in host
  /// memory; each program that accumulates or reduces one copies it to the
  /// device before its first use there and back after its last, and the
  /// gradient norm (and, with optimizer_offload, AdamW) reads the host copy;
  /// with use_distributed_optimizer each rank's reduced shard of a bucket
  /// lives there too (compiler/plan/GradOffload.h).
  bool gradOffload = false;
  /// Trinity-RFT's param_offload: the weights the programs read live in
  /// host memory; each program copies a weight to the device before each
  /// run of its uses there (and the optimizer's update back after it);
  /// with pp each stage its own layers', with use_distributed_optimizer
  /// each bucket around its all-gather (compiler/plan/ParamOffload.h).
  bool paramOffload = false;
  int64_t microBatch = 0, globalBatch = 0, seq = 0;
  /// Uneven pipeline stages: layers of each stage (--pp-layout), or those of
  /// the first and last stage with the rest split evenly (Megatron's
  /// decoder_first/last_pipeline_num_layers; 0: not given).
  std::vector<int64_t> ppLayout;
  int64_t firstStageLayers = 0, lastStageLayers = 0;
  /// Resolved: the layers of each virtual stage (chunk c of stage s is
  /// virtual stage c * pp + s), in model order.
  std::vector<int64_t> chunkLayers;
  /// Activation recompute; resolved: Megatron-Core's and MCoreAdapter's
  /// defaults filled in (full alone: uniform, 1 layer; selective:
  /// core_attn; moe_layer_recompute: selective with moe added).
  RecomputeConfig recompute;
  /// Filled by resolve(), each a sentence for the user. `warnings`: settings
  /// that this layout gives nothing to do (cp_comm_type other than p2p at cp
  /// 1, moe_token_dispatcher_type other than alltoall without expert
  /// parallelism, expert_tensor_parallel_size for a dense model,
  /// use_distributed_optimizer with nothing to shard, moe_shared_expert_overlap,
  /// which this version does not act on, speed switches given false). They are
  /// not errors, as the recompute keys without recompute_granularity are:
  /// their effect depends on sizes a user changes between runs while keeping
  /// the rest. `notes`: sizes resolve() chose beyond Megatron-Core's
  /// derivation (dp raised to hold ep x etp when neither dp nor the world
  /// size was given).
  std::vector<std::string> warnings, notes;

  int64_t numMicroBatches() const { return globalBatch / (microBatch * dp); }
  /// The expert layers' data-parallel size: edp = dp·cp·tp / (ep·etp)
  /// (Megatron-Core's expert_data_parallel_size). Resolved configurations only.
  int64_t edp() const { return dp * cp * tp / (ep * etp); }
  /// Whether use_distributed_optimizer has state to shard: the dense
  /// parameters' over dp·cp > 1 or, in a model with experts (`experts`),
  /// the experts' over edp > 1 (which MoE parallel folding can make above
  /// dp·cp: tp 2, etp 1 on 2 ranks has dp 1, edp 2). Resolved only.
  bool shardsOptimizerState(bool experts) const {
    return distributedOptimizer && (dp * cp > 1 || (experts && edp() > 1));
  }

  /// Sizes of the mesh of attention and dense layers, in the order of
  /// runtime/plan/MeshAxes.h's kDenseAxes (pp, dp, cp, tp). Resolved
  /// configurations only.
  std::array<int64_t, 4> denseMesh() const { return {pp, dp, cp, tp}; }
  /// Sizes of the mesh of expert layers over the same ranks, in the order of
  /// kExpertAxes (pp, edp, ep, etp): edp · ep · etp = dp · cp · tp.
  std::array<int64_t, 4> expertMesh() const { return {pp, edp(), ep, etp}; }

  /// Fills derived sizes and checks every rule against `model`; the message
  /// names the option, its value, and the rule.
  Status resolve(const ModelDims &model);
};

/// The optimizer and schedule of a training run (Megatron-Core's names in
/// YAML: lr, min_lr, lr_warmup_iters, lr_decay_iters, lr_decay_style,
/// weight_decay, adam_beta1, adam_beta2, adam_eps, clip_grad, train_iters).
struct OptimizerConfig {
  double lr = 3.0e-4, minLr = 0.0;
  int64_t warmupSteps = 0, decaySteps = 0; // decaySteps 0: trainSteps
  std::string decayStyle = "cosine";
  double weightDecay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8;
  double clipGrad = 1.0;
  int64_t trainSteps = 100;

  /// Checks ranges; the message names the option and its value.
  Status validate() const;
};

/// Checks the value of a string option that takes one of a few values
/// (recompute_granularity, recompute_method, one name of recompute_modules,
/// cp_comm_type, moe_token_dispatcher_type, lr_decay_style): "" when valid
/// (an empty recompute_granularity or recompute_method is "not given"),
/// else what follows `name` in the message, with the value and the valid
/// ones: " must be full or selective (or null for no recompute), got 'x'".
/// `name` is the key, optionally followed by its flag ("cp_comm_type
/// (--cp-comm-type)").
/// One list for the flags (resolve, validate) and both YAML readers.
std::string optionValueError(const std::string &name, const std::string &value);

/// Why a Megatron-LM argument that a plan does not hold (seed, log_interval,
/// save, load, data_path, the model's shape and routing keys, ...) is not
/// an option of `mtc compile --config`, and where it goes instead; "" for
/// other keys.
std::string megatronArgumentElsewhere(const std::string &key);

/// For such an argument that `mtc train`'s reader does not take either
/// (log_interval, save, num_layers, ...): what its LLaMA-Factory YAML calls
/// it or where its value comes from there; "" for other keys. One table
/// with megatronArgumentElsewhere.
std::string megatronArgumentInTrain(const std::string &key);

/// Megatron-Core's speed switches whose work mtc's kernels decide for
/// themselves, with the same results: bias_activation_fusion,
/// apply_rope_fusion, moe_grouped_gemm, overlap_grad_reduce. Both readers
/// take them as booleans; true says what mtc does.
const std::vector<std::string> &speedSwitchKeys();

/// Why a speed switch given false changes nothing, and what does turn that
/// work off where something does; "" for a key that is no speed switch.
std::string speedSwitchOffReason(const std::string &key);

/// Why `bf16: false` cannot be kept by a plan (what follows "bf16: false "
/// in both readers' refusal): the backend that runs a plan decides its
/// precision.
std::string bf16FalseReason();

/// Megatron-Core's rule for the key sequence_parallel at tensor parallel
/// size 1 (megatron/training/arguments.py: "disabling sequence parallelism
/// because tensor model parallelism is disabled"): where `c` has sequence
/// parallelism on and tp 1, turns it off and returns the warning, which
/// begins with `where` (the key's "file:line:col: " or "command line: ") and
/// names the key; otherwise returns "" and leaves `c` as it is. For keys of
/// a file or of `mtc train`'s command line, once every key and flag that
/// sets tp has been applied; the --sp flag typed with tp 1 stays an error
/// of resolve() (a flag the user typed is not changed behind their back).
std::string sequenceParallelOffAtTp1(ParallelConfig &c, const std::string &where);

/// Reads Megatron-Core names (`tensor_model_parallel_size`, ...) from a YAML
/// file into `config`. Every error carries file:line:col and the key; a
/// value error also the value and what is valid. `where`, when given,
/// receives "file:line:col: " of each key's value, by key.
Status loadParallelConfigYaml(const std::string &path, ParallelConfig &config,
                              OptimizerConfig &optimizer,
                              std::map<std::string, std::string> *where = nullptr);

/// `message` (an error of ParallelConfig::resolve or OptimizerConfig::validate),
/// then a line for each option it names, by its Megatron-Core key
/// ("tensor_model_parallel_size"), its flag ("--tp") or its short name
/// ("tp (2)"), that `givenAt` holds: "\nnote: " followed by the entry.
/// givenAt: Megatron-Core key -> where the user gave it, as a sentence
/// ("tensor_model_parallel_size was given at sft.yaml:4:29"; made by
/// givenAtNote).
std::string withGivenAt(const std::string &message,
                        const std::map<std::string, std::string> &givenAt);

/// The Megatron-Core key of an `mtc compile` flag ("--tp" ->
/// "tensor_model_parallel_size"); "" for a flag no key sets.
std::string optionKeyOfFlag(const std::string &flag);

/// The flag of a Megatron-Core key ("tensor_model_parallel_size" -> "--tp");
/// "" for a key no flag sets.
std::string flagOfOptionKey(const std::string &key);

/// The error for a `key=value` override, as `mtc train` takes them, given
/// to `mtc compile`: answered with the key's flag where it has one
/// ("tensor_model_parallel_size=2" -> "--tp 2"); "" for any other word.
std::string notAFlag(const std::string &arg);

/// The sentence withGivenAt prints for `key` given at `where` ("file:line:col",
/// "command line"; a trailing ": " is dropped), `as` the name it was given
/// by where that differs (LLaMA-Factory's per_device_train_batch_size for
/// micro_batch_size).
std::string givenAtNote(const std::string &key, std::string where, const std::string &as = "");

/// Every key loadParallelConfigYaml reads, sorted (for the choice between
/// it and the training front-end: compiler/config/ConfigVocabulary.h).
const std::vector<std::string> &parallelConfigKeys();

} // namespace mt

#endif // MT_COMPILER_CONFIG_PARALLELCONFIG_H
