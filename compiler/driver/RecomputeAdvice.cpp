// The cheapest activation recompute that fits a GPU, found by planning the
// step with each option (the planner's numbers, not an estimate).
#include "compiler/driver/RecomputeAdvice.h"

#include "compiler/driver/Pipeline.h"

#include "llvm/Support/Format.h"

#include <algorithm>

using namespace mlir;

namespace mt {

std::vector<RecomputeConfig> recomputeCandidates(const ModelDims &dims,
                                                 const ParallelConfig &parallel) {
  std::vector<RecomputeConfig> out = {RecomputeConfig()};
  std::vector<std::vector<std::string>> sets = {{"core_attn"},
                                                {"layernorm"},
                                                {"core_attn", "layernorm"},
                                                {"mlp"},
                                                {"mlp", "layernorm"},
                                                {"core_attn", "mlp", "layernorm"}};
  if (dims.numExperts) {
    sets.push_back({"moe"});
    sets.push_back({"core_attn", "mlp", "moe", "layernorm"});
  }
  for (auto &modules : sets)
    out.push_back(RecomputeConfig{"selective", "", 0, modules, false});
  int64_t most = *std::max_element(parallel.chunkLayers.begin(), parallel.chunkLayers.end());
  for (int64_t n = 1; n < most; ++n)
    out.push_back(RecomputeConfig{"full", "block", n, {}, false});
  out.push_back(RecomputeConfig{"full", "uniform", 1, {}, false});
  return out;
}

LogicalResult adviseRecompute(ModuleOp module, const ModelDims &dims,
                              const ParallelConfig &parallel, const CompileOptions &options,
                              uint64_t gpuBytes, llvm::raw_ostream &os) {
  CompileOptions quiet = options;
  quiet.dumpDir.clear();
  struct Tried {
    std::string what;
    uint64_t bytes;
    double extraPercent; // of the model FLOPs of training, summed over stages
  };
  std::vector<Tried> tried;
  for (const RecomputeConfig &candidate : recomputeCandidates(dims, parallel)) {
    ParallelConfig p = parallel;
    p.recompute = candidate;
    OwningOpRef<ModuleOp> copy = module.clone();
    RecomputeEffect effect;
    FailureOr<plan::Plan> plan =
        buildTrainingPlan(*copy, p, quiet, candidate.enabled() ? &effect : nullptr);
    if (failed(plan))
      return failure();
    double extra = 0, training = 0;
    for (size_t s = 0; s < effect.extraFlops.size(); ++s)
      extra += effect.extraFlops[s], training += effect.trainingFlops[s];
    tried.push_back({candidate.describe(), gpuPlanBytes(*plan) + kCudaContextBytes,
                     training > 0 ? 100.0 * extra / training : 0.0});
  }
  os << "activation recompute for --gpu-memory " << bytesText(double(gpuBytes))
     << " (CUDA memory per rank: plan arenas and about " << bytesText(double(kCudaContextBytes))
     << " of CUDA context):\n";
  for (const Tried &t : tried)
    os << llvm::format("  %-44s %12s  %+6.1f%% FLOPs  %s\n", t.what.c_str(),
                       bytesText(double(t.bytes)).c_str(), t.extraPercent,
                       t.bytes <= gpuBytes ? "fits" : "does not fit");
  const Tried *best = nullptr;
  for (const Tried &t : tried)
    if (t.bytes <= gpuBytes && (!best || t.extraPercent < best->extraPercent))
      best = &t;
  if (best)
    os << llvm::format("  cheapest that fits: %s (%+.1f%% of the model FLOPs of training)\n",
                       best->what.c_str(), best->extraPercent);
  else
    os << "  none fits: split the model over more ranks (--tp, --pp), or offload (issue 16)\n";
  return success();
}

} // namespace mt
