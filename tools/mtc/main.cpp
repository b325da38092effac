// mtc: import Hugging Face models, inspect them, compile training plans.
#include "compiler/config/ConfigVocabulary.h"
#include "compiler/config/TrainConfig.h"
#include "compiler/driver/Commands.h"
#include "compiler/driver/Train.h"
#include "runtime/support/FileKind.h"
#include "runtime/support/OutputPath.h"
#include "tools/common/CommandLine.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <map>

namespace {

/// Flags for the parallel layout and the optimizer; given ones override
/// the YAML file, field by field.
struct ParallelFlags {
  std::string yaml;
  mt::ParallelConfig layout;
  mt::OptimizerConfig optimizer;
  bool gradReduceInBf16 = false;
  CLI::Option *sequenceParallelFlag = nullptr; // --sp: typed with tp 1, an error
  /// Each flag with what it sets in the resolved configuration when given.
  std::vector<std::pair<CLI::Option *,
                        std::function<void(mt::ParallelConfig &, mt::OptimizerConfig &)>>>
      flags;

  template <typename T> void layoutFlag(CLI::Option *option, T mt::ParallelConfig::*field) {
    option->group("Parallel layout (override --config)");
    flags.push_back({option, [this, field](mt::ParallelConfig &out, mt::OptimizerConfig &) {
                       out.*field = layout.*field;
                     }});
  }

  template <typename T> void recomputeFlag(CLI::Option *option, T mt::RecomputeConfig::*field) {
    option->group("Activation recompute (override --config)");
    flags.push_back({option, [this, field](mt::ParallelConfig &out, mt::OptimizerConfig &) {
                       out.recompute.*field = layout.recompute.*field;
                     }});
  }

  template <typename T>
  void optimizerFlag(CLI::App &cmd, const char *flag, T mt::OptimizerConfig::*field,
                     const char *help) {
    auto *option = cmd.add_option(flag, optimizer.*field, help)
                       ->group("Optimizer and schedule (override --config)")
                       ->capture_default_str();
    flags.push_back({option, [this, field](mt::ParallelConfig &, mt::OptimizerConfig &out) {
                       out.*field = optimizer.*field;
                     }});
  }

