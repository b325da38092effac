// Prints the mesh, rank coordinates and stage -> layers of a resolved
// ParallelConfig, and what its plan gives each rank: parameters per stage,
// memory per arena and the collectives of a step.
#include "compiler/driver/Explain.h"

#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/Wording.h"

#include "llvm/Support/Format.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <set>
#include <vector>

namespace mt {
namespace {

constexpr std::array<const char *, 5> kAxisNames = {"pp", "dp", "cp", "ep", "tp"};

/// "layer 0", "layers 0-3", "layers 0-1, 4-5": runs of consecutive layers.
std::string layersText(const std::set<int64_t> &numbers) {
  std::string out;
  for (auto it = numbers.begin(); it != numbers.end();) {
    int64_t first = *it, last = first;
    while (++it != numbers.end() && *it == last + 1)
      last = *it;
    out += (out.empty() ? "" : ", ") + std::to_string(first);
    if (last != first)
      out += "-" + std::to_string(last);
  }
  return (numbers.size() == 1 ? "layer " : "layers ") + out;
}

} // namespace

std::string withCommas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return out;
}

void explainLayout(const ModelDims &dims, const ParallelConfig &p, llvm::raw_ostream &os) {
  std::array<int64_t, 5> sizes = {p.pp, p.dp, p.cp, p.ep, p.tp};
  int64_t vpp = p.vpp ? p.vpp : 1;
  os << "model: " << countOf(dims.numLayers, "layer") << ", " << countOf(dims.numHeads, "query head")
     << ", " << countOf(dims.numKvHeads, "kv head") << ", vocabulary " << dims.vocabSize;
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
  os << "tensor parallel: " << p.tp << " (" << countOf(dims.numHeads / p.tp, "query head") << ", "
     << countOf(dims.numKvHeads / p.tp, "kv head") << " per rank)"
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
    os << countOf(p.chunkLayers.front(), "layer") << " per chunk";
  else
    os << "uneven layout";
  os << ", schedule " << (p.pp == 1 ? "none" : (vpp > 1 ? "interleaved 1F1B" : "1F1B")) << "\n";
  for (int64_t stage = 0; stage < p.pp; ++stage) {
    std::set<int64_t> layers;
    for (int64_t chunk = 0; chunk < vpp; ++chunk) {
      int64_t v = chunk * p.pp + stage;
      for (int64_t l = firstLayer[v]; l < firstLayer[v + 1]; ++l)
        layers.insert(l);
    }
    os << "  stage " << stage << ": " << layersText(layers) << "\n";
  }
  // Memory figures come from a plan alone (explainPlan), so that they are
  // the ones mtrun allocates.
  if (p.cp != 1 || p.ep != 1)
    os << "(parameters and memory per rank come from the plan, and plans do not cover --cp "
          "and --ep yet)\n";
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

/// The transformer layer of a Hugging Face parameter name
/// (`model.layers.3.mlp.up_proj.weight` -> 3); -1 outside the layers.
int64_t layerOf(const std::string &name) {
  for (size_t at = name.find("layers."); at != std::string::npos;
       at = name.find("layers.", at + 1)) {
    size_t digits = at + 7, end = digits;
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end])))
      ++end;
    if ((at == 0 || name[at - 1] == '.') && end > digits && end < name.size() &&
        name[end] == '.')
      return std::stoll(name.substr(digits, end - digits));
  }
  return -1;
}

/// What one pipeline stage's ranks hold of the model's parameters.
struct StageParameters {
  int64_t parameters = 0; // elements of the rank's slices
  uint64_t bytes = 0;     // weights + gradients + AdamW moments, as planned
  std::set<int64_t> layers;
  std::vector<std::string> others; // outside the layers; a tied copy marked
};

