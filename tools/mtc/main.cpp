// mtc: import Hugging Face models, inspect them, compile training plans.
#include "compiler/driver/Commands.h"
#include "runtime/io/OutputPath.h"

#include <CLI/CLI.hpp>

#include <iostream>

namespace {

/// Flags for the parallel layout; given ones override the YAML file.
struct ParallelFlags {
  std::string yaml;
  mt::ParallelConfig values;
  mt::OptimizerConfig optimizer;
  std::vector<CLI::Option *> options;
  std::vector<std::pair<CLI::Option *, std::function<void(mt::OptimizerConfig &)>>>
      optimizerOptions;

  void add(CLI::App &cmd) {
    auto &v = values;
    cmd.add_option("--config", yaml,
                   "YAML file with Megatron-Core option names "
                   "(tensor_model_parallel_size, sequence_parallel, ...)")
        ->check(CLI::ExistingFile);
    auto group = "Parallel layout (override --config)";
    options = {
        cmd.add_option("--tp", v.tp, "tensor-parallel size")->group(group),
        cmd.add_option("--pp", v.pp, "pipeline-parallel size")->group(group),
        cmd.add_option("--vpp", v.vpp, "virtual pipeline chunks per stage")->group(group),
        cmd.add_option("--ep", v.ep, "expert-parallel size")->group(group),
        cmd.add_option("--cp", v.cp, "context-parallel size")->group(group),
        cmd.add_option("--dp", v.dp, "data-parallel size (default: derived)")->group(group),
        cmd.add_option("--world-size", v.worldSize,
                       "number of ranks (default: tp*pp*cp*ep*dp)")->group(group),
        cmd.add_flag("--sp", v.sequenceParallel, "sequence parallelism (needs --tp > 1)")
            ->group(group),
        cmd.add_option("--micro-batch", v.microBatch, "micro-batch size")->group(group),
        cmd.add_option("--global-batch", v.globalBatch,
                       "global batch size (default: micro-batch x dp)")->group(group),
        cmd.add_option("--seq", v.seq, "sequence length")->group(group),
        cmd.add_option("--pp-layout", v.ppLayout,
                       "layers of each pipeline stage, e.g. 3,5,5,3 (uneven stages)")
            ->group(group)->delimiter(','),
    };
    addOptimizerFlags(cmd);
  }

  template <typename T>
  void optimizerOption(CLI::App &cmd, const char *flag, T mt::OptimizerConfig::*field,
                       const char *help) {
    auto *option = cmd.add_option(flag, optimizer.*field, help)
                       ->group("Optimizer and schedule (override --config)")
                       ->capture_default_str();
    optimizerOptions.push_back({option, [this, field](mt::OptimizerConfig &out) {
                                  out.*field = optimizer.*field;
                                }});
  }

  void addOptimizerFlags(CLI::App &cmd) {
    using O = mt::OptimizerConfig;
    optimizerOption(cmd, "--lr", &O::lr, "peak learning rate");
    optimizerOption(cmd, "--min-lr", &O::minLr, "learning rate at the end of decay");
    optimizerOption(cmd, "--warmup-steps", &O::warmupSteps, "linear warmup steps");
    optimizerOption(cmd, "--decay-steps", &O::decaySteps, "last step of decay (0: --train-steps)");
    optimizerOption(cmd, "--lr-decay-style", &O::decayStyle, "cosine, linear or constant");
    optimizerOption(cmd, "--weight-decay", &O::weightDecay, "AdamW weight decay (not on norms, biases)");
    optimizerOption(cmd, "--adam-beta1", &O::beta1, "AdamW beta1");
    optimizerOption(cmd, "--adam-beta2", &O::beta2, "AdamW beta2");
    optimizerOption(cmd, "--adam-eps", &O::eps, "AdamW epsilon");
    optimizerOption(cmd, "--clip-grad", &O::clipGrad, "max global gradient norm (0: off)");
    optimizerOption(cmd, "--train-steps", &O::trainSteps, "steps of the schedule (mtrun's default)");
  }