  void add(CLI::App &cmd) {
    using P = mt::ParallelConfig;
    auto &v = layout;
    cmd.add_option("--config", yaml,
                   "YAML file: Megatron-Core option names (tensor_model_parallel_size, lr, "
                   "train_iters, ...) or a LLaMA-Factory YAML (learning_rate, max_steps, "
                   "megatron: ...), told apart by the keys only one takes; not both")
        ->check(mt::tools::existingFile);
    layoutFlag(cmd.add_option("--tp", v.tp, "tensor-parallel size"), &P::tp);
    layoutFlag(cmd.add_option("--pp", v.pp, "pipeline-parallel size"), &P::pp);
    layoutFlag(cmd.add_option("--vpp", v.vpp, "virtual pipeline chunks per stage")
                   ->check(mt::tools::positive), &P::vpp);
    layoutFlag(cmd.add_option("--ep", v.ep, "expert-parallel size"), &P::ep);
    layoutFlag(cmd.add_option("--etp", v.etp, "expert tensor-parallel size (default: tp)")
                   ->check(mt::tools::positive),
               &P::etp);
    layoutFlag(cmd.add_option("--moe-token-dispatcher-type", v.moeTokenDispatcherType,
                              "how MoE tokens reach their experts under --ep: alltoall (the "
                              "default) or allgather"),
               &P::moeTokenDispatcherType);
    layoutFlag(cmd.add_option("--cp", v.cp, "context-parallel size"), &P::cp);
    layoutFlag(cmd.add_option("--cp-comm-type", v.cpCommType,
                              "context parallelism's key/value exchange: p2p (ring, the "
                              "default), all_gather or a2a (heads exchanged all-to-all)"),
               &P::cpCommType);
    layoutFlag(cmd.add_option("--dp", v.dp, "data-parallel size (default: derived)")
                   ->check(mt::tools::positive), &P::dp);
    layoutFlag(cmd.add_option("--world-size", v.worldSize,
                              "number of ranks (default: tp*pp*cp*dp)")
                   ->check(mt::tools::positive),
               &P::worldSize);
    sequenceParallelFlag =
        cmd.add_flag("--sp", v.sequenceParallel, "sequence parallelism (needs --tp > 1)");
    layoutFlag(sequenceParallelFlag, &P::sequenceParallel);
    layoutFlag(cmd.add_flag("--use-distributed-optimizer", v.distributedOptimizer,
                            "shard the AdamW state over dp (Megatron's distributed optimizer)"),
               &P::distributedOptimizer);
    // Megatron-LM's --grad-reduce-in-bf16 (grad_reduce_in_fp32 = false).
    auto *bf16Reduce = cmd.add_flag("--grad-reduce-in-bf16", gradReduceInBf16,
                                    "reduce the dp gradients in bf16 (grad_reduce_in_fp32: "
                                    "false; CUDA backend; needs --dp > 1 and no other "
                                    "gradient reduction: cp 1, pp 1, experts' edp 1)");
    bf16Reduce->group("Parallel layout (override --config)");
    flags.push_back({bf16Reduce, [this](mt::ParallelConfig &out, mt::OptimizerConfig &) {
                       out.gradReduceInFp32 = !gradReduceInBf16;
                     }});
    layoutFlag(cmd.add_flag("--deterministic-mode", v.deterministicMode,
                            "every kernel sums in a fixed order, so a run repeats bit for bit "
                            "(Megatron's deterministic_mode; the CUDA backend's attention "
                            "backward is then slower and, at long sequences, needs more "
                            "workspace)"),
               &P::deterministicMode);
    layoutFlag(cmd.add_flag("--overlap-param-gather", v.overlapParamGather,
                            "all-gather the distributed optimizer's updated weights behind the "
                            "next forward (Megatron's overlap_param_gather)"),
               &P::overlapParamGather);
    layoutFlag(cmd.add_flag("--calculate-per-token-loss", v.perTokenLoss,
                            "normalize the loss by the step's loss tokens instead of "
                            "averaging micro-batch means (Megatron's calculate_per_token_loss)"),
               &P::perTokenLoss);
    layoutFlag(cmd.add_flag("--optimizer-offload", v.optimizerOffload,
                            "fp32 master weights and AdamW state in host memory, updated "
                            "there (Trinity's optimizer_offload)"),
               &P::optimizerOffload);
    layoutFlag(cmd.add_flag("--grad-offload", v.gradOffload,
                            "fp32 main gradients in host memory, copied to the GPU around "
                            "each program's uses (Trinity's grad_offload)"),
               &P::gradOffload);
    layoutFlag(cmd.add_flag("--param-offload", v.paramOffload,
                            "weights in host memory, copied to the GPU before each run of "
                            "a program's uses (Trinity's param_offload)"),
               &P::paramOffload);
    layoutFlag(cmd.add_option("--micro-batch", v.microBatch, "micro-batch size")
                   ->check(mt::tools::positive),
               &P::microBatch);
    layoutFlag(cmd.add_option("--global-batch", v.globalBatch,
                              "global batch size (default: micro-batch x dp)")
                   ->check(mt::tools::positive),
               &P::globalBatch);
    layoutFlag(cmd.add_option("--seq", v.seq, "sequence length")->check(mt::tools::positive), &P::seq);
    layoutFlag(cmd.add_option("--pp-layout", v.ppLayout,
                              "layers of each pipeline stage, e.g. 3,5,5,3 (uneven stages)")
                   ->delimiter(','),
               &P::ppLayout);
    using R = mt::RecomputeConfig;
    recomputeFlag(cmd.add_option("--recompute-granularity", v.recompute.granularity,
                                 "full (whole layers) or selective (--recompute-modules)"),
                  &R::granularity);
    recomputeFlag(cmd.add_option("--recompute-method", v.recompute.method,
                                 "full: uniform (units of --recompute-num-layers layers) or block "
                                 "(the first --recompute-num-layers layers of each chunk)"),
                  &R::method);
    recomputeFlag(cmd.add_option("--recompute-num-layers", v.recompute.numLayers,
                                 "full: layers per unit (uniform) or per pipeline chunk (block)"),
                  &R::numLayers);
    recomputeFlag(cmd.add_option("--recompute-modules", v.recompute.modules,
                                 "selective: core_attn (default), mlp, layernorm, moe_act, moe")
                      ->delimiter(','),
                  &R::modules);
    recomputeFlag(cmd.add_flag("--moe-layer-recompute", v.recompute.moeLayerRecompute,
                               "recompute MoE layers (selective with moe added)"),
                  &R::moeLayerRecompute);
    using O = mt::OptimizerConfig;
    optimizerFlag(cmd, "--lr", &O::lr, "peak learning rate");
    optimizerFlag(cmd, "--min-lr", &O::minLr, "learning rate at the end of decay");
    optimizerFlag(cmd, "--warmup-steps", &O::warmupSteps, "linear warmup steps");
    optimizerFlag(cmd, "--decay-steps", &O::decaySteps, "last step of decay (0: --train-steps)");
    optimizerFlag(cmd, "--lr-decay-style", &O::decayStyle, "cosine, linear or constant");
    optimizerFlag(cmd, "--weight-decay", &O::weightDecay, "AdamW weight decay (not on norms, biases)");
    optimizerFlag(cmd, "--adam-beta1", &O::beta1, "AdamW beta1");
    optimizerFlag(cmd, "--adam-beta2", &O::beta2, "AdamW beta2");
    optimizerFlag(cmd, "--adam-eps", &O::eps, "AdamW epsilon");
    optimizerFlag(cmd, "--clip-grad", &O::clipGrad, "max global gradient norm (0: off)");
    optimizerFlag(cmd, "--train-steps", &O::trainSteps, "steps of the schedule (mtrun's default)");
  }