/// The parameters each pipeline stage holds (one entry without pp), from
/// the plan's parameters, their buffers and their (tied) stage.
std::vector<StageParameters> stageParameters(const plan::Plan &plan) {
  std::vector<StageParameters> stages(size_t(std::max<int64_t>(plan.mesh().pp(), 1)));
  for (const plan::Parameter &p : plan.parameters()) {
    uint64_t bytes = plan.buffers(p.param_buffer()).size_bytes();
    if (p.trainable())
      for (uint32_t id : {p.grad_buffer(), p.exp_avg_buffer(), p.exp_avg_sq_buffer()})
        bytes += plan.buffers(id).size_bytes();
    int64_t layer = layerOf(p.name());
    for (size_t s = 0; s < stages.size(); ++s) {
      if (!plan::stageHolds(p, int64_t(s)))
        continue;
      StageParameters &stage = stages[s];
      stage.parameters += plan::elementsOf(plan.buffers(p.param_buffer()));
      stage.bytes += bytes;
      if (layer >= 0)
        stage.layers.insert(layer);
      else
        stage.others.push_back(p.name() + (p.stage() != int64_t(s) ? " (tied copy)" : ""));
    }
  }
  return stages;
}

void printStageParameters(const plan::Plan &plan, llvm::raw_ostream &os) {
  os << "parameters per rank (a slice of each tensor-parallel one), with their fp32 weights, "
        "gradients and AdamW state:\n";
  const auto stages = stageParameters(plan);
  for (size_t s = 0; s < stages.size(); ++s) {
    const StageParameters &stage = stages[s];
    std::string what = stage.layers.empty() ? "" : layersText(stage.layers);
    for (const std::string &name : stage.others)
      what += (what.empty() ? "" : ", ") + name;
    os << "  stage " << s << ": " << withCommas(stage.parameters)
       << (stage.parameters == 1 ? " parameter, " : " parameters, ")
       << bytesText(double(stage.bytes)) << " (" << what << ")\n";
  }
}

/// The activation slots a stage's schedule needs at most (1 without pp).
uint64_t mostActivationSlots(const plan::Plan &plan) {
  int64_t slots = 1;
  for (const plan::StageSchedule &stage : plan.schedule())
    slots = std::max(slots, stage.activation_slots());
  return uint64_t(slots);
}

void printMemory(const plan::Plan &plan, llvm::raw_ostream &os) {
  bool pipelined = plan.training().virtual_stages() > 1;
  std::map<plan::ArenaKind, uint64_t> arenas;
  for (const plan::Arena &a : plan.arenas())
    arenas[a.kind()] = a.size_bytes();
  const plan::DeviceFootprint gpu = plan::deviceFootprint(plan);
  // A pipeline stage keeps each micro-batch in flight in an activation slot
  // of its own: the rank of the stage with the most in flight needs most.
  const uint64_t slots = mostActivationSlots(plan);
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
  os << "memory per rank:\n";
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
    os << "  (every rank's weight, gradient and AdamW arenas fit the stage that holds the most; "
          "activations: "
       << countOf(int64_t(slots), "slot") << " of "
       << countOf(plan.training().micro_batches_per_step(), "micro-batch", "micro-batches")
       << ", on the stage with the most in flight)\n";
}

/// One collective of an instruction: its group's axis, the bytes of its
/// full tensor (nccl-tests' size: an all-gather's output, a
/// reduce-scatter's input), and whether it reduces into every rank
/// (all-reduce: a ring sends each byte twice).
struct Collective {
  std::string axis;
  uint64_t bytes;
  bool allReduce;
};

std::vector<Collective> collectivesOf(const plan::Plan &plan, const plan::Instruction &instr) {
  plan::Attrs attrs(instr);
  const std::string &op = instr.op();
  auto size = [&](uint32_t id) { return plan.buffers(id).size_bytes(); };
  if (op == "all_reduce")
    return {{attrs.s("axis"), size(instr.inputs(0)), true}};
  if (op == "reduce_scatter")
    return {{attrs.s("axis"), size(instr.inputs(0)), false}};
  if (op == "all_gather")
    return {{attrs.s("axis"), size(instr.outputs(0)), false}};
  if (op == "send")
    return {{"pp", size(instr.inputs(0)), false}};
  return {};
}

