// Prints mesh, rank coordinates, stage -> layers and per-rank parameter
// memory of a resolved ParallelConfig.
#include "compiler/driver/Explain.h"

#include "compiler/analysis/ModelInfo.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/schedule/PipelineSchedule.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/support/Wording.h"
#include "dialects/mt/MtDialect.h"

#include "llvm/Support/Format.h"

#include <algorithm>
#include <array>
#include <map>
#include <string>

using namespace mlir;

namespace mt {
namespace {

constexpr std::array<const char *, 5> kAxisNames = {"pp", "dp", "cp", "ep", "tp"};

/// Parameters owned by each layer (-1: outside the layers), counted where
/// they are read.
std::map<int64_t, int64_t> parametersByLayer(ModuleOp module) {
  std::map<int64_t, int64_t> byLayer;
  std::map<StringRef, int64_t> seen;
  module.walk([&](WeightOp weight) {
    if (!seen.emplace(weight.getParam(), 1).second)
      return; // a tied parameter counts once, where it is first read
    auto layer = weight->getAttrOfType<IntegerAttr>(MtDialect::kLayerAttrName);
    byLayer[layer ? layer.getInt() : -1] +=
        cast<RankedTensorType>(weight.getType()).getNumElements();
  });
  return byLayer;
}

} // namespace

void explainLayout(ModuleOp module, const ModelDims &dims,
                   const ParallelConfig &p, llvm::raw_ostream &os) {
  std::array<int64_t, 5> sizes = {p.pp, p.dp, p.cp, p.ep, p.tp};
  int64_t vpp = p.vpp ? p.vpp : 1;
  os << "model: " << countOf(dims.numLayers, "layer") << ", "
     << countOf(dims.numHeads, "query head") << ", " << countOf(dims.numKvHeads, "kv head")
     << ", vocabulary " << dims.vocabSize;
  if (dims.numExperts)
    os << ", " << countOf(dims.numExperts, "expert");
  os << "\n";
  os << "batch: micro-batch " << p.microBatch << " x seq " << p.seq
     << "; global batch " << p.globalBatch << " = " << p.microBatch << " x "
     << countOf(p.numMicroBatches(), "micro-batch", "micro-batches") << " x dp " << p.dp << "\n";
  os << "mesh (pp, dp, cp, ep, tp) = (" << p.pp << ", " << p.dp << ", " << p.cp
     << ", " << p.ep << ", " << p.tp << "): " << countOf(p.worldSize, "rank") << ", tp "
     << "fastest-varying\n";
  int64_t listed = std::min<int64_t>(p.worldSize, 16);
  for (int64_t rank = 0; rank < listed; ++rank) {
    std::array<int64_t, 5> coord;
    int64_t rest = rank;
    for (int axis = 4; axis >= 0; --axis) {
      coord[axis] = rest % sizes[axis];
      rest /= sizes[axis];
    }
    os << "  rank " << rank << " ->";
    for (int axis = 0; axis < 5; ++axis)
      os << " " << kAxisNames[axis] << "=" << coord[axis];
    os << "\n";
  }
  if (listed < p.worldSize)
    os << "  ... (" << p.worldSize - listed << " more)\n";
  os << "tensor parallel: " << p.tp << " (" << countOf(dims.numHeads / p.tp, "query head")
     << ", " << countOf(dims.numKvHeads / p.tp, "kv head") << " per rank)"
     << (p.sequenceParallel ? ", sequence parallel" : "") << "\n";

  // Virtual stage v holds the v-th run of layers; chunk c of stage s is
  // virtual stage c * pp + s.
  std::vector<int64_t> firstLayer = {0};
  for (int64_t n : p.chunkLayers)
    firstLayer.push_back(firstLayer.back() + n);
  bool even = std::all_of(p.chunkLayers.begin(), p.chunkLayers.end(),
                          [&](int64_t n) { return n == p.chunkLayers.front(); });
  os << "pipeline: " << countOf(p.pp, "stage") << " x " << countOf(vpp, "virtual chunk") << ", ";
  if (even)
    os << p.chunkLayers.front() << " layers per chunk";
  else
    os << "uneven layout";
  os << ", schedule " << (p.pp == 1 ? "none" : (vpp > 1 ? "interleaved 1F1B" : "1F1B")) << "\n";
  auto byLayer = parametersByLayer(module);
  for (int64_t stage = 0; stage < p.pp; ++stage) {
    os << "  stage " << stage << ": layers";
    int64_t params = 0;
    for (int64_t chunk = 0; chunk < vpp; ++chunk) {
      int64_t v = chunk * p.pp + stage, first = firstLayer[v], end = firstLayer[v + 1];
      os << (chunk ? ", " : " ") << first << "-" << end - 1;
      for (int64_t l = first; l < end; ++l)
        params += byLayer[l];
    }
    if (stage == 0 || stage == p.pp - 1)
      params += byLayer[-1]; // embedding on the first, head on the last stage
    // fp32 weights + fp32 gradients + two fp32 AdamW moments: 16 bytes each.
    double perRank = double(params) / p.tp;
    os << llvm::format("; ~%.3g parameters per rank, ~%.3g GiB weights + "
                       "gradients + optimizer state\n",
                       perRank, perRank * 16 / (1 << 30));
  }
}

namespace {

std::string bytesText(double bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4)
    bytes /= 1024, ++unit;
  std::string out;
  llvm::raw_string_ostream os(out);
  os << llvm::format(unit ? "%.1f %s" : "%.0f %s", bytes, units[unit]);
  return out;
}

} // namespace

