// The compilation pipeline of a training step: freeze, partition,
// autodiff, optimizer, cleanup, plan emission (numbered IR dumps on request).
#include "compiler/driver/Pipeline.h"

#include "dialects/mt/MtMesh.h"
#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/ToolOutputFile.h"

#include <filesystem>
#include <regex>

using namespace mlir;

namespace mt {
namespace {

/// Writes `dir`/`stem`.mlir (the numbered IR after each pass).
bool dumpModule(ModuleOp module, const std::string &dir, const std::string &stem) {
  if (std::error_code ec = llvm::sys::fs::create_directories(dir)) {
    llvm::errs() << "error: --dump-dir " << dir << ": " << ec.message() << "\n";
    return false;
  }
  std::string error;
  auto file = openOutputFile((std::filesystem::path(dir) / (stem + ".mlir")).string(), &error);
  if (!file) {
    llvm::errs() << "error: " << error << "\n";
    return false;
  }
  module.print(file->os());
  file->keep();
  return true;
}

/// Marks the parameters whose names match `pattern` frozen.
LogicalResult freezeParameters(ModuleOp module, const std::string &pattern) {
  std::regex regex;
  try {
    regex = std::regex(pattern);
  } catch (const std::regex_error &e) {
    return module.emitError() << "--freeze '" << pattern
                              << "' is not a valid regular expression: " << e.what();
  }
  int frozen = 0;
  for (auto param : module.getOps<ParamOp>())
    if (std::regex_search(param.getSymName().str(), regex)) {
      param.setFrozen(true);
      ++frozen;
    }
  if (frozen == 0)
    return module.emitError() << "--freeze '" << pattern << "' matches no parameter of the model";
  return success();
}

} // namespace

FailureOr<plan::Plan> buildTrainingPlan(ModuleOp module, const ParallelConfig &parallel,
                                        const CompileOptions &options) {
  const OptimizerConfig &o = options.optimizer;
  BuildOptimizerOptions opt;
  opt.lr = o.lr;
  opt.minLr = o.minLr;
  opt.warmupSteps = o.warmupSteps;
  opt.decaySteps = o.decaySteps ? o.decaySteps : o.trainSteps;
  opt.decayStyle = o.decayStyle;
  opt.weightDecay = o.weightDecay;
  opt.beta1 = o.beta1;
  opt.beta2 = o.beta2;
  opt.eps = o.eps;
  opt.clipGrad = o.clipGrad;
  opt.dp = parallel.dp;
  PartitionTensorParallelOptions tpOptions;
  tpOptions.sequenceParallel = parallel.sequenceParallel;
  // The passes read the mesh sizes from the IR; expert layers get a mesh of
  // their own over the same ranks.
  bool experts = llvm::any_of(module.getOps<ParamOp>(),
                              [](ParamOp p) { return p.getGroupedExperts(); });
  std::array<int64_t, 4> expertMesh = parallel.expertMesh();
  if (failed(createMeshes(module, parallel.denseMesh(),
                          experts ? ArrayRef<int64_t>(expertMesh) : ArrayRef<int64_t>())))
    return failure();
  if (!options.freeze.empty() && failed(freezeParameters(module, options.freeze)))
    return failure();
  std::vector<std::unique_ptr<Pass>> pipeline;
  if (parallel.tp > 1)
    pipeline.push_back(createPartitionTensorParallel(tpOptions));
  pipeline.push_back(createAutodiff());
  pipeline.push_back(createBuildOptimizer(opt));
  pipeline.push_back(createCanonicalizerPass());
  if (!options.dumpDir.empty() && !dumpModule(module, options.dumpDir, "00-input"))
    return failure();
  for (auto [i, pass] : llvm::enumerate(pipeline)) {
    std::string name = pass->getArgument().str();
    PassManager pm(module.getContext());
    pm.addPass(std::move(pass));
    if (failed(pm.run(module)))
      return failure();
    char stem[128];
    std::snprintf(stem, sizeof(stem), "%02zu-%s", i + 1, name.c_str());
    if (!options.dumpDir.empty() && !dumpModule(module, options.dumpDir, stem))
      return failure();
  }
  return emitPlan(module, parallel, TrainingOptions{o.trainSteps});
}


} // namespace mt
