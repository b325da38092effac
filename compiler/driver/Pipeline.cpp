// The compilation pipeline of a training step: freeze, partition, loss
// normalization, autodiff, optimizer, step loss, explicit collectives,
// cleanup, recompute, pipeline split, fusion, plan emission (numbered IR
// dumps on request).
#include "compiler/driver/Pipeline.h"

#include "compiler/analysis/ModelInfo.h"

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

/// An error about a command-line option, printed as the driver's other
/// errors are: no location (the module's would quote the model file's
/// first line, its whole header; an unknown one prints "<unknown>:0:").
LogicalResult optionError(const std::string &message) {
  llvm::errs() << "error: " << message << "\n";
  return failure();
}

/// Marks the parameters whose names match `pattern` frozen.
LogicalResult freezeParameters(ModuleOp module, const std::string &pattern) {
  std::regex regex;
  try {
    regex = std::regex(pattern);
  } catch (const std::regex_error &e) {
    return optionError("--freeze '" + pattern +
                       "' is not a valid regular expression: " + e.what());
  }
  int frozen = 0, all = 0;
  for (auto param : module.getOps<ParamOp>()) {
    ++all;
    if (std::regex_search(param.getSymName().str(), regex)) {
      param.setFrozen(true);
      ++frozen;
    }
  }
  if (frozen == 0)
    return optionError("--freeze '" + pattern + "' matches no parameter of the model");
  if (frozen == all)
    return optionError("--freeze '" + pattern + "' matches every parameter of the model (" +
                       std::to_string(all) + "): nothing would train; freeze fewer");
  return success();
}

/// The mt-recompute pass for `parallel`'s options; units of `full` stay
/// within a pipeline chunk.
std::unique_ptr<Pass> recomputePass(const ParallelConfig &parallel) {
  const RecomputeConfig &r = parallel.recompute;
  RecomputeOptions options;
  options.granularity = r.granularity;
  if (!r.method.empty())
    options.method = r.method;
  if (r.numLayers)
    options.numLayers = r.numLayers;
  options.modules.assign(r.modules.begin(), r.modules.end());
  options.blockLayers.assign(parallel.chunkLayers.begin(), parallel.chunkLayers.end());
  return createRecompute(options);
}

/// mt-pipeline-split for the layout (null without pp).
std::unique_ptr<Pass> pipelineSplitPass(const ParallelConfig &parallel) {
  if (parallel.pp <= 1)
    return nullptr;
  PipelineSplitOptions split;
  split.chunkLayers.assign(parallel.chunkLayers.begin(), parallel.chunkLayers.end());
  return createPipelineSplit(split);
}

/// mt-fuse without the patterns `noFuse` names (null: all of them, or
/// `all`); an unknown name is an error naming the valid ones.
FailureOr<std::unique_ptr<Pass>> fusePass(const std::vector<std::string> &noFuse) {
  FuseOptions options;
  for (const std::string &name : noFuse) {
    if (name == "all")
      return std::unique_ptr<Pass>();
    if (name == "add-rmsnorm")
      options.addRMSNorm = false;
    else if (name == "add-rmsnorm-grad")
      options.addRMSNormGrad = false;
    else if (name == "linear-fc1")
      options.linearFc1 = false;
    else if (name == "linear-qkv")
      options.linearQkv = false;
    else if (name == "rotary-qkv")
      options.rotaryQkv = false;
    else if (name == "swiglu-recompute")
      options.swigluRecompute = false;
    else
      return optionError("--no-fuse '" + name +
                         "' is not a fusion: all, add-rmsnorm, add-rmsnorm-grad, linear-fc1, "
                         "linear-qkv, rotary-qkv or swiglu-recompute");
  }
  return createFuse(options);
}

/// The plan of the step without recompute (`withoutRecompute`: the module
/// before the rewrite, split into stages here as the step is) and the FLOPs
/// the rewrite adds to each pipeline stage (`fb`: @forward_backward after it).
LogicalResult measureRecompute(ModuleOp withoutRecompute, func::FuncOp fb,
                               const ParallelConfig &parallel, std::unique_ptr<Pass> fuse,
                               RecomputeEffect &effect) {
  PassManager pm(withoutRecompute.getContext());
  if (std::unique_ptr<Pass> split = pipelineSplitPass(parallel))
    pm.addPass(std::move(split));
  if (fuse)
    pm.addPass(std::move(fuse));
  if (failed(pm.run(withoutRecompute)))
    return failure();
  FailureOr<plan::Plan> without = emitPlan(withoutRecompute, parallel, TrainingOptions{1});
  if (failed(without))
    return failure();
  effect.without = activationBytes(*without);
  effect.what = parallel.recompute.describe();
  // Stage of each layer: virtual stage v holds the v-th run of layers.
  std::vector<int64_t> stageOfLayer;
  for (size_t v = 0; v < parallel.chunkLayers.size(); ++v)
    stageOfLayer.insert(stageOfLayer.end(), size_t(parallel.chunkLayers[v]),
                        int64_t(v) % parallel.pp);
  effect.extraFlops.assign(size_t(parallel.pp), 0.0);
  effect.trainingFlops.assign(size_t(parallel.pp), 0.0);
  bool pastLayers = false; // ops outside the layers: embedding first, head last
  for (Operation &op : fb.getBody().front()) {
    auto layer = op.getAttrOfType<IntegerAttr>(MtDialect::kLayerAttrName);
    pastLayers |= bool(layer);
    int64_t stage = layer        ? stageOfLayer[size_t(layer.getInt())]
                    : pastLayers ? parallel.pp - 1
                                 : 0;
    if (op.hasAttr(MtDialect::kRecomputeAttrName)) {
      effect.extraFlops[size_t(stage)] += forwardFlops(&op);
      ++effect.ops;
    }
    else if (!op.hasAttr(MtDialect::kBackwardAttrName))
      effect.trainingFlops[size_t(stage)] += 3 * forwardFlops(&op);
  }
  return success();
}

} // namespace

