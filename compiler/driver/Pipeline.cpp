// The compilation pipeline of a training step: freeze, partition, autodiff,
// optimizer, explicit collectives, cleanup, plan emission (numbered IR dumps
// on request).
#include "compiler/driver/Pipeline.h"

#include "dialects/mt/MtMesh.h"
#include "passes/Passes.h"
#include "runtime/plan/PlanIO.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/ToolOutputFile.h"

#include <cstdio>
#include <filesystem>
#include <regex>
#include <sstream>

using namespace mlir;

namespace mt {
namespace {

/// The numbered dumps of one compilation (--dump-dir): NN-<phase>.mlir
/// after each phase that changes the IR, in order, and the plan's text form
/// last, so that a user can see what each phase did. Without a directory
/// every call succeeds and writes nothing.
class PhaseDumps {
public:
  explicit PhaseDumps(std::string dir) : dir_(std::move(dir)) {}

  /// Writes NN-`phase`.mlir; false (after an error on stderr) on failure.
  bool module(ModuleOp module, StringRef phase) {
    return write(phase.str() + ".mlir", [&](llvm::raw_ostream &os) { module.print(os); });
  }

  /// Writes NN-plan.txt (plan::writePlanSummary, as plan.txt in -o).
  bool plan(const plan::Plan &plan) {
    return write("plan.txt", [&](llvm::raw_ostream &os) {
      std::ostringstream text;
      plan::writePlanSummary(plan, text);
      os << text.str();
    });
  }

private:
  bool write(const std::string &name, llvm::function_ref<void(llvm::raw_ostream &)> print) {
    if (dir_.empty())
      return true;
    char prefix[8];
    std::snprintf(prefix, sizeof(prefix), "%02d-", next_++);
    std::string error;
    auto file = openOutputFile((std::filesystem::path(dir_) / (prefix + name)).string(), &error);
    if (!file) {
      llvm::errs() << "error: --dump-dir: " << error << "\n";
      return false;
    }
    print(file->os());
    file->keep();
    return true;
  }

  std::string dir_;
  int next_ = 0;
};

/// A pass's phase name in the dumps: its flag without the dialect's prefix
/// (mt-partition-tp -> partition-tp).
std::string phaseName(const Pass &pass) {
  StringRef name = pass.getArgument();
  name.consume_front("mt-");
  return name.str();
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
  PartitionTensorParallelOptions tpOptions;
  tpOptions.sequenceParallel = parallel.sequenceParallel;
  PhaseDumps dumps(options.dumpDir);
  if (!dumps.module(module, "imported"))
    return failure();
  // The passes read the mesh sizes from the IR; expert layers get a mesh of
  // their own over the same ranks.
  bool experts = llvm::any_of(module.getOps<ParamOp>(),
                              [](ParamOp p) { return p.getGroupedExperts(); });
  std::array<int64_t, 4> expertMesh = parallel.expertMesh();
  if (failed(createMeshes(module, parallel.denseMesh(),
                          experts ? ArrayRef<int64_t>(expertMesh) : ArrayRef<int64_t>())) ||
      !dumps.module(module, "mesh"))
    return failure();
  if (!options.freeze.empty() &&
      (failed(freezeParameters(module, options.freeze)) || !dumps.module(module, "freeze")))
    return failure();
  std::vector<std::unique_ptr<Pass>> pipeline;
  if (parallel.tp > 1)
    pipeline.push_back(createPartitionTensorParallel(tpOptions));
  pipeline.push_back(createAutodiff());
  pipeline.push_back(createBuildOptimizer(opt));
  pipeline.push_back(createExposeCollectives());
  pipeline.push_back(createCanonicalizerPass());
  for (std::unique_ptr<Pass> &pass : pipeline) {
    std::string phase = phaseName(*pass);
    PassManager pm(module.getContext());
    pm.addPass(std::move(pass));
    if (failed(pm.run(module)) || !dumps.module(module, phase))
      return failure();
  }
  // The pipeline stage split happens in the emitter (not IR yet): the plan
  // text shows it as one forward and one backward program per stage.
  FailureOr<plan::Plan> plan = emitPlan(module, parallel, TrainingOptions{o.trainSteps});
  if (failed(plan) || !dumps.plan(*plan))
    return failure();
  return plan;
}

} // namespace mt