  /// The YAML values, with every flag given on the command line on top. A
  /// LLaMA-Factory file (mt::configVocabulary) goes through the training
  /// front-end; its --explain lines land in `explainText`, and `note` says
  /// which keys made it one (its defaults are transformers'). The file's
  /// sequence_parallel: true at the final tp 1 is turned off with a warning
  /// (Megatron-Core's rule); the --sp flag at tp 1 stays resolve()'s error.
  /// `givenAt`: where the file gave each option no flag overrides
  /// (CompileOptions::givenAt).
  bool resolve(mt::ParallelConfig &out, mt::OptimizerConfig &outOptimizer, bool writesPlan,
               std::string &explainText, std::string &note,
               std::map<std::string, std::string> &givenAt) const {
    std::map<std::string, std::string> keyWhere; // the file's keys, "file:line:col: "
    if (!yaml.empty()) {
      auto vocabulary = mt::configVocabulary(yaml);
      if (!vocabulary) {
        std::cerr << "error: " << vocabulary.message() << "\n";
        return false;
      }
      if (vocabulary->vocabulary == mt::ConfigVocabulary::LlamaFactory) {
        note = yaml + " reads as a LLaMA-Factory YAML by " + vocabulary->decidedBy +
               ": the keys it does not give take LLaMA-Factory's and transformers' defaults "
               "(per_device_train_batch_size 8, cutoff_len 2048, learning_rate 5e-05, ...)";
        if (!readTrainConfig(out, outOptimizer, writesPlan, explainText, keyWhere, givenAt))
          return false;
      } else if (mt::Status s = mt::loadParallelConfigYaml(yaml, out, outOptimizer, &keyWhere);
                 !s) {
        std::cerr << "error: " << s.message() << "\n";
        return false;
      } else {
        for (const auto &[key, where] : keyWhere)
          givenAt[key] = mt::givenAtNote(key, where);
      }
    }
    for (const auto &[option, apply] : flags)
      if (option->count()) {
        apply(out, outOptimizer);
        givenAt.erase(mt::optionKeyOfFlag(option->get_name()));
      }
    if (!sequenceParallelFlag->count())
      if (std::string warning = mt::sequenceParallelOffAtTp1(out, keyWhere["sequence_parallel"]);
          !warning.empty())
        std::cerr << "warning: " << warning << "\n";
    return true;
  }

