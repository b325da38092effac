// import-hf, stats and compile: load, check, report.
#include "compiler/driver/Commands.h"

#include "compiler/analysis/ModelInfo.h"
#include "compiler/driver/Explain.h"
#include "compiler/driver/Pipeline.h"
#include "compiler/driver/RecomputeAdvice.h"
#include "compiler/plan/PipelineSchedule.h"
#include "runtime/support/AtomicFile.h"
#include "runtime/support/OutputPath.h"
#include "dialects/mt/MtDialect.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/support/Wording.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_os_ostream.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <fstream>
#include <string_view>

using namespace mlir;

namespace mt {
namespace {

void registerDialects(MLIRContext &context) {
  context.loadDialect<MtDialect, func::FuncDialect>();
  // A diagnostic names its op by file:line:col in the model; a dump of the
  // op on top of it only buries the message.
  context.printOpOnDiagnostic(false);
}

/// Refuses, saying what it is, a file that cannot be a model: a token file,
/// a JSON config, safetensors weights or other binary data (the MLIR parser
/// would echo its bytes to the terminal).
Status checkIsModelText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  char head[4096];
  in.read(head, sizeof(head));
  std::string_view bytes(head, size_t(in.gcount()));
  if (bytes.starts_with("MTTOKENS"))
    return Status::error(path + ": a token file (mt-tokenize's output), not a model; give the "
                                "model.mlir that `mtc import-hf` writes");
  if (bytes.size() > 9 && bytes.substr(8, 2) == "{\"")
    return Status::error(path + ": safetensors weights, not a model; weights are loaded by "
                                "`mtrun PLAN --load DIR`, the model comes from `mtc import-hf "
                                "config.json -o model.mlir`");
  if (size_t first = bytes.find_first_not_of(" \t\r\n"); first != bytes.npos && bytes[first] == '{')
    return Status::error(path + ": JSON, not a model; a Hugging Face config.json becomes one "
                                "with `mtc import-hf " + path + " -o model.mlir`");
  auto isControl = [](char c) { return (c >= 0 && c < 0x09) || (c > 0x0d && c < 0x20) || c == 0x7f; };
  if (std::any_of(bytes.begin(), bytes.end(), isControl))
    return Status::error(path + ": binary data, not a model (the MLIR text that `mtc "
                                "import-hf` writes)");
  return Status::ok();
}

/// Prints the refusal of checkOutputs, if any; true when all may be written.
bool outputsAllowed(const std::vector<io::OutputTarget> &outputs,
                    const std::vector<io::InputPath> &inputs, bool overwrite) {
  Status s = io::checkOutputs(outputs, inputs, overwrite);
  if (!s)
    llvm::errs() << "error: " << s.message() << "\n";
  return s.isOk();
}

/// A model parsed and verified, with the context it lives in; `module` is
/// null after an error, which is printed (diagnostics carry file:line:col).
struct LoadedModel {
  MLIRContext context;
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler{sourceMgr, &context};
  OwningOpRef<ModuleOp> module;

  explicit LoadedModel(const std::string &path) {
    registerDialects(context);
    if (Status s = checkIsModelText(path); !s) {
      llvm::errs() << "error: " << s.message() << "\n";
      return;
    }
    std::string error;
    auto file = openInputFile(path, &error);
    if (!file) {
      llvm::errs() << "error: " << error << "\n";
      return;
    }
    sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  }
};

} // namespace

/// The pipeline schedule `plan` carries, its predicted bubble and its SVG.
static bool explainSchedule(const ParallelConfig &p, const plan::Plan &plan,
                            const std::string &svgPath, llvm::raw_ostream &os, bool explain) {
  int64_t vpp = p.vpp ? p.vpp : 1, micro = p.numMicroBatches();
  Expected<std::vector<std::vector<PipelineAction>>> schedule = pipelineActions(plan);
  if (!schedule) {
    llvm::errs() << "error: " << schedule.message() << "\n";
    return false;
  }
  // Actions cost in proportion to their virtual stage's model FLOPs (the
  // plan's, the embedding and the output layer included).
  std::vector<double> cost = virtualStageCosts(plan);
  Expected<double> makespan = simulate(*schedule, p.pp, vpp, 2.0, cost);
  if (!makespan) {
    llvm::errs() << "error: " << makespan.message() << "\n";
    return false;
  }
  double bubble = bubbleFraction(*schedule, *makespan);
  if (explain) {
    os << "pipeline schedule: " << countOf(micro, "micro-batch", "micro-batches")
       << llvm::format(" per step, predicted bubble %.1f%% of stage time (backward = 2 x "
                       "forward)\n",
                       100.0 * bubble);
    if (!cost.empty()) {
      os << "  model FLOPs of each virtual stage over their mean (the cost the prediction "
            "gives it):";
      for (double c : cost)
        os << llvm::format(" %.2f", c);
      const auto [lo, hi] = std::minmax_element(cost.begin(), cost.end());
      if (*hi > 1.1 * *lo)
        os << "; an uneven --pp-layout (or decoder_first/last_pipeline_num_layers) giving "
              "the costlier stages fewer layers shrinks the bubble";
      os << "\n";
    }
  }
  if (svgPath.empty())
    return true;
  std::string title = "pp " + std::to_string(p.pp) + (vpp > 1 ? " x vpp " + std::to_string(vpp) : "") +
                      ", " + countOf(micro, "micro-batch", "micro-batches") + ": " +
                      (vpp > 1 ? "interleaved 1F1B" : "1F1B");
  char bubbleText[64];
  std::snprintf(bubbleText, sizeof(bubbleText), ", bubble %.1f%%", 100.0 * bubble);
  Status s =
      io::writePipelineSvg(svgPath, scheduleSvg(*schedule, vpp, *makespan, title + bubbleText));
  if (!s)
    llvm::errs() << "error: " << s.message() << "\n";
  return s.isOk();
}