void explainPlan(const plan::Plan &plan, llvm::raw_ostream &os) {
  const plan::Mesh &m = plan.mesh();
  int64_t ranks = plan::worldSize(m);
  int64_t microBatches = plan.training().micro_batches_per_step();
  bool pipelined = plan.training().virtual_stages() > 1;
  os << "plan: " << countOf(plan.programs_size(), "program") << " for " << countOf(ranks, "rank")
     << " ("
     << (pipelined ? "each stage runs its own; " : "all run the same; ")
     << "ranks differ in their communicator groups, slices and data); memory per rank:\n";
  std::map<plan::ArenaKind, uint64_t> arenas;
  for (const plan::Arena &a : plan.arenas())
    arenas[a.kind()] = a.size_bytes();
  const plan::DeviceFootprint gpu = plan::deviceFootprint(plan);
  // A pipeline stage keeps each micro-batch in flight in an activation slot
  // of its own: the rank of the stage with the most in flight needs most.
  uint64_t slots = 1;
  if (pipelined) {
    auto schedule = pipelineSchedule(m.pp(), plan.training().virtual_stages() / m.pp(),
                                     microBatches);
    for (const auto &stage : schedule) {
      int64_t count = 0;
      activationSlots(stage, microBatches, count);
      slots = std::max(slots, uint64_t(count));
    }
  }
  struct Row { const char *what; uint64_t cpu, gpu; };
  const Row rows[] = {
      {"weights (fp32 master)", arenas[plan::PARAMETERS], gpu.weights},
      {"weights (bf16 copy the GPU reads)", 0, gpu.shadows},
      {"gradients (fp32 main)", arenas[plan::GRADIENTS], gpu.gradients},
      {"AdamW state (fp32)", arenas[plan::OPTIMIZER], gpu.optimizer},
      {pipelined ? "activations (micro-batches in flight)"
                 : "activations (peak, liveness-planned)",
       arenas[plan::ACTIVATIONS] * slots, gpu.activations * slots},
      {"activations kept 32-bit (lse, scalars)", 0, gpu.wideActivations * slots},
      {"inputs", arenas[plan::INPUTS] * slots, (gpu.inputs + gpu.outputs) * slots}};
  os << llvm::format("  %-38s %12s %12s\n", "", "CPU (fp32)", "CUDA (bf16)");
  uint64_t cpuTotal = 0, gpuTotal = 0;
  for (const Row &r : rows) {
    os << llvm::format("  %-38s %12s %12s\n", r.what,
                       r.cpu ? bytesText(double(r.cpu)).c_str() : "-",
                       bytesText(double(r.gpu)).c_str());
    cpuTotal += r.cpu;
    gpuTotal += r.gpu;
  }
  os << llvm::format("  %-38s %12s %12s\n", "total (plan arenas)",
                     bytesText(double(cpuTotal)).c_str(), bytesText(double(gpuTotal)).c_str());
  os << "  (the GPU also holds its CUDA context and library workspaces, about 0.5 GiB)\n";
  if (pipelined)
    os << "  (a pipeline rank holds its stage's parameters; activations: "
       << countOf(int64_t(slots), "slot") << " of "
       << countOf(microBatches, "micro-batch", "micro-batches")
       << ", on the stage with the most in flight)\n";
  // Collectives of one step: forward and backward programs run once per
  // micro-batch (summed over the stages of a pipeline).
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>> collectives;
  for (const plan::Program &program : plan.programs()) {
    bool perMicroBatch = program.name() == "forward_backward" ||
                         program.name().rfind("forward.", 0) == 0 ||
                         program.name().rfind("backward.", 0) == 0;
    int64_t runs = perMicroBatch ? microBatches : 1;
    for (const plan::Instruction &instr : program.instructions()) {
      plan::Attrs attrs(instr);
      std::string axis = attrs.s("axis");
      uint64_t bytes = 0;
      if (!axis.empty()) { // all_reduce, all_gather, reduce_scatter
        for (uint32_t id : instr.inputs())
          bytes = plan.buffers(id).size_bytes();
      } else if (instr.op() == "send") {
        axis = "pp";
        bytes = plan.buffers(instr.inputs(0)).size_bytes();
      } else if (instr.op().rfind("cross_entropy", 0) == 0 &&
                 !(axis = attrs.s("vocab_parallel_axis")).empty()) {
        bytes = 3 * uint64_t(attrs.i("tokens")) * 4; // max, sum of exp, label logit
      } else if (instr.op() == "global_norm" && !(axis = attrs.s("sharded_axis")).empty()) {
        bytes = 4;
      } else {
        continue;
      }
      auto &entry = collectives[{instr.op(), axis}];
      entry.first += runs;
      entry.second += double(runs) * double(bytes);
    }
  }
  os << "collectives per step (" << countOf(microBatches, "micro-batch", "micro-batches")
     << (pipelined ? ", summed over stages" : "") << "):\n";
  if (collectives.empty())
    os << "  none\n";
  for (const auto &[key, value] : collectives)
    os << llvm::format("  %-20s over %-7s %8lld x, %12s\n", key.first.c_str(),
                       key.second.c_str(), (long long)value.first,
                       bytesText(value.second).c_str());
}

} // namespace mt
