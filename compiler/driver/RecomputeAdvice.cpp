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

/// One recompute option as planned.
struct Tried {
  std::string what;
  uint64_t bytes;      // on the GPU, with the CUDA context
  uint64_t hostBytes;  // the CUDA backend's host memory (cudaHostBytes)
  uint64_t copied;     // optimizer_offload: bytes copied per step (gradients and weights)
  double extraPercent; // of the model FLOPs of training, summed over stages
};

/// The offload options a round of candidates is planned with.
struct Offload {
  bool optimizer = false, grads = false;
  /// "optimizer_offload (--optimizer-offload)" and the like.
  std::string describe() const {
    std::string out = optimizer ? "optimizer_offload (--optimizer-offload)" : "";
    if (grads)
      out += std::string(out.empty() ? "" : " and ") + "grad_offload (--grad-offload)";
    return out;
  }
};

/// Plans every candidate of recomputeCandidates with `offload`, its CUDA
/// memory on a device of `gpuBytes`.
FailureOr<std::vector<Tried>> planCandidates(ModuleOp module, const ModelDims &dims,
                                             const ParallelConfig &parallel,
                                             const CompileOptions &quiet, Offload offload,
                                             uint64_t gpuBytes) {
  std::vector<Tried> tried;
  for (const RecomputeConfig &candidate : recomputeCandidates(dims, parallel)) {
    ParallelConfig p = parallel;
    p.recompute = candidate;
    p.optimizerOffload = offload.optimizer;
    p.gradOffload = offload.grads;
    OwningOpRef<ModuleOp> copy = module.clone();
    RecomputeEffect effect;
    FailureOr<plan::Plan> plan =
        buildTrainingPlan(*copy, p, quiet, candidate.enabled() ? &effect : nullptr);
    if (failed(plan))
      return failure();
    double extra = 0, training = 0;
    for (size_t s = 0; s < effect.extraFlops.size(); ++s)
      extra += effect.extraFlops[s], training += effect.trainingFlops[s];
    const CudaHostBytes host = cudaHostBytes(*plan);
    // optimizer_offload copies each gradient (a master's size) to the host
    // and each updated master back.
    tried.push_back({candidate.describe(), gpuPlanBytes(*plan, gpuBytes) + kCudaContextBytes,
                     host.total(), 2 * host.masters,
                     training > 0 ? 100.0 * extra / training : 0.0});
  }
  return tried;
}

/// The option with the fewest extra FLOPs that fits `gpuBytes`; null: none.
const Tried *cheapestFit(const std::vector<Tried> &tried, uint64_t gpuBytes) {
  const Tried *best = nullptr;
  for (const Tried &t : tried)
    if (t.bytes <= gpuBytes && (!best || t.extraPercent < best->extraPercent))
      best = &t;
  return best;
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
  const Offload given{parallel.optimizerOffload, parallel.gradOffload};
  auto tried = planCandidates(module, dims, parallel, quiet, given, gpuBytes);
  if (failed(tried))
    return failure();
  os << "activation recompute for --gpu-memory " << bytesText(double(gpuBytes))
     << " (CUDA memory per rank: plan arenas and about " << bytesText(double(kCudaContextBytes))
     << " of CUDA context"
     << (given.optimizer || given.grads ? ", with " + given.describe() : std::string())
     << "):\n";
  for (const Tried &t : *tried)
    os << llvm::format("  %-44s %12s  %+6.1f%% FLOPs  %s\n", t.what.c_str(),
                       bytesText(double(t.bytes)).c_str(), t.extraPercent,
                       t.bytes <= gpuBytes ? "fits" : "does not fit");
  if (const Tried *best = cheapestFit(*tried, gpuBytes)) {
    os << llvm::format("  cheapest that fits: %s (%+.1f%% of the model FLOPs of training)\n",
                       best->what.c_str(), best->extraPercent);
    return success();
  }
  // Then each option planned again with more offloaded: the optimizer,
  // then the gradients too (with the distributed optimizer, the reduced
  // shards on the host and the buckets staged around their uses).
  std::vector<Offload> ladder;
  if (!given.optimizer)
    ladder.push_back({true, given.grads});
  if (!given.grads)
    ladder.push_back({true, true});
  for (const Offload &offload : ladder) {
    auto offloaded = planCandidates(module, dims, parallel, quiet, offload, gpuBytes);
    if (failed(offloaded))
      return failure();
    const Tried *best = cheapestFit(*offloaded, gpuBytes);
    if (!best)
      continue;
    const Tried &plain = (*tried)[size_t(best - offloaded->data())];
    os << llvm::format("  none fits; with %s the cheapest that does is '%s' (%+.1f%% FLOPs): %s "
                       "on the GPU, %s more host memory",
                       offload.describe().c_str(), best->what.c_str(), best->extraPercent,
                       bytesText(double(best->bytes)).c_str(),
                       bytesText(double(best->hostBytes - plain.hostBytes)).c_str());
    // grad_offload's copies depend on each gradient's uses per micro-batch.
    if (!offload.grads)
      os << llvm::format(", %s copied per step (about %.1f ms at %.0f GB/s)",
                         bytesText(double(best->copied)).c_str(),
                         1e3 * double(best->copied) / kHostLinkBytesPerSecond,
                         kHostLinkBytesPerSecond / 1e9);
    os << "\n";
    return success();
  }
  os << "  none fits, not even with " << Offload{true, true}.describe()
     << ": split the model over more ranks (--tp, --pp)\n";
  return success();
}

} // namespace mt
