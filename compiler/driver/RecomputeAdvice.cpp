// The cheapest activation recompute that fits a GPU, found by planning the
// step with each option (the planner's numbers, not an estimate).
#include "compiler/driver/RecomputeAdvice.h"

#include "compiler/driver/Pipeline.h"
#include "runtime/plan/DeviceFootprint.h"

#include "llvm/Support/Format.h"

#include <algorithm>

using namespace mlir;

namespace mt {
namespace {

/// Pinned host <-> GPU bandwidth the offload copies are predicted at: PCIe
/// 5.0 x16 (64 GB/s raw), about what cudaMemcpyAsync reaches from pinned
/// memory on an H100/H200 host.
constexpr double kHostLinkBytesPerSecond = 50e9;

/// What Trinity's optimizer_offload would change on one rank of `plan`: the
/// fp32 master weights and AdamW state leave the GPU for host memory, and
/// each step copies the bf16 gradients the rank updates to the host and its
/// updated bf16 weights back (with the distributed optimizer, its 1/dp).
struct OffloadEffect {
  uint64_t deviceFreed = 0, hostAdded = 0, copiedPerStep = 0;
};
OffloadEffect optimizerOffload(const plan::Plan &plan) {
  const plan::DeviceFootprint gpu = plan::deviceFootprint(plan);
  const uint64_t dp = plan.buckets_size() ? uint64_t(std::max<int64_t>(plan.mesh().dp(), 1)) : 1;
  const uint64_t updated = gpu.weights / 4 / dp; // parameters this rank updates
  OffloadEffect e;
  // The host keeps the weights and AdamW state already (cudaHostBytes);
  // offload adds the gradients it updates from.
  e.deviceFreed = gpu.weights + gpu.optimizer;
  e.hostAdded = 4 * updated;
  e.copiedPerStep = 2 * 2 * updated;
  return e;
}

} // namespace

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
    OffloadEffect offload;
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
                     training > 0 ? 100.0 * extra / training : 0.0, optimizerOffload(*plan)});
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
  if (best) {
    os << llvm::format("  cheapest that fits: %s (%+.1f%% of the model FLOPs of training)\n",
                       best->what.c_str(), best->extraPercent);
    return success();
  }
  // Then the same with the optimizer offloaded, a prediction: this version
  // refuses optimizer_offload.
  for (const Tried &t : tried)
    if (t.bytes - t.offload.deviceFreed <= gpuBytes &&
        (!best || t.extraPercent < best->extraPercent))
      best = &t;
  if (!best) {
    os << "  none fits, not even with optimizer_offload: split the model over more ranks (--tp, "
          "--pp)\n";
    return success();
  }
  const OffloadEffect &o = best->offload;
  os << llvm::format("  none fits; with optimizer_offload (not in this version yet, issue 16) "
                     "the cheapest that would is '%s' (%+.1f%% FLOPs): %s on the GPU, %s more "
                     "host memory, %s copied per step (about %.1f ms at %.0f GB/s)\n",
                     best->what.c_str(), best->extraPercent,
                     bytesText(double(best->bytes - o.deviceFreed)).c_str(),
                     bytesText(double(o.hostAdded)).c_str(),
                     bytesText(double(o.copiedPerStep)).c_str(),
                     1e3 * double(o.copiedPerStep) / kHostLinkBytesPerSecond,
                     kHostLinkBytesPerSecond / 1e9);
  return success();
}

} // namespace mt