/// Ranks in the group of `axis`: a mesh axis, or the first and last stage
/// that share a tied parameter.
int64_t groupSize(const plan::Mesh &m, const std::string &axis) {
  const std::map<std::string, int64_t> sizes = {
      {"pp", m.pp()}, {"dp", m.dp()}, {"cp", m.cp()}, {"ep", m.ep()}, {"tp", m.tp()},
      {"pp_tied", 2}};
  auto it = sizes.find(axis);
  return it == sizes.end() ? 1 : it->second;
}

void printCollectives(const plan::Plan &plan, llvm::raw_ostream &os) {
  const int64_t microBatches = plan.training().micro_batches_per_step();
  const bool pipelined = plan.training().virtual_stages() > 1;
  struct Total { int64_t runs = 0; double bytes = 0, sent = 0; };
  std::map<std::pair<std::string, std::string>, Total> totals;
  for (const plan::Program &program : plan.programs()) {
    // Forward and backward programs run once per micro-batch.
    bool perMicroBatch = program.name() == "forward_backward" ||
                         program.name().rfind("forward.", 0) == 0 ||
                         program.name().rfind("backward.", 0) == 0;
    int64_t runs = perMicroBatch ? microBatches : 1;
    for (const plan::Instruction &instr : program.instructions())
      for (const Collective &c : collectivesOf(plan, instr)) {
        // A ring all-gather or reduce-scatter sends (n - 1)/n of the full
        // tensor from each rank, an all-reduce twice that; a send all of it.
        double n = double(groupSize(plan.mesh(), c.axis));
        double share = instr.op() == "send" ? 1.0 : (c.allReduce ? 2.0 : 1.0) * (n - 1) / n;
        Total &t = totals[{instr.op(), c.axis}];
        t.runs += runs;
        t.bytes += double(runs) * double(c.bytes);
        t.sent += double(runs) * double(c.bytes) * share;
      }
  }
  os << "collectives per step (" << countOf(microBatches, "micro-batch", "micro-batches")
     << (pipelined ? ", summed over stages" : "")
     << "; fp32 bytes, as the CPU backend moves them):\n";
  if (totals.empty()) {
    os << "  none\n";
    return;
  }
  os << llvm::format("  %-20s %-12s %8s %12s %14s\n", "instruction", "over", "runs", "size",
                     "sent per rank");
  for (const auto &[key, t] : totals) {
    std::string over = key.second + " (" + std::to_string(groupSize(plan.mesh(), key.second)) +
                       ")";
    os << llvm::format("  %-20s %-12s %8lld %12s %14s\n", key.first.c_str(), over.c_str(),
                       (long long)t.runs, bytesText(t.bytes).c_str(),
                       bytesText(t.sent).c_str());
  }
  os << "  (size: the full tensors, as nccl-tests counts them: an all-gather's output, a\n"
        "  reduce-scatter's input; sent per rank: what a ring sends, (n-1)/n of the size, twice\n"
        "  that for an all-reduce)\n";
}

} // namespace

void explainPlan(const plan::Plan &plan, llvm::raw_ostream &os) {
  const plan::Mesh &m = plan.mesh();
  int64_t ranks = m.pp() * m.dp() * m.cp() * m.ep() * m.tp();
  bool pipelined = plan.training().virtual_stages() > 1;
  os << "plan: " << countOf(plan.programs_size(), "program") << " for " << countOf(ranks, "rank")
     << " ("
     << (pipelined ? "each stage runs its own; " : "all run the same; ")
     << "ranks differ in their communicator groups, slices and data)\n";
  printStageParameters(plan, os);
  printMemory(plan, os);
  printCollectives(plan, os);
}

} // namespace mt
