// The subcommands of `mtc`, callable without the command line.
#ifndef MT_COMPILER_DRIVER_COMMANDS_H
#define MT_COMPILER_DRIVER_COMMANDS_H

#include "compiler/config/ParallelConfig.h"
#include "compiler/hf/ModelBuilder.h"

#include <map>
#include <string>
#include <vector>

namespace mt {

struct ImportOptions {
  std::string configPath, outputPath; // outputPath "-": standard output
  ModelShape shape;
  bool overwrite = false; // -o may replace what io::checkOutputs allows with it
};

struct CompileOptions {
  std::string modelPath;
  ParallelConfig parallel;
  OptimizerConfig optimizer;
  bool explain = false;
  std::string outputDir; // the plan directory; empty: check only
  std::string freeze;    // regex over parameter names: not trained
  std::string dumpDir;   // numbered IR after each phase, then the plan text
  std::string scheduleSvg; // picture of the pipeline schedule
  std::string configPath;  // the --config YAML already read: an input, never replaced
  std::string configExplain; // --explain lines of a training config (TrainConfig::explain)
  /// Why the config's defaults are what they are ("x.yaml reads as a
  /// LLaMA-Factory YAML by seed (line 4): ..."), noted under a layout error.
  std::string configNote;
  /// Where the user gave each option, for the notes under a layout error
  /// (withGivenAt, compiler/config/ParallelConfig.h): Megatron-Core key ->
  /// "tensor_model_parallel_size was given at sft.yaml:4:29". Options a flag
  /// set are not in it.
  std::map<std::string, std::string> givenAt;
  /// The layout's warnings and notes were printed already (`mtc train`'s
  /// checkLayout): compileModel does not repeat them.
  bool layoutChecked = false;
  bool overwrite = false;  // outputs may replace what io::checkOutputs allows with it
  uint64_t gpuMemory = 0;  // --explain: the cheapest recompute that fits (0: none asked)
  /// --no-fuse: mt-fuse patterns left out (add-rmsnorm, add-rmsnorm-grad,
  /// linear-fc1, linear-qkv, rotary-qkv, swiglu-recompute;
  /// all: the pass does not run).
  std::vector<std::string> noFuse;
};

/// The layout check of compileModel alone: `layout` resolved against the
/// model at `modelPath`, each error and warning (ParallelConfig::warnings,
/// ::notes) printed with the notes of `givenAt`. `mtc train` runs it
/// before it prepares the data, so that a bad layout costs no tokenizing.
bool checkLayout(const std::string &modelPath, const ParallelConfig &layout,
                 const std::map<std::string, std::string> &givenAt);

/// Each prints its diagnostics to stderr and returns false on failure. The
/// output paths are checked first (io::checkOutputs, runtime/support/OutputPath.h).
bool importHf(const ImportOptions &options);
bool printStats(const std::string &modelPath);
bool compileModel(const CompileOptions &options);

} // namespace mt

#endif // MT_COMPILER_DRIVER_COMMANDS_H