FailureOr<plan::Plan> buildTrainingPlan(ModuleOp module, const ParallelConfig &parallel,
                                        const CompileOptions &options,
                                        RecomputeEffect *recompute) {
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
  // The passes read the mesh sizes from the IR; expert layers get a mesh of
  // their own over the same ranks.
  bool experts = llvm::any_of(module.getOps<ParamOp>(),
                              [](ParamOp p) { return p.getGroupedExperts(); });
  // With nothing to shard (dp·cp and edp 1) the plain step.
  opt.distributedOptimizer = parallel.shardsOptimizerState(experts);
  opt.overlapParamGather = opt.distributedOptimizer && parallel.overlapParamGather;
  opt.perTokenLoss = parallel.perTokenLoss;
  BuildStepLossOptions stepLoss;
  stepLoss.microBatches = parallel.numMicroBatches();
  stepLoss.perTokenLoss = parallel.perTokenLoss;
  PartitionTensorParallelOptions tpOptions;
  tpOptions.sequenceParallel = parallel.sequenceParallel;
  PhaseDumps dumps(options.dumpDir);
  if (!dumps.module(module, "imported"))
    return failure();
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
  // After tp: its gathers over cp then meet no tp rule.
  if (parallel.cp > 1) {
    PartitionContextParallelOptions cpOptions;
    cpOptions.commType = parallel.cpCommType;
    cpOptions.perTokenLoss = parallel.perTokenLoss;
    pipeline.push_back(createPartitionContextParallel(cpOptions));
  }
  if (experts && (parallel.ep > 1 || parallel.etp > 1 || parallel.tp > 1)) {
    PartitionExpertParallelOptions epOptions;
    epOptions.dispatcher = parallel.dispatcher();
    pipeline.push_back(createPartitionExpertParallel(epOptions));
  }
  // After the partitions: the loss mask has its local shape.
  if (parallel.perTokenLoss)
    pipeline.push_back(createPerTokenLoss());
  pipeline.push_back(createAutodiff());
  pipeline.push_back(createBuildOptimizer(opt));
  pipeline.push_back(createBuildStepLoss(stepLoss));
  pipeline.push_back(createExposeCollectives());
  pipeline.push_back(createCanonicalizerPass());
  // Last: no later pass may fold a clone back into its original.
  if (parallel.recompute.enabled())
    pipeline.push_back(recomputePass(parallel));
  if (std::unique_ptr<Pass> split = pipelineSplitPass(parallel))
    pipeline.push_back(std::move(split));
  // Last: the fused ops are neither differentiated, recomputed nor split.
  FailureOr<std::unique_ptr<Pass>> fuse = fusePass(options.noFuse);
  if (failed(fuse))
    return failure();
  if (*fuse)
    pipeline.push_back(std::move(*fuse));
  OwningOpRef<ModuleOp> withoutRecompute;
  for (std::unique_ptr<Pass> &pass : pipeline) {
    std::string phase = phaseName(*pass);
    if (recompute && phase == "recompute")
      withoutRecompute = module.clone();
    PassManager pm(module.getContext());
    pm.addPass(std::move(pass));
    if (failed(pm.run(module)) || !dumps.module(module, phase))
      return failure();
  }
  // The emitter makes each virtual stage of mt-pipeline-split one forward
  // and one backward program, and each mt.stage_transfer a send/recv pair.
  FailureOr<plan::Plan> plan = emitPlan(module, parallel, TrainingOptions{o.trainSteps});
  if (failed(plan))
    return failure();
  plan->mutable_training()->set_grad_reduce_in_bf16(!parallel.gradReduceInFp32);
  if (!dumps.plan(*plan))
    return failure();
  auto fb = module.lookupSymbol<func::FuncOp>("forward_backward");
  // (A second mt-fuse for the step without recompute; its names were checked above.)
  if (withoutRecompute &&
      failed(measureRecompute(*withoutRecompute, fb, parallel, *fusePass(options.noFuse),
                              *recompute)))
    return failure();
  return plan;
}

} // namespace mt