/// Runs the compilation pipeline. With --dump-dir, the IR dumps go into a
/// fresh directory that replaces the dump directory whether or not a pass
/// fails: the dumps up to a failing pass show where it failed.
static FailureOr<plan::Plan> buildWithDumps(ModuleOp module, const ParallelConfig &parallel,
                                            const CompileOptions &options,
                                            RecomputeEffect *recompute) {
  if (options.dumpDir.empty())
    return buildTrainingPlan(module, parallel, options, recompute);
  FailureOr<plan::Plan> plan = failure();
  Status s = io::replaceOutputDirectory(options.dumpDir, io::OutputKind::IrDump,
                                        [&](const std::string &tmp) {
                                          CompileOptions dumping = options;
                                          dumping.dumpDir = tmp;
                                          plan = buildTrainingPlan(module, parallel, dumping,
                                                                   recompute);
                                          return Status::ok();
                                        });
  if (!s) {
    llvm::errs() << "error: --dump-dir " << options.dumpDir << ": " << s.message() << "\n";
    return failure();
  }
  return plan;
}

bool importHf(const ImportOptions &options) {
  if (options.outputPath != "-" &&
      !outputsAllowed({{"-o", options.outputPath, io::OutputKind::Model}},
                      {{"the config", options.configPath}}, options.overwrite))
    return false;
  auto spec = readHfConfig(options.configPath);
  Status fits = spec ? checkSequenceLength(*spec, options.shape.seq, options.configPath)
                     : spec.status();
  if (!fits) {
    llvm::errs() << "error: " << fits.message() << "\n";
    return false;
  }
  Status moe = options.shape.moe.validate();
  if (moe && !spec->moe && !(options.shape.moe == MoeOptions{}))
    moe = Status::error(options.configPath + " has no mixture-of-experts layers: the moe_* "
                        "routing options do not apply");
  if (!moe) {
    llvm::errs() << "error: " << moe.message() << "\n";
    return false;
  }
  if (Status s = checkModelSizes(*spec, options.shape, options.configPath); !s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  }
  for (const std::string &note : spec->notes)
    llvm::errs() << "note: " << options.configPath << ": " << note << "\n";
  for (const std::string &note : megatronChoiceNotes(*spec, options.shape))
    llvm::errs() << "note: " << options.configPath << ": " << note << "\n";
  MLIRContext context;
  registerDialects(context);
  auto module = buildModel(context, *spec, options.shape);
  if (failed(verify(*module)))
    return false;
  if (options.outputPath == "-") {
    module->print(llvm::outs());
    return true;
  }
  Status s = io::writeFileAtomically(options.outputPath, [&](std::ostream &out) {
    llvm::raw_os_ostream os(out);
    module->print(os);
    return Status::ok();
  });
  if (!s)
    llvm::errs() << "error: " << s.message() << "\n";
  return s.isOk();
}

