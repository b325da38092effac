// The subcommands of `mtc`, callable without the command line.
#ifndef MT_COMPILER_DRIVER_COMMANDS_H
#define MT_COMPILER_DRIVER_COMMANDS_H

#include "compiler/config/ParallelConfig.h"
#include "compiler/hf/ModelBuilder.h"

#include <string>

namespace mt {

struct ImportOptions {
  std::string configPath, outputPath;
  ModelShape shape;
};

struct CompileOptions {
  std::string modelPath;
  ParallelConfig parallel;
  OptimizerConfig optimizer;
  bool explain = false;
  std::string outputDir; // the plan directory; empty: check only
  std::string freeze;    // regex over parameter names: not trained
  std::string dumpDir;   // numbered IR after each pass
  std::string scheduleSvg; // picture of the pipeline schedule
};

/// Each prints its diagnostics to stderr and returns false on failure.
bool importHf(const ImportOptions &options);
bool printStats(const std::string &modelPath);
bool compileModel(const CompileOptions &options);

} // namespace mt

#endif // MT_COMPILER_DRIVER_COMMANDS_H
