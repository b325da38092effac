// import-hf, stats and compile: load, check, report.
#include "compiler/driver/Commands.h"

#include "compiler/analysis/ModelInfo.h"
#include "compiler/driver/Explain.h"
#include "compiler/driver/Pipeline.h"
#include "runtime/schedule/PipelineSchedule.h"
#include "runtime/io/AtomicFile.h"
#include "dialects/mt/MtDialect.h"
#include "runtime/plan/PlanIO.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace mt {
namespace {

void registerDialects(MLIRContext &context) {
  context.loadDialect<MtDialect, func::FuncDialect>();
}

/// Parses and verifies a model; diagnostics carry file:line:col.
OwningOpRef<ModuleOp> loadModel(MLIRContext &context, const std::string &path,
                                llvm::SourceMgr &sourceMgr) {
  std::string error;
  auto file = openInputFile(path, &error);
  if (!file) {
    llvm::errs() << "error: " << error << "\n";
    return nullptr;
  }
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return parseSourceFile<ModuleOp>(sourceMgr, &context);
}

std::string withCommas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return out;
}

} // namespace

/// The pipeline schedule of the layout: its predicted bubble, and its SVG.
static bool explainSchedule(const ParallelConfig &p, const std::string &svgPath,
                            llvm::raw_ostream &os, bool explain) {
  int64_t vpp = p.vpp ? p.vpp : 1, micro = p.numMicroBatches();
  auto schedule = pipelineSchedule(p.pp, vpp, micro);
  // Actions cost in proportion to their virtual stage's layers.
  std::vector<double> cost;
  double mean = 0;
  for (int64_t n : p.chunkLayers)
    mean += double(n) / double(p.chunkLayers.size());
  for (int64_t n : p.chunkLayers)
    cost.push_back(double(n) / mean);
  double makespan = simulate(schedule, p.pp, vpp, 2.0, cost);
  double bubble = bubbleFraction(schedule, makespan);
  if (explain)
    os << llvm::format("pipeline schedule: %lld micro-batches per step, predicted bubble "
                       "%.1f%% of stage time (backward = 2 x forward)\n",
                       (long long)micro, 100.0 * bubble);
  if (svgPath.empty())
    return true;
  std::string title = "pp " + std::to_string(p.pp) + (vpp > 1 ? " x vpp " + std::to_string(vpp) : "") +
                      ", " + std::to_string(micro) + " micro-batches: " +
                      (vpp > 1 ? "interleaved 1F1B" : "1F1B");
  char bubbleText[64];
  std::snprintf(bubbleText, sizeof(bubbleText), ", bubble %.1f%%", 100.0 * bubble);
  Status s = io::writeFileAtomically(svgPath, [&](std::ostream &out) {
    out << scheduleSvg(schedule, vpp, makespan, title + bubbleText);
    return Status::ok();
  });
  if (!s)
    llvm::errs() << "error: " << s.message() << "\n";
  return s.isOk();
}

bool importHf(const ImportOptions &options) {
  auto spec = readHfConfig(options.configPath);
  if (!spec) {
    llvm::errs() << "error: " << spec.message() << "\n";
    return false;
  }
  if (Status s = checkModelSizes(*spec, options.shape, options.configPath); !s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  }
  MLIRContext context;
  registerDialects(context);
  auto module = buildModel(context, *spec, options.shape);
  if (failed(verify(*module)))
    return false;
  std::string error;
  auto output = openOutputFile(options.outputPath, &error);
  if (!output) {
    llvm::errs() << "error: " << error << "\n";
    return false;
  }
  module->print(output->os());
  output->keep();
  return true;
}

bool printStats(const std::string &modelPath) {
  MLIRContext context;
  registerDialects(context);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  auto module = loadModel(context, modelPath, sourceMgr);
  if (!module)
    return false;
  auto stats = computeModelStats(*module);
  if (failed(stats))
    return false;
  llvm::outs() << "parameters:                  " << withCommas(stats->parameters)
               << "\n";
  llvm::outs() << llvm::format("forward FLOPs per token:     %.6e\n",
                               stats->forwardFlopsPerToken);
  llvm::outs() << llvm::format("training FLOPs per token:    %.6e\n",
                               stats->trainingFlopsPerToken());
  llvm::outs() << "tokens per micro-batch:      "
               << withCommas(stats->tokensPerMicroBatch) << "\n";
  return true;
}

bool compileModel(const CompileOptions &options) {
  MLIRContext context;
  registerDialects(context);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  auto module = loadModel(context, options.modelPath, sourceMgr);
  if (!module)
    return false;
  auto dims = readModelDims(*module);
  if (failed(dims))
    return false;
  ParallelConfig parallel = options.parallel;
  if (Status s = parallel.resolve(*dims); !s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  }
  if (Status s = options.optimizer.validate(); !s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  }
  if (options.explain)
    explainLayout(*module, *dims, parallel, llvm::outs());
  if ((options.explain || !options.scheduleSvg.empty()) &&
      !explainSchedule(parallel, options.scheduleSvg, llvm::outs(), options.explain))
    return false;
  // Plans cover tensor, sequence and data parallelism so far; the other
  // axes are validated (and explained) but not partitioned yet.
  for (auto [name, size] : {std::pair{"context_parallel_size (--cp)", parallel.cp},
                            std::pair{"expert_model_parallel_size (--ep)", parallel.ep}})
    if (size != 1) {
      if (options.outputDir.empty())
        return true;
      llvm::errs() << "error: " << name << " = " << size
                   << ": this version of mtc writes plans for tensor, sequence, "
                      "pipeline and data parallelism only (--tp, --sp, --pp, --vpp, --dp)\n";
      return false;
    }
  if (options.outputDir.empty() && !options.explain)
    return true;
  auto plan = buildTrainingPlan(*module, parallel, options);
  if (failed(plan))
    return false;
  if (options.explain)
    explainPlan(*plan, llvm::outs());
  if (options.outputDir.empty())
    return true;
  if (Status s = plan::writePlanDirectory(options.outputDir, *plan); !s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  }
  return true;
}

} // namespace mt
