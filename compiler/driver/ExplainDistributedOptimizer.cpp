// --explain's account of Megatron-Core's distributed optimizer: the AdamW
// state and fp32 master weights per rank with it and without it, on each
// backend, and its weight all-gathers and in-place shards.
#include "compiler/driver/Explain.h"

#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/Wording.h"

#include <algorithm>

namespace mt {
namespace {

/// How the CUDA backend holds the distributed optimizer's fp32 master
/// weights (plan::masterShards), after their bytes: `masterBuckets` of the
/// plan's buckets as the rank's shard, the others whole, and why.
std::string masterSharding(const plan::Plan &plan, int64_t masterBuckets) {
  std::string why;
  int64_t oneRank = 0; // experts' buckets with edp 1: nothing to shard
  for (const plan::Bucket &b : plan.buckets())
    oneRank += b.parts() <= 1;
  const int64_t routed = plan.buckets_size() - masterBuckets - oneRank;
  if (plan.mesh().pp() > 1)
    why = "pipelines keep the buckets whole";
  else if (plan.buckets_size() > 0 && plan.buckets(0).master_buffer() != 0)
    why = "optimizer_offload keeps the masters' shards on the host and the buckets whole";
  else if (masterBuckets < plan.buckets_size())
    why = (oneRank ? std::to_string(oneRank) + " over one rank" : std::string()) +
          (oneRank && routed ? ", " : "") +
          (routed ? std::to_string(routed) + " read by a MoE router in fp32" : std::string()) +
          ": whole";
  if (masterBuckets == 0)
    return " held whole" + (why.empty() ? std::string() : " (" + why + ")");
  return std::string(" as the rank's shard of ") +
         (masterBuckets == plan.buckets_size()
              ? "each bucket"
              : std::to_string(masterBuckets) + " of " + std::to_string(plan.buckets_size()) +
                    " buckets") +
         " (it computes from the bf16 copy" + (why.empty() ? "" : "; " + why) + ")";
}

/// The gradient buckets' weight all-gathers (deferred behind the next
/// forward with overlap_param_gather; bf16 on CUDA for master-sharded
/// buckets) and the shards CUDA keeps in place in their buckets.
void printGathersAndShards(const plan::Plan &plan, const plan::DeviceFootprint &gpu,
                           llvm::raw_ostream &os) {
  const auto masterBuckets = int64_t(gpu.masterShards.size());
  const bool all = masterBuckets == plan.buckets_size();
  int64_t deferred = 0;
  for (const plan::Program &program : plan.programs())
    for (const plan::Instruction &instr : program.instructions())
      deferred += plan::Attrs(instr).i("deferred") == 1;
  const bool pipelined = plan.mesh().pp() > 1;
  // Master-sharded buckets gather their bf16 shadow: half the fp32 bytes
  // of the collectives below.
  const std::string inBf16 =
      masterBuckets == 0 ? ""
      : all ? "; CUDA gathers the bf16 weights"
            : "; CUDA gathers the bf16 weights of " + std::to_string(masterBuckets) + " of them";
  if (deferred)
    os << "  weight all-gathers: " << countOf(deferred, "bucket")
       << " behind the next step's forward, each waited for before its first use "
          "(overlap_param_gather: on"
       << (pipelined ? "; with pipelines the CUDA backend gathers at the end of the step" : "")
       << ")" << inBf16 << "\n";
  else
    os << "  weight all-gathers: at the end of the optimizer step (overlap_param_gather: off)"
       << inBf16 << "\n";
  // grad_offload: the gradient shards are main gradients on the host; the
  // master shards are no views: they are the CUDA weights above.
  const bool gradShardsOnHost =
      plan.buffers(plan.buckets(0).grad_buffer()).arena() == plan::HOST_GRADIENTS;
  if (gradShardsOnHost && all) {
    os << "  weight shards: the fp32 masters above; the reduced gradient shards are in pinned "
          "host memory (grad_offload)\n";
    return;
  }
  os << (gradShardsOnHost ? "  weight shards: "
         : all            ? "  gradient shards: "
                          : "  gradient and weight shards: ")
     << bytesText(double(gpu.shardsInPlace)) << (pipelined ? " (all stages)" : "")
     << " that CUDA keeps in place, in the rank's slice of each bucket (the CPU backend "
        "copies them into its activations)"
     << (gradShardsOnHost ? "; the reduced gradient shards are in pinned host memory "
                            "(grad_offload)"
                          : "")
     << "\n";
}

} // namespace

/// The AdamW state and the fp32 master weights one rank updates, with and
/// without Megatron-Core's distributed optimizer (on the stage that holds
/// most): with it, each rank keeps and updates 1/dp of the dense ones (1/cp
/// when dp is 1; mt-build-optimizer's denseShardAxis) and 1/edp of the
/// experts.
void printDistributedOptimizer(const plan::Plan &plan, llvm::raw_ostream &os) {
  const plan::Mesh &m = plan.mesh();
  const int64_t dp = std::max<int64_t>(m.dp(), 1), cp = std::max<int64_t>(m.cp(), 1);
  const int64_t dense = dp > 1 ? dp : cp;
  const int64_t edp = plan::expertDataParallelSize(m);
  auto partsOf = [&](const plan::Parameter &p) { return p.grouped_experts() ? edp : dense; };
  uint64_t whole = 0, sharded = 0; // AdamW bytes, the largest stage's
  for (int64_t s = 0; s < std::max<int64_t>(plan.mesh().pp(), 1); ++s) {
    uint64_t w = 0, sh = 0;
    for (const plan::Parameter &p : plan.parameters())
      if (p.trainable() && plan::stageHolds(p, s)) {
        uint64_t elements = uint64_t(plan::elementsOf(plan.buffers(p.param_buffer())));
        w += 8 * elements;
        const uint64_t parts = uint64_t(partsOf(p));
        sh += 8 * ((elements + parts - 1) / parts);
      }
    whole = std::max(whole, w), sharded = std::max(sharded, sh);
  }
  uint64_t optimizer = 0, weights = 0;
  for (const plan::Arena &a : plan.arenas()) {
    if (a.kind() == plan::OPTIMIZER || a.kind() == plan::HOST_OPTIMIZER)
      optimizer += a.size_bytes(); // optimizer_offload: the state is on the host
    if (a.kind() == plan::PARAMETERS || a.kind() == plan::HOST_WEIGHTS) // param_offload's
      weights = a.size_bytes();
  }
  const bool on = plan.buckets_size() > 0;
  bool experts = false;
  for (const plan::Parameter &p : plan.parameters())
    experts |= p.grouped_experts();
  if (!on && dense == 1 && (!experts || edp == 1)) {
    // "with it" and "without it" would differ only by alignment padding.
    os << "distributed optimizer (use_distributed_optimizer): nothing to shard at dp x cp = 1"
       << (experts ? " and edp 1" : "") << ": each rank holds and updates all of its AdamW state ("
       << bytesText(double(optimizer)) << ") and fp32 master weights ("
       << bytesText(double(weights)) << ")\n";
    return;
  }
  os << "distributed optimizer (use_distributed_optimizer): " << (on ? "on" : "off");
  if (on) {
    int64_t experts = 0;
    for (const plan::Bucket &b : plan.buckets())
      experts += b.axis() == "edp";
    auto over = [](int64_t buckets, const std::string &axis, int64_t size) {
      return std::to_string(buckets) +
             (size > 1 ? " over " + axis + " (" + std::to_string(size) + ")"
                       : " whole (" + axis + " 1)");
    };
    os << ", " << countOf(plan.buckets_size(), "gradient bucket")
       << " reduce-scattered and all-gathered: "
       << over(plan.buckets_size() - experts, dp > 1 ? "dp" : cp > 1 ? "cp" : "dp x cp", dense);
    if (dp > 1 && cp > 1)
      os << ", summed over cp first (Megatron-Core shards over dp x cp = " << dp * cp << ")";
    if (experts)
      os << "; " << over(experts, "edp", edp) << " of experts";
  }
  os << "\n  AdamW state (fp32 exp_avg, exp_avg_sq) per rank: with it "
     << bytesText(double(on ? optimizer : sharded)) << ", without it "
     << bytesText(double(on ? whole : optimizer)) << "\n";
  const plan::DeviceFootprint gpu = plan::deviceFootprint(plan);
  // param_offload: every weight is in host memory, on both backends.
  const bool paramOffload = plan::weightsOffloaded(plan);
  os << "  fp32 master weights per rank: ";
  if (!on || paramOffload)
    os << bytesText(double(weights)) << " held whole"
       << (paramOffload     ? " in host memory (param_offload)"
           : gpu.remainders ? " (CPU computes from them; CUDA keeps each as the bf16 copy it "
                              "computes from and the 16 bits that copy lacks)"
                            : " (the backends compute from them)");
  else
    os << "CPU " << bytesText(double(weights))
       << " held whole (it computes from them); CUDA " << bytesText(double(gpu.weights))
       << masterSharding(plan, int64_t(gpu.masterShards.size()));
  os << "; updated per rank: with it " << bytesText(double(on ? optimizer : sharded) / 2)
     << ", without it " << bytesText(double(weights)) << "\n";
  if (on)
    printGathersAndShards(plan, gpu, os);
}

} // namespace mt