  /// `keyWhere`: where the file gave sequence_parallel, if it did.
  bool readTrainConfig(mt::ParallelConfig &out, mt::OptimizerConfig &outOptimizer,
                       bool writesPlan, std::string &explainText,
                       std::map<std::string, std::string> &keyWhere,
                       std::map<std::string, std::string> &givenAt) const {
    mt::TrainConfig train;
    mt::Status s = mt::loadTrainConfig(yaml, {}, train);
    if (s)
      s = train.checkPlanKeys();
    if (!s) {
      std::cerr << "error: " << s.message() << "\n";
      return false;
    }
    if (std::string warning = train.warmupIgnoredWarning(); !warning.empty())
      std::cerr << "warning: " << warning << "\n";
    // Routing options shape the model, which `mtc compile` reads as built.
    if (!(train.moe == mt::MoeOptions{})) {
      std::cerr << "error: " << yaml << ": the moe_* routing keys shape the model when it is "
                << "imported: give them to `mtc train` or to `mtc import-hf --moe-...`, not to "
                << "`mtc compile`\n";
      return false;
    }
    // The flags' dp and world size decide the global batch, as a launcher
    // would; --micro-batch and --seq are per_device_train_batch_size and
    // cutoff_len.
    for (const auto &[option, apply] : flags)
      if (option->count()) {
        mt::OptimizerConfig ignored;
        apply(train.parallel, ignored);
      }
    if (train.parallel.microBatch > 0)
      train.perDeviceTrainBatchSize = train.parallel.microBatch;
    if (train.parallel.seq > 0)
      train.cutoffLen = train.parallel.seq;
    out = train.layout();
    // Epochs need the prepared data's size; an explain-only compile shows
    // the rest of the layout, and says so, rather than guess a step count.
    bool stepsUnknown = train.maxSteps <= 0 && !writesPlan;
    auto optimizer = train.optimizer(stepsUnknown ? std::optional<int64_t>(train.globalBatchSize())
                                                  : std::nullopt);
    if (!optimizer) {
      std::cerr << "error: " << yaml << ": " << optimizer.message() << "\n";
      return false;
    }
    outOptimizer = *optimizer;
    explainText = train.explain(std::nullopt);
    if (std::string where = train.whereGiven("sequence_parallel"); !where.empty())
      keyWhere["sequence_parallel"] = where;
    givenAt = train.layoutGivenAt();
    return true;
  }
};

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"mtc: a compiler for training transformer LLMs on many GPUs.\n"
               "Import a Hugging Face config, inspect the model, compile a "
               "parallel training plan."};
  app.require_subcommand(1);
  mt::tools::addVersionFlag(app, "mtc");

  mt::ImportOptions import;
  std::string dtype = "f32";
  auto *importCmd = app.add_subcommand(
      "import-hf", "Write the mt-dialect model of a Hugging Face config.json");
  importCmd->add_option("config", import.configPath,
                        "config.json, or the model directory that holds it")
      ->required()->check(mt::tools::existingPath);
  importCmd->add_option("-o,--output", import.outputPath,
                        "model.mlir to write (replaces a model mtc imported; - prints it)")
      ->required();
  importCmd->add_flag("--overwrite", import.overwrite,
                      "-o may replace an mtc output of another kind or a file mtc did not "
                      "write (never the input)");
  importCmd->add_option("--seq", import.shape.seq, "sequence length")
      ->capture_default_str()->check(mt::tools::positive);
  importCmd->add_option("--micro-batch", import.shape.microBatch, "micro-batch size")
      ->capture_default_str()->check(mt::tools::positive);
  importCmd->add_option("--dtype", dtype, "parameter element type")
      ->capture_default_str()->check(CLI::IsMember({"f32", "bf16"}));
  importCmd->add_flag("--neat-packing", import.shape.packedDocuments,
                      "rows pack documents (LLaMA-Factory's neat_packing): the model takes "
                      "position_ids, restarts rotary positions and confines attention to "
                      "each document");
  // Megatron-Core's moe_* routing options (MoeOptions.h); checked by importHf.
  mt::MoeOptions &moe = import.shape.moe;
  importCmd->add_option_function<double>(
      "--moe-expert-capacity-factor", [&moe](double f) { moe.capacityFactor = f; },
      "expert capacity factor (absent: dropless)");
  importCmd->add_option("--moe-token-drop-policy", moe.dropPolicy, "probs or position")
      ->capture_default_str();
  importCmd->add_flag("--moe-pad-expert-input-to-capacity", moe.padToCapacity,
                      "every expert takes its capacity of rows");
  importCmd->add_option("--moe-router-load-balancing-type", moe.loadBalancingType,
                        "aux_loss, seq_aux_loss or none")->capture_default_str();
  importCmd->add_option_function<double>(
      "--moe-aux-loss-coeff", [&moe](double c) { moe.auxLossCoeff = c; },
      "Megatron-Core's load-balancing coefficient (absent: router_aux_loss_coef x top_k, "
      "each MoE layer's loss summed as Megatron-Core does)");
  importCmd->add_option("--moe-z-loss-coeff", moe.zLossCoeff, "router z-loss coefficient")
      ->capture_default_str();

  std::string statsPath;
  auto *statsCmd = app.add_subcommand(
      "stats", "Print parameters and FLOPs per token (as docs/FLOPS.md counts them)");
  statsCmd->add_option("model", statsPath, "model.mlir")->required()
      ->check(mt::tools::existingFile);

  mt::CompileOptions compile;
  ParallelFlags parallelFlags;
  auto *compileCmd = app.add_subcommand(
      "compile", "Check a model against a parallel layout and plan the training step");
  compileCmd->add_option("model", compile.modelPath, "model.mlir")->required()
      ->check(mt::tools::existingFile);
  compileCmd->add_flag("--explain", compile.explain,
                       "print the layout in words: mesh, ranks, stages, memory");
  compileCmd->add_option("-o,--output", compile.outputDir,
                         "plan directory to write (replaces a plan mtc wrote, atomically)");
  compileCmd->add_option("--schedule-svg", compile.scheduleSvg,
                         "draw the pipeline schedule (stages x time) into this SVG file");
  compileCmd->add_option("--dump-dir", compile.dumpDir,
                         "write the IR after each phase as NN-<phase>.mlir (00-imported, "
                         "partition-tp, autodiff, ...) and the plan as NN-plan.txt into "
                         "this directory (replaces a dump directory mtc wrote)");
  compileCmd->add_flag("--overwrite", compile.overwrite,
                       "outputs may replace an mtc output of another kind or a file mtc "
                       "did not write (never an input)");
  compileCmd->add_option("--gpu-memory", compile.gpuMemory,
                         "with --explain: the recompute option with the fewest extra FLOPs whose "
                         "memory per rank fits a GPU of this size (80GiB, 141GB)")
      ->transform(mt::tools::byteSize());
  compileCmd->add_option("--freeze", compile.freeze,
                         "regular expression: matching parameters are not trained")
      ->check(CLI::Validator(
          [](std::string &text) -> std::string {
            return text.empty() ? "an empty regular expression (an unset variable?); give a "
                                  "pattern of parameter names (embed_tokens|norm) or leave "
                                  "the option out"
                                : "";
          },
          "REGEX"));
  compileCmd->add_option("--no-fuse", compile.noFuse,
                         "leave out fusions of mt-fuse (comma-separated): add-rmsnorm, "
                         "add-rmsnorm-grad, linear-fc1, linear-qkv, rotary-qkv, swiglu-recompute, or all")
      ->delimiter(',');
  parallelFlags.add(*compileCmd);

  mt::TrainCommandOptions train;
  // The YAML is no CLI11 positional: it would take the value of a first
  // `--key value` (keys alone, as src/train.py takes them, need no file).
  auto *trainCmd = app.add_subcommand(
      "train", "Train as LLaMA-Factory's `llamafactory-cli train CONFIG.yaml` does: import "
               "model_name_or_path, compile the YAML's layout, prepare the data, run mtrun.\n"
               "Form: mtc train [CONFIG.yaml] [OPTIONS] [--key value | key=value]...\n"
               "CONFIG.yaml: LLaMA-Factory YAML (MCoreAdapter's Megatron keys and Trinity-RFT's "
               "megatron: block included); without it every key comes from the command line, "
               "as LLaMA-Factory's src/train.py takes them");
  trainCmd->add_flag("--prepare-only", train.prepareOnly,
                     "write the plan, the data and train.sh (the mtrun command) into -o, and "
                     "stop: `mtrun` trains elsewhere. train.sh runs from any directory: it "
                     "finds the plan and data beside itself, and so the paths the keys gave "
                     "relative; absolute ones stay absolute");
  trainCmd->add_option("-o,--run-dir", train.runDir,
                       "run directory: model.mlir, plan/, data.sft (stage sft) or data.tokens "
                       "(pt), train.sh (default: output_dir/mtc-run); absent, empty or one mtc "
                       "train prepared, never the current directory or one holding an input");
  trainCmd->add_flag("--explain", train.explain,
                     "print the layout, the global batch with the dp used, and the schedule, "
                     "then train (add --prepare-only to stop before training)");
  trainCmd->add_option("--max-shard-size", train.maxShardBytes,
                       "bytes per safetensors shard of checkpoints (save_pretrained's "
                       "max_shard_size)")
      ->capture_default_str()->check(mt::tools::positive);
  trainCmd->add_option("--launch-timeout", train.launchTimeout,
                       "under torchrun, srun or mpirun: seconds the other ranks of a node wait "
                       "for its local rank 0 to prepare the run")
      ->capture_default_str()->check(mt::tools::positive);
  trainCmd->allow_extras();
  trainCmd->footer("Any key of the YAML may follow: --key value, --key=value or key=value "
                   "(later ones win over the file).");

  for (CLI::App *writer : {importCmd, compileCmd})
    writer->footer(mt::io::kOutputRulesHelp);
  // README: each tool has --version; `mtc train --version` read it as a key.
  for (CLI::App *command : {importCmd, statsCmd, compileCmd, trainCmd})
    mt::tools::addVersionFlag(*command, "mtc");
  // key=value is mtc train's form; mtc compile answers it with the flag.
  auto keyValueToCompile = [&](const std::string &word) {
    return compileCmd->parsed() && word.find('=') != std::string::npos ? mt::notAFlag(word)
                                                                      : std::string();
  };
  if (auto exitCode = mt::tools::parseCommandLine(app, argc, argv, keyValueToCompile))
    return *exitCode;

  bool ok = false;
  if (importCmd->parsed()) {
    // A Hugging Face model directory stands for its config.json.
    if (std::filesystem::is_directory(import.configPath)) {
      const std::string config = import.configPath + "/config.json";
      if (!std::filesystem::is_regular_file(config)) {
        const std::string what = mt::notARegularFile(config);
        std::cerr << "error: "
                  << (what.empty() ? import.configPath + " is a directory without config.json"
                                   : config + " is " + what + ", not a file")
                  << ": give a Hugging Face model directory or its config.json\n";
        return 1;
      }
      import.configPath = config;
    }
    import.shape.bf16 = dtype == "bf16";
    ok = mt::importHf(import);
  } else if (statsCmd->parsed()) {
    ok = mt::printStats(statsPath);
  } else if (trainCmd->parsed()) {
    train.overrideArgs = trainCmd->remaining();
    train.configPath = mt::takeConfigPath(train.overrideArgs);
    if (train.configPath.empty() && train.overrideArgs.empty()) {
      std::cerr << "error: mtc train needs a LLaMA-Factory YAML (mtc train sft.yaml) or its keys "
                   "(mtc train --model_name_or_path DIR --stage sft ...)\nRun `mtc train --help` "
                   "for the options.\n";
      return 1;
    }
    train.executable = argv[0];
    ok = mt::trainCommand(train);
  } else if (compileCmd->parsed()) {
    compile.configPath = parallelFlags.yaml;
    ok = parallelFlags.resolve(compile.parallel, compile.optimizer, !compile.outputDir.empty(),
                               compile.configExplain, compile.configNote, compile.givenAt) &&
         mt::compileModel(compile);
  }
  return ok ? 0 : 1;
}