bool printStats(const std::string &modelPath) {
  LoadedModel loaded(modelPath);
  OwningOpRef<ModuleOp> &module = loaded.module;
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

/// What a compile that writes or prints nothing lacks (after the layout is
/// checked, so that its errors come first).
static Status checkSomethingToDo(const CompileOptions &o) {
  if (o.gpuMemory && !o.explain)
    return Status::error("--gpu-memory picks a recompute option for --explain to print: add "
                         "--explain");
  if (!o.outputDir.empty() || o.explain)
    return Status::ok();
  if (!o.dumpDir.empty() || !o.freeze.empty())
    return Status::error(std::string(o.dumpDir.empty() ? "--freeze" : "--dump-dir") +
                         " applies to the plan: add -o DIR to write it, or --explain to print it");
  if (!o.scheduleSvg.empty())
    return Status::ok();
  return Status::error("the layout is valid, and there is nothing to write: add -o DIR to write "
                       "the training plan, --explain to print the layout and plan in words, or "
                       "--schedule-svg FILE to draw the pipeline schedule");
}

/// A resolved layout's warnings and notes on stderr; a warning is followed by
/// where its keys were given (withGivenAt).
static void printLayoutRemarks(const ParallelConfig &parallel,
                               const std::map<std::string, std::string> &givenAt) {
  for (const std::string &w : parallel.warnings)
    llvm::errs() << "warning: " << withGivenAt(w, givenAt) << "\n";
  for (const std::string &n : parallel.notes)
    llvm::errs() << "note: " << n << "\n";
}

/// After a layout error: how the sizes it names were derived (e.g. a dp
/// that --ep raised), which the error alone does not say.
static void printDerivedNotes(const ParallelConfig &parallel) {
  for (const std::string &n : parallel.notes)
    llvm::errs() << "note: " << n << "\n";
}

bool checkLayout(const std::string &modelPath, const ParallelConfig &layout,
                 const std::map<std::string, std::string> &givenAt) {
  LoadedModel loaded(modelPath);
  OwningOpRef<ModuleOp> &module = loaded.module;
  if (!module)
    return false;
  auto dims = readModelDims(*module);
  if (failed(dims))
    return false;
  ParallelConfig parallel = layout;
  Status resolved = parallel.resolve(*dims);
  if (!resolved) {
    llvm::errs() << "error: " << withGivenAt(resolved.message(), givenAt) << "\n";
    printDerivedNotes(parallel);
    return false;
  }
  printLayoutRemarks(parallel, givenAt);
  return true;
}

bool compileModel(const CompileOptions &options) {
  if (!outputsAllowed({{"-o", options.outputDir, io::OutputKind::Plan},
                       {"--schedule-svg", options.scheduleSvg, io::OutputKind::PipelineSvg},
                       {"--dump-dir", options.dumpDir, io::OutputKind::IrDump}},
                      {{"the model", options.modelPath}, {"--config", options.configPath}},
                      options.overwrite))
    return false;
  LoadedModel loaded(options.modelPath);
  OwningOpRef<ModuleOp> &module = loaded.module;
  if (!module)
    return false;
  auto dims = readModelDims(*module);
  if (failed(dims))
    return false;
  ParallelConfig parallel = options.parallel;
  for (Status s : {parallel.resolve(*dims), options.optimizer.validate()})
    if (!s) {
      llvm::errs() << "error: " << withGivenAt(s.message(), options.givenAt) << "\n";
      printDerivedNotes(parallel);
      if (!options.configNote.empty())
        llvm::errs() << "note: " << options.configNote << "\n";
      return false;
    }
  if (!options.layoutChecked)
    printLayoutRemarks(parallel, options.givenAt);
  if (Status s = checkSomethingToDo(options); !s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  }
  if (options.explain) {
    explainLayout(*dims, parallel, llvm::outs());
    // A LLaMA-Factory file's text has its own schedule line (transformers').
    if (options.configExplain.empty())
      explainOptimizer(options.optimizer, llvm::outs());
    llvm::outs() << options.configExplain;
  }
  const bool scheduleWanted = options.explain || !options.scheduleSvg.empty();
  if (options.outputDir.empty() && !scheduleWanted)
    return true;
  // --gpu-memory plans the step once per recompute option, from the model
  // as read (the passes rewrite `module`).
  OwningOpRef<ModuleOp> pristine;
  if (options.gpuMemory)
    pristine = module->clone();
  // --explain compares the plan with the one without recompute.
  RecomputeEffect recompute;
  bool measure = options.explain && parallel.recompute.enabled();
  // The schedule is explained from the plan, so the plan comes first.
  FailureOr<plan::Plan> plan =
      buildWithDumps(*module, parallel, options, measure ? &recompute : nullptr);
  if (failed(plan))
    return false;
  if (options.explain)
    explainPipelineStages(*plan, llvm::outs());
  if (scheduleWanted &&
      !explainSchedule(parallel, *plan, options.scheduleSvg, llvm::outs(), options.explain))
    return false;
  if (options.explain)
    explainPlan(*plan, llvm::outs(), measure ? &recompute : nullptr, options.gpuMemory);
  if (pristine &&
      failed(adviseRecompute(*pristine, *dims, parallel, options, options.gpuMemory, llvm::outs())))
    return false;
  if (options.outputDir.empty())
    return true;
  if (Status s = plan::writePlanDirectory(options.outputDir, *plan); !s) {
    llvm::errs() << "error: " << s.message() << "\n";
    return false;
  }
  return true;
}

} // namespace mt
