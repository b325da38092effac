// Prints the mesh, rank coordinates and stage -> layers of a resolved
// ParallelConfig, and what its plan gives each rank: parameters per stage,
// memory (the table: ExplainMemory.cpp) and the collectives of a step.
#include "compiler/driver/Explain.h"

#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/MeshAxes.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/Wording.h"

#include "llvm/Support/Format.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <vector>

namespace mt {
namespace {


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

namespace {

/// The MoE layers of the busiest stage whose forward, dispatch and combine
/// included, recompute runs again before their backward (mt-recompute, as
/// Megatron-Core's recompute): every layer under full uniform, the first
/// recompute_num_layers of each chunk under full block, every MoE layer
/// under selective with moe. `layers`: the stage's MoE layers; block counts
/// the chunks' first layers as MoE layers, at most `layers` (exact where
/// every layer is one).
int64_t recomputedMoeLayers(const ParallelConfig &p, int64_t layers) {
  const RecomputeConfig &r = p.recompute;
  const bool moe = std::count(r.modules.begin(), r.modules.end(), "moe") || r.moeLayerRecompute;
  if ((r.granularity == "full" && r.method != "block") || (r.granularity == "selective" && moe))
    return layers;
  if (r.granularity != "full")
    return 0;
  int64_t most = 0; // the stage whose chunks recompute the most layers
  for (int64_t s = 0; s < p.pp; ++s) {
    int64_t n = 0;
    for (size_t v = size_t(s); v < p.chunkLayers.size(); v += size_t(p.pp))
      n += std::min(r.numLayers, p.chunkLayers[v]);
    most = std::max(most, n);
  }
  return std::min(most, layers);
}

/// Megatron-Core's MoE parallel folding over the same ranks, and the token
/// dispatcher's traffic per MoE layer and micro-batch, in the forward and
/// again in the backward. Each rank dispatches its own tokens, B·S/(tp·cp)
/// (the sequence split over tp by MoE folding and over cp). alltoall: their
/// top_k routed rows of hidden values go out (dispatch) and come back
/// (combine); with uniform routing (ep - 1)/ep of them cross to another
/// rank. allgather: the all-gather and the reduce-scatter each move ep
/// times those rows, (ep - 1)/ep of them from or to other ranks. A layer
/// that recompute runs again exchanges twice more (recomputedMoeLayers).
void explainExperts(const ModelDims &dims, const ParallelConfig &p, llvm::raw_ostream &os) {
  std::array<int64_t, 4> expert = p.expertMesh();
  os << "expert layers (MoE parallel folding, the same ranks): mesh (pp, edp, ep, etp) = ("
     << expert[0] << ", " << expert[1] << ", " << expert[2] << ", " << expert[3] << "), etp "
     << "fastest-varying; " << countOf(dims.numExperts / p.ep, "expert") << " per rank, "
     << "gradients summed over edp and "
     << (p.perTokenLoss ? "divided by the step's loss tokens (calculate_per_token_loss; each "
                          "router's aux loss times its B x S tokens, as Megatron-Core's)"
                        : "scaled by 1 / dp")
     << "\n";
  if (p.ep == 1 || !dims.moeLayers)
    return;
  // A rank runs the MoE layers of its pipeline stage: about 1/pp of them.
  int64_t layers = (dims.moeLayers + p.pp - 1) / p.pp;
  const bool gather = p.dispatcher() == "allgather";
  double rows = double(p.microBatch) * double(p.seq) / double(p.tp * p.cp) *
                double(dims.topK) * double(gather ? p.ep : 1);
  const int64_t again = recomputedMoeLayers(p, layers);
  double elements = rows * double(dims.hidden) * double(4 * layers + 2 * again) *
                    double(p.numMicroBatches());
  double offRank = elements * double(p.ep - 1) / double(p.ep);
  const std::string microBatches = countOf(p.numMicroBatches(), "micro-batch", "micro-batches");
  const std::string recomputed =
      again ? ", and the forward's 2 again in the MoE layers recompute repeats (" +
                  std::to_string(again) + " of " + std::to_string(layers) + ")"
            : "";
  os << llvm::format(gather ? "all-gather and reduce-scatter per step and rank (allgather "
                              "dispatcher, dropless): %.0f values (%d MoE layers%s x %s x 4 "
                              "collectives of %.0f rows x %d%s), %.0f of them from or to other "
                              "ranks: %s in bf16\n"
                            : "all-to-all per step and rank (alltoall dispatcher, dropless): "
                              "%.0f values (%d MoE layers%s x %s x 4 exchanges of %.0f rows x "
                              "%d%s), %.0f of them to other ranks with uniform routing: %s in "
                              "bf16\n",
                     elements, int(layers), p.pp > 1 ? " of a stage" : "", microBatches.c_str(),
                     rows, int(dims.hidden), recomputed.c_str(), offRank,
                     bytesText(offRank * 2.0).c_str());
}

} // namespace

void explainOptimizer(const OptimizerConfig &o, llvm::raw_ostream &os) {
  const int64_t decay = o.decaySteps ? o.decaySteps : o.trainSteps;
  std::ostringstream line; // shortest decimals: 0.0003, not 3.000000e-04
  const bool transformers = o.decayStyle.rfind("hf_", 0) == 0;
  const std::string style = transformers ? o.decayStyle.substr(3) : o.decayStyle;
  // Each update's rate is the schedule's after the updates before it
  // (Megatron-Core's scheduler; transformers' at t = step - 1 alike).
  line << "optimizer: AdamW; lr " << o.lr << " reached after "
       << countOf(o.warmupSteps, "warm-up update") << ", then " << style;
  if (style != "constant" && style != "constant_with_warmup")
    line << " decay to min_lr " << o.minLr << " after " << countOf(decay, "update");
  line << " (" << (transformers ? "transformers'" : "Megatron-Core's")
       << " scheduler); weight_decay " << o.weightDecay
       << " (not on norms and biases), betas " << o.beta1 << ", " << o.beta2 << ", eps " << o.eps
       << ", clip_grad " << o.clipGrad << "; train_iters " << o.trainSteps
       << " (mtrun's default --steps)\n";
  os << line.str();
}

void explainLayout(const ModelDims &dims, const ParallelConfig &p, llvm::raw_ostream &os) {
  os << "model: " << countOf(dims.numLayers, "layer") << ", " << countOf(dims.numHeads, "query head")
     << ", " << countOf(dims.numKvHeads, "kv head") << ", vocabulary " << dims.vocabSize;
  if (dims.numExperts) {
    os << ", " << countOf(dims.numExperts, "expert") << " (top-" << dims.topK;
    if (dims.moeLayers != dims.numLayers)
      os << ", in " << dims.moeLayers << " of the layers";
    os << ")" << (dims.sharedExpert ? " and a shared expert" : "");
  }
  os << "\n";
  os << "batch: micro-batch " << p.microBatch << " x seq " << p.seq
     << "; global batch " << p.globalBatch << " = " << p.microBatch << " x "
     << countOf(p.numMicroBatches(), "micro-batch", "micro-batches") << " x dp " << p.dp;
  // Under tp or cp an ep group may hold ranks of one model replica.
  if (p.ep > 1)
    os << " (Megatron-Core's data-parallel size, world / (tp x pp x cp): the ranks of an ep "
          "group read different data"
       << (p.tp * p.cp > 1 ? " unless they share a tp x cp group" : "")
       << "; MCoreAdapter's comment counts dp as world / (tp x pp x cp x ep) = "
       << (p.dp % p.ep == 0 ? std::to_string(p.dp / p.ep) + ", which gives a global batch of " +
                                  std::to_string(p.globalBatch / p.ep)
                            : std::to_string(p.dp) + "/" + std::to_string(p.ep) +
                                  ", below one replica")
       << ")";
  os << "\n";
  std::array<int64_t, 4> dense = p.denseMesh(), expert = p.expertMesh();
  os << "mesh (pp, dp, cp, tp) = (" << dense[0] << ", " << dense[1] << ", " << dense[2] << ", "
     << dense[3] << "): " << countOf(p.worldSize, "rank") << ", tp fastest-varying\n";
  // A rank's coordinates on a mesh of `sizes` (last fastest), from axis
  // `first` on (the expert mesh shares pp).
  auto listCoordinates = [&](int64_t rank, const std::array<int64_t, 4> &sizes,
                             const std::array<std::string_view, 4> &names, int first) {
    int64_t rest = rank;
    std::array<int64_t, 4> coord;
    for (int axis = 3; axis >= 0; --axis) {
      coord[axis] = rest % sizes[axis];
      rest /= sizes[axis];
    }
    for (int axis = first; axis < 4; ++axis)
      os << " " << names[axis] << "=" << coord[axis];
  };
  int64_t listed = std::min<int64_t>(p.worldSize, 16);
  for (int64_t rank = 0; rank < listed; ++rank) {
    os << "  rank " << rank << " ->";
    listCoordinates(rank, dense, plan::kDenseAxes, 0);
    if (p.ep > 1) {
      os << ";";
      listCoordinates(rank, expert, plan::kExpertAxes, 1);
    }
    os << "\n";
  }
  if (listed < p.worldSize)
    os << "  ... (" << p.worldSize - listed << " more)\n";
  if (dims.numExperts)
    explainExperts(dims, p, os);
  os << "tensor parallel: " << p.tp << " (" << countOf(dims.numHeads / p.tp, "query head") << ", "
     << countOf(dims.numKvHeads / p.tp, "kv head") << " per rank)"
     << (p.sequenceParallel ? ", sequence parallel" : "") << "\n";

  if (p.distributedOptimizer && !p.shardsOptimizerState(dims.numExperts > 0))
    os << "use_distributed_optimizer: with dp x cp 1"
       << (dims.numExperts ? " and edp 1" : "")
       << " there is nothing to shard; the plan has the plain optimizer"
       << (p.overlapParamGather ? " (and overlap_param_gather nothing to gather)" : "") << "\n";
}

std::vector<std::set<int64_t>> layersOfVirtualStages(const plan::Plan &plan) {
  std::vector<std::set<int64_t>> layers(
      size_t(std::max<int64_t>(plan.training().virtual_stages(), 1)));
  for (const plan::Program &program : plan.programs()) {
    // The forward programs of a pipeline, or the one forward_backward.
    const bool forward =
        program.name().rfind("forward.", 0) == 0 || program.name() == "forward_backward";
    if (!forward || size_t(std::max(program.virtual_stage(), 0)) >= layers.size())
      continue;
    std::set<int64_t> &into = layers[size_t(std::max(program.virtual_stage(), 0))];
    for (const plan::Instruction &instr : program.instructions()) {
      // ProgramEmitter's location of an op of a layer: "mt.linear (layer 3)".
      const size_t at = instr.location().find("(layer ");
      if (at != std::string::npos)
        into.insert(std::stoll(instr.location().substr(at + 7)));
    }
  }
  return layers;
}

void explainPipelineStages(const plan::Plan &plan, llvm::raw_ostream &os) {
  // Chunk c of stage s is virtual stage c * pp + s.
  std::vector<std::set<int64_t>> chunks = layersOfVirtualStages(plan);
  const int64_t pp = std::max<int64_t>(plan.mesh().pp(), 1), vpp = int64_t(chunks.size()) / pp;
  bool even = std::all_of(chunks.begin(), chunks.end(), [&](const std::set<int64_t> &c) {
    return c.size() == chunks.front().size();
  });
  os << "pipeline: " << countOf(pp, "stage") << " x " << countOf(vpp, "virtual chunk") << ", ";
  if (even)
    os << countOf(int64_t(chunks.front().size()), "layer") << " per chunk";
  else
    os << "uneven layout";
  os << ", schedule " << (pp == 1 ? "none" : (vpp > 1 ? "interleaved 1F1B" : "1F1B")) << "\n";
  for (int64_t stage = 0; stage < pp; ++stage) {
    std::set<int64_t> layers;
    for (int64_t chunk = 0; chunk < vpp; ++chunk)
      layers.insert(chunks[size_t(chunk * pp + stage)].begin(),
                    chunks[size_t(chunk * pp + stage)].end());
    os << "  stage " << stage << ": " << layersText(layers) << "\n";
  }
}

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

namespace {

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
  // Under the distributed optimizer a bucket's AdamW state shard counts
  // with its first member.
  std::map<std::string, uint64_t> bucketState;
  for (const plan::Bucket &b : plan.buckets())
    bucketState[b.members(0).param()] = plan.buffers(b.exp_avg_buffer()).size_bytes() +
                                        plan.buffers(b.exp_avg_sq_buffer()).size_bytes();
  const bool bucketed = plan.buckets_size() > 0;
  for (const plan::Parameter &p : plan.parameters()) {
    uint64_t bytes = plan.buffers(p.param_buffer()).size_bytes();
    if (p.trainable()) {
      bytes += plan.buffers(p.grad_buffer()).size_bytes();
      if (bucketed)
        bytes += bucketState.count(p.name()) ? bucketState[p.name()] : 0;
      else
        for (uint32_t id : {p.exp_avg_buffer(), p.exp_avg_sq_buffer()})
          bytes += plan.buffers(id).size_bytes();
    }
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

/// The activations with and without recompute, on every rank, and the
/// forward FLOPs it adds to each stage's step.
void printRecompute(const plan::Plan &plan, const RecomputeEffect &r, uint64_t slots,
                    llvm::raw_ostream &os) {
  const ActivationBytes with = activationBytes(plan);
  uint64_t cpu = with.cpu * slots, cuda = with.gpu * slots;
  uint64_t cpuWithout = r.without.cpu * slots, cudaWithout = r.without.gpu * slots;
  auto change = [](uint64_t with, uint64_t without) {
    double pct = without ? 100.0 * (double(with) - double(without)) / double(without) : 0.0;
    std::string out;
    llvm::raw_string_ostream(out) << llvm::format("%+.1f%%", pct);
    return out;
  };
  // 0 says that the modules asked for hold nothing to drop in this model
  // (moe_act where mt.moe_grouped_mlp keeps only its fc1_output and its
  // backward recomputes the activation from it).
  os << "activation recompute: " << r.what << "; " << countOf(r.ops, "forward op")
     << " recomputed per micro-batch\n";
  os << llvm::format("  %-38s %12s %12s\n", "activations per rank", "CPU (fp32)", "CUDA (bf16)");
  os << llvm::format("  %-38s %12s %12s\n", "without recompute",
                     bytesText(double(cpuWithout)).c_str(), bytesText(double(cudaWithout)).c_str());
  os << llvm::format("  %-38s %12s %12s\n", "with it", bytesText(double(cpu)).c_str(),
                     bytesText(double(cuda)).c_str());
  os << llvm::format("  %-38s %12s %12s\n", "change", change(cpu, cpuWithout).c_str(),
                     change(cuda, cudaWithout).c_str());
  const int64_t micro = plan.training().micro_batches_per_step();
  for (size_t s = 0; s < r.extraFlops.size(); ++s) {
    double extra = r.extraFlops[s] * double(micro);
    double step = r.trainingFlops[s] * double(micro);
    os << "  extra forward FLOPs per step"
       << (r.extraFlops.size() > 1 ? ", stage " + std::to_string(s) : "") << llvm::format(": %.3e (%.1f%% of the model FLOPs of training, %.3e)\n", extra,
                       step > 0 ? 100.0 * extra / step : 0.0, step);
  }
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
  auto size = [&](uint32_t id) { return plan.buffers(id).size_bytes(); };
  const std::optional<plan::Op> op = plan::opOf(instr);
  if (!op)
    return {};
  switch (*op) {
  case plan::Op::all_reduce:
    return {{attrs.s("axis"), size(instr.inputs(0)), true}};
  // The alltoall dispatcher's rows, out (dispatch) or back (combine): the
  // smaller side is one rank's routed rows (the other holds the worst case
  // of receiving every peer's), of which uniform routing keeps 1/ep.
  case plan::Op::all_to_all_v:
    return {{attrs.s("axis"), std::min(size(instr.inputs(0)), size(instr.outputs(0))), false}};
  case plan::Op::reduce_scatter:
    return {{attrs.s("axis"), size(instr.inputs(0)), false}};
  case plan::Op::all_gather:
    return {{attrs.s("axis"), size(instr.outputs(0)), false}};
  case plan::Op::send:
    return {{"pp", size(instr.inputs(0)), false}};
  case plan::Op::ring_shift:
    return {{attrs.s("axis"), size(instr.inputs(0)), false}};
  // Each rank keeps 1/n of its input and sends the rest, as a ring all-gather.
  case plan::Op::all_to_all:
    return {{attrs.s("axis"), size(instr.inputs(0)), false}};
  default:
    return {};
  }
}

/// Ranks in the group of `axis`: a mesh axis, or the first and last stage
/// that share a tied parameter.
int64_t groupSize(const plan::Mesh &m, const std::string &axis) {
  using plan::kDenseAxes, plan::kExpertAxes;
  const std::map<std::string_view, int64_t> sizes = {
      {kDenseAxes[0], m.pp()},  {kDenseAxes[1], m.dp()},
      {kDenseAxes[2], m.cp()},  {kDenseAxes[3], m.tp()},
      {kExpertAxes[1], plan::expertDataParallelSize(m)},
      {kExpertAxes[2], m.ep()}, {kExpertAxes[3], m.etp()},
      {plan::kTiedEmbeddingGroup, 2}};
  auto it = sizes.find(axis);
  return it == sizes.end() ? 1 : it->second;
}

/// A step's runs of one collective instruction over one axis: the full
/// tensors' bytes and what one rank sends of them.
struct CollectiveTotal {
  int64_t runs = 0;
  double bytes = 0, sent = 0;
};
using CollectiveTotals = std::map<std::pair<std::string, std::string>, CollectiveTotal>;

/// The whole micro-batch's token counts a program's MoE routers read under
/// context parallelism: each rank's counts, summed over cp.
std::set<uint32_t> routerCounts(const plan::Program &program) {
  std::set<uint32_t> ids;
  for (const plan::Instruction &instr : program.instructions())
    if (plan::isOp(instr, plan::Op::moe_router) && plan::Attrs(instr).i("count_groups") != 0)
      ids.insert(instr.inputs(2));
  return ids;
}

/// Which collectives collectiveTotals counts: every one, only those that
/// sum the MoE routers' token counts, or all but those.
enum class RouterExchanges { included, only, excluded };

/// The collectives of a step by (instruction, axis), summed over stages.
CollectiveTotals collectiveTotals(const plan::Plan &plan,
                                  RouterExchanges which = RouterExchanges::included) {
  const int64_t microBatches = plan.training().micro_batches_per_step();
  CollectiveTotals totals;
  for (const plan::Program &program : plan.programs()) {
    // Forward and backward programs run once per micro-batch.
    bool perMicroBatch = program.name() == "forward_backward" ||
                         program.name().rfind("forward.", 0) == 0 ||
                         program.name().rfind("backward.", 0) == 0;
    int64_t runs = perMicroBatch ? microBatches : 1;
    const std::set<uint32_t> counts = routerCounts(program);
    for (const plan::Instruction &instr : program.instructions()) {
      const bool routers = instr.outputs_size() > 0 && counts.count(instr.outputs(0));
      if ((which == RouterExchanges::only && !routers) ||
          (which == RouterExchanges::excluded && routers))
        continue;
      for (const Collective &c : collectivesOf(plan, instr)) {
        // A ring all-gather or reduce-scatter sends (n - 1)/n of the full
        // tensor from each rank, an all-reduce twice that; a send or a ring
        // shift all of it.
        double n = double(groupSize(plan.mesh(), c.axis));
        const bool whole =
            plan::isOp(instr, plan::Op::send) || plan::isOp(instr, plan::Op::ring_shift);
        double share = whole ? 1.0 : (c.allReduce ? 2.0 : 1.0) * (n - 1) / n;
        CollectiveTotal &t = totals[{instr.op(), c.axis}];
        t.runs += runs;
        t.bytes += double(runs) * double(c.bytes);
        t.sent += double(runs) * double(c.bytes) * share;
      }
    }
  }
  return totals;
}

/// Context parallelism's share of the sequence per rank and its key/value
/// exchange per step: with cp_comm_type p2p the ring's shifts (keys and
/// values forward, their gradients back); with all_gather the gathers in
/// forward and the gradients' reduce-scatters in backward; with a2a the
/// all-to-alls of queries, keys, values and outputs and of their gradients
/// (and, for packed documents, the gathers of their position ids); and in
/// a mixture-of-experts model the routers' (`routerTotals`).
void printContextParallel(const plan::Plan &plan, const CollectiveTotals &totals,
                          const CollectiveTotals &routerTotals, llvm::raw_ostream &os) {
  const int64_t cp = plan.mesh().cp(), seq = plan.training().seq();
  if (cp <= 1)
    return;
  const char *commType = totals.count({"ring_shift", "cp"})   ? "p2p"
                         : totals.count({"all_to_all", "cp"}) ? "a2a"
                                                              : "all_gather";
  os << "context parallelism: cp " << cp << " (cp_comm_type " << commType
     << "): each rank holds " << seq / cp << " of a sequence's " << seq
     << " tokens (chunks r and " << 2 * cp - 1 << "-r of " << 2 * cp << " chunks of "
     << seq / (2 * cp) << "); the activations above are those of its tokens\n";
  const std::pair<const char *, const char *> lines[] = {
      {"ring_shift", "keys and values around the ring, gradients back"},
      {"all_gather", std::string_view(commType) == "a2a"
                         ? "packed documents' position ids all-gathered"
                         : "keys and values all-gathered (forward)"},
      {"reduce_scatter", "their gradients reduce-scattered (backward)"},
      {"all_to_all", "q, k, v, output and their gradients all-to-all"}};
  auto print = [&](const char *what, const CollectiveTotal &t) {
    os << llvm::format("  %-48s %5lld runs, %10s sent per rank per step\n", what,
                       (long long)t.runs, bytesText(t.sent).c_str());
  };
  for (auto [op, what] : lines)
    if (auto it = totals.find({op, "cp"}); it != totals.end())
      print(what, it->second);
  CollectiveTotal routers;
  for (const auto &[key, t] : routerTotals)
    if (key.second == "cp")
      routers.runs += t.runs, routers.sent += t.sent;
  if (routers.runs > 0)
    print("MoE routers' token counts summed", routers);
}

void printCollectives(const plan::Plan &plan, const CollectiveTotals &totals,
                      llvm::raw_ostream &os) {
  const int64_t microBatches = plan.training().micro_batches_per_step();
  const bool pipelined = plan.training().virtual_stages() > 1;
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
  // mtc accepts the option only where the dp reduction is the whole one
  // (ParallelConfig's checkGradReduceInBf16).
  if (plan.training().grad_reduce_in_bf16())
    os << "  grad_reduce_in_fp32: false: the gradients' reduction over dp, this layout's only\n"
          "  one, sums bf16 on the CUDA backend (half the bytes above for it)\n";
}

/// The loss normalization, from the plan's StepLoss (mt-build-step-loss's
/// @step_loss): Megatron-Core's default or calculate_per_token_loss.
void printLossNormalization(const plan::Plan &plan, llvm::raw_ostream &os) {
  const plan::StepLoss &loss = plan.step_loss();
  std::string reductions;
  for (const plan::StepLoss::Reduction &r : loss.reductions())
    reductions += (reductions.empty() ? "" : ", ") +
                  std::string(r.reduce() == "mean" ? "averaged" : "summed") + " over " + r.axis();
  if (reductions.empty())
    reductions = "on one rank";
  if (loss.per_token_loss()) {
    os << "loss: per token (calculate_per_token_loss): each micro-batch's loss is the sum of "
          "its token losses; the step's loss and gradients are divided by the step's loss "
          "tokens (every micro-batch, "
       << reductions << "); gradient seed " << llvm::format("%g", loss.loss_scale()) << "\n";
    return;
  }
  os << "loss: per micro-batch (Megatron-Core's default): each micro-batch's loss is the mean "
        "over its loss tokens; the step's loss is their mean (x "
     << llvm::format("%g", loss.micro_batch_weight()) << " each), " << reductions
     << "; gradient seed " << llvm::format("%g", loss.loss_scale())
     << "; micro-batches with fewer loss tokens weigh each token more\n";
}

} // namespace

void explainPlan(const plan::Plan &plan, llvm::raw_ostream &os,
                 const RecomputeEffect *recompute, uint64_t deviceBytes) {
  const plan::Mesh &m = plan.mesh();
  int64_t ranks = plan::worldSize(m);
  bool pipelined = plan.training().virtual_stages() > 1;
  os << "plan: " << countOf(plan.programs_size(), "program") << " for " << countOf(ranks, "rank")
     << " ("
     << (pipelined ? "each stage runs its own; " : "all run the same; ")
     << "ranks differ in their communicator groups, slices and data)\n";
  printLossNormalization(plan, os);
  printStageParameters(plan, os);
  explainMemory(plan, deviceBytes, os);
  if (recompute)
    printRecompute(plan, *recompute, mostActivationSlots(plan), os);
  printDistributedOptimizer(plan, os);
  printContextParallel(plan, collectiveTotals(plan, RouterExchanges::excluded),
                       collectiveTotals(plan, RouterExchanges::only), os);
  printCollectives(plan, collectiveTotals(plan), os);
}

} // namespace mt