  /// The YAML values, with every flag given on the command line on top.
  bool resolve(mt::ParallelConfig &out, mt::OptimizerConfig &outOptimizer) const {
    if (!yaml.empty()) {
      if (mt::Status s = mt::loadParallelConfigYaml(yaml, out, outOptimizer); !s) {
        std::cerr << "error: " << s.message() << "\n";
        return false;
      }
    }
    const mt::ParallelConfig &v = values;
    int64_t mt::ParallelConfig::*fields[] = {
        &mt::ParallelConfig::tp,  &mt::ParallelConfig::pp,
        &mt::ParallelConfig::vpp, &mt::ParallelConfig::ep,
        &mt::ParallelConfig::cp,  &mt::ParallelConfig::dp,
        &mt::ParallelConfig::worldSize};
    for (size_t i = 0; i < std::size(fields); ++i)
      if (options[i]->count())
        out.*fields[i] = v.*fields[i];
    if (options[7]->count())
      out.sequenceParallel = v.sequenceParallel;
    if (options[8]->count())
      out.microBatch = v.microBatch;
    if (options[9]->count())
      out.globalBatch = v.globalBatch;
    if (options[10]->count())
      out.seq = v.seq;
    if (options[11]->count())
      out.ppLayout = v.ppLayout;
    for (const auto &[option, apply] : optimizerOptions)
      if (option->count())
        apply(outOptimizer);
    return true;
  }
};

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"mtc: a compiler for training transformer LLMs on many GPUs.\n"
               "Import a Hugging Face config, inspect the model, compile a "
               "parallel training plan."};
  app.require_subcommand(1);

  mt::ImportOptions import;
  std::string dtype = "f32";
  auto *importCmd = app.add_subcommand(
      "import-hf", "Write the mt-dialect model of a Hugging Face config.json");
  importCmd->add_option("config", import.configPath, "config.json")
      ->required()->check(CLI::ExistingFile);
  importCmd->add_option("-o,--output", import.outputPath,
                        "model.mlir to write (replaces a model mtc imported; - prints it)")
      ->required();
  importCmd->add_flag("--overwrite", import.overwrite,
                      "-o may replace an mtc output of another kind or a file mtc did not "
                      "write (never the input)");
  importCmd->add_option("--seq", import.shape.seq, "sequence length")
      ->capture_default_str()->check(CLI::PositiveNumber);
  importCmd->add_option("--micro-batch", import.shape.microBatch, "micro-batch size")
      ->capture_default_str()->check(CLI::PositiveNumber);
  importCmd->add_option("--dtype", dtype, "parameter element type")
      ->capture_default_str()->check(CLI::IsMember({"f32", "bf16"}));

  std::string statsPath;
  auto *statsCmd = app.add_subcommand(
      "stats", "Print parameters and FLOPs per token (as bench/FLOPS.md counts them)");
  statsCmd->add_option("model", statsPath, "model.mlir")->required()
      ->check(CLI::ExistingFile);

  mt::CompileOptions compile;
  ParallelFlags parallelFlags;
  auto *compileCmd = app.add_subcommand(
      "compile", "Check a model against a parallel layout and plan the training step");
  compileCmd->add_option("model", compile.modelPath, "model.mlir")->required()
      ->check(CLI::ExistingFile);
  compileCmd->add_flag("--explain", compile.explain,
                       "print the layout in words: mesh, ranks, stages, memory");
  compileCmd->add_option("-o,--output", compile.outputDir,
                         "plan directory to write (replaces a plan mtc wrote, atomically)");
  compileCmd->add_option("--schedule-svg", compile.scheduleSvg,
                         "draw the pipeline schedule (stages x time) into this SVG file");
  compileCmd->add_option("--dump-dir", compile.dumpDir,
                         "write the IR after each pass as NN-<pass>.mlir into this "
                         "directory (replaces a dump directory mtc wrote)");
  compileCmd->add_flag("--overwrite", compile.overwrite,
                       "outputs may replace an mtc output of another kind or a file mtc "
                       "did not write (never an input)");
  compileCmd->add_option("--freeze", compile.freeze,
                         "regular expression: matching parameters are not trained");
  parallelFlags.add(*compileCmd);

  for (CLI::App *writer : {importCmd, compileCmd})
    writer->footer(mt::io::kOutputRulesHelp);
  CLI11_PARSE(app, argc, argv);

  bool ok = false;
  if (importCmd->parsed()) {
    import.shape.bf16 = dtype == "bf16";
    ok = mt::importHf(import);
  } else if (statsCmd->parsed()) {
    ok = mt::printStats(statsPath);
  } else if (compileCmd->parsed()) {
    compile.configPath = parallelFlags.yaml;
    ok = parallelFlags.resolve(compile.parallel, compile.optimizer) &&
         mt::compileModel(compile);
  }
  return ok ? 0 : 1;
}
