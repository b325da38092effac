// The CUDA backend's arena sizes, computed from the plan alone.
#include "runtime/plan/DeviceFootprint.h"

#include "runtime/plan/AttentionWorkspace.h"
#include "runtime/plan/KernelWorkspace.h"
#include "runtime/plan/OpRegistry.h"

#include <algorithm>
#include <vector>

namespace mt::plan {

namespace {
uint64_t roundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

/// The first output of `op` that is kept 32-bit where it is an activation
/// (the outputs after it too); outputs_size when none.
int firstWideOutput(const Instruction &instr) {
  const std::optional<Op> op = opOf(instr); // none: validatePlan refuses the plan
  if (!op)
    return instr.outputs_size();
  switch (*op) {
  case Op::attention: // the log-sum-exp its backward reads
  case Op::attention_block: // ring attention's: merged by it
  case Op::attention_merge:
    return 1;
  case Op::vocab_parallel_logits_max:
  case Op::vocab_parallel_predicted_logits:
    return 0; // row statistics
  case Op::rmsnorm_grad:
  case Op::add_rmsnorm_grad:
  case Op::layernorm_grad:
    return 1; // a norm weight's gradient, summed over tp before it is accumulated
  case Op::moe_router:
    return 0; // the fp32 routing weights, the expert indices and the two losses
  case Op::moe_unpermute_grad:
    return 1; // the routing weights' gradient, read by the router's backward
  case Op::attention_merge_grad:
    return 1; // the lse gradients (not the outputs': isActivationGradient)
  case Op::all_slice:
    return 0; // a weight shard AdamW updates (when not a shard view)
  case Op::scale:
    return 0; // an expert gradient scaled for AdamW
  default:
    return instr.outputs_size();
  }
}

/// Outputs after an op's first wide one that are bf16 all the same: the
/// merge's gradients of its two partial outputs (d out_a, d lse_a, d out_b,
/// d lse_b: the lse gradients are 32-bit).
bool isActivationGradient(const Instruction &instr, int i) {
  return isOp(instr, Op::attention_merge_grad) && i % 2 == 0;
}

/// Inputs read as 32-bit whatever wrote them: the log-sum-exps of ring
/// attention and their gradients, which may be a fill_zero's buffer (the
/// last merge's lse is not used: its gradient is zeros).
bool isWideInput(const Instruction &instr, int i) {
  if (isOp(instr, Op::attention_merge) || isOp(instr, Op::attention_merge_grad))
    return i % 2 == 1; // lse_a, lse_b (, lse, d lse)
  return isOp(instr, Op::attention_block_grad) && (i == 4 || i == 6); // lse, d lse
}

/// Gradient shards that are not shard views: reduce-scatters of a
/// gradient buffer, read by AdamW in fp32.
bool scattersGradients(const Plan &plan, const Instruction &instr) {
  return isOp(instr, Op::reduce_scatter) && plan.buffers(instr.inputs(0)).arena() == GRADIENTS;
}
} // namespace

std::map<uint32_t, ShardView> shardViews(const Plan &plan) {
  std::map<uint32_t, const Bucket *> ofBuffer; // a bucket's weight or gradient buffer
  for (const Bucket &b : plan.buckets()) {
    ofBuffer[b.param_buffer()] = &b;
    ofBuffer[b.grad_buffer()] = &b;
  }
  std::map<uint32_t, ShardView> views;
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions()) {
      if ((!isOp(instr, Op::reduce_scatter) && !isOp(instr, Op::all_slice)) ||
          instr.inputs_size() != 1 || instr.outputs_size() != 1 || Attrs(instr).i("outer") != 1)
        continue;
      auto it = ofBuffer.find(instr.inputs(0));
      const Buffer &out = plan.buffers(instr.outputs(0));
      if (it == ofBuffer.end() || out.arena() != ACTIVATIONS || out.dtype() != F32 ||
          it->second->parts() < 1 ||
          elementsOf(out) * it->second->parts() != elementsOf(plan.buffers(instr.inputs(0))))
        continue;
      views[out.id()] = {instr.inputs(0), it->second->axis(), it->second->parts()};
    }
  return views;
}

namespace {
/// The byte ranges of PARAMETERS that MoE routers read (in fp32), from one
/// pass over the plan.
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;
Ranges routerReadRanges(const Plan &plan) {
  Ranges ranges;
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions())
      if (isOp(instr, Op::moe_router) || isOp(instr, Op::moe_router_grad) ||
          isOp(instr, Op::moe_router_counts))
        for (uint32_t id : instr.inputs())
          if (const Buffer &b = plan.buffers(id); b.arena() == PARAMETERS)
            ranges.push_back({b.offset_bytes(), b.offset_bytes() + b.size_bytes()});
  return ranges;
}

/// Whether [offset, offset + bytes) overlaps one of `ranges`.
bool overlapsAny(const Ranges &ranges, uint64_t offset, uint64_t bytes) {
  return std::any_of(ranges.begin(), ranges.end(), [&](const auto &r) {
    return r.first < offset + bytes && offset < r.second;
  });
}
} // namespace

std::map<uint32_t, MasterShard> masterShards(const Plan &plan) {
  std::map<uint32_t, MasterShard> masters;
  if (plan.mesh().pp() > 1)
    return masters;
  const std::map<uint32_t, ShardView> views = shardViews(plan);
  // Weight shard view -> its bucket, for views written back by an all_gather.
  std::map<uint32_t, const Bucket *> gathered;
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions()) {
      if (!isOp(instr, Op::all_gather) || instr.inputs_size() != 1 ||
          instr.outputs_size() != 1 || Attrs(instr).i("outer") != 1)
        continue;
      auto view = views.find(instr.inputs(0));
      if (view == views.end() || view->second.bucket != instr.outputs(0))
        continue;
      for (const Bucket &b : plan.buckets())
        if (b.param_buffer() == instr.outputs(0))
          gathered[view->first] = &b;
    }
  std::vector<std::pair<uint64_t, std::pair<uint32_t, const Bucket *>>> byOffset;
  const Ranges routed = routerReadRanges(plan);
  for (const auto &[view, bucket] : gathered) {
    const Buffer &whole = plan.buffers(bucket->param_buffer());
    if (bucket->parts() > 1 && bucket->master_buffer() == 0 && whole.arena() == PARAMETERS &&
        !overlapsAny(routed, whole.offset_bytes(), whole.size_bytes()))
      byOffset.push_back({whole.offset_bytes(), {view, bucket}});
  }
  std::sort(byOffset.begin(), byOffset.end());
  uint64_t offset = 0;
  for (const auto &[at, entry] : byOffset) {
    const uint64_t bytes = plan.buffers(entry.first).size_bytes();
    const Buffer &whole = plan.buffers(entry.second->param_buffer());
    masters[entry.first] = {entry.second->param_buffer(), offset, bytes, whole.offset_bytes(),
                            roundUp(whole.size_bytes(), 64)};
    offset += roundUp(bytes, 64);
  }
  return masters;
}

std::set<uint32_t> wideActivations(const Plan &plan) {
  const std::map<uint32_t, ShardView> views = shardViews(plan);
  std::set<uint32_t> wide;
  for (const Buffer &b : plan.buffers())
    if (b.arena() == ACTIVATIONS && (b.dtype() != F32 || elementsOf(b) == 1))
      wide.insert(b.id());
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions())
      for (int i = scattersGradients(plan, instr) ? 0 : firstWideOutput(instr);
           i < instr.outputs_size(); ++i)
        if (plan.buffers(instr.outputs(i)).arena() == ACTIVATIONS &&
            !views.count(instr.outputs(i)) && !isActivationGradient(instr, i))
          wide.insert(instr.outputs(i));
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions())
      for (int i = 0; i < instr.inputs_size(); ++i)
        if (isWideInput(instr, i) && plan.buffers(instr.inputs(i)).arena() == ACTIVATIONS)
          wide.insert(instr.inputs(i));
  return wide;
}

bool weightsOffloaded(const Plan &plan) {
  for (const Arena &a : plan.arenas())
    if (a.kind() == HOST_WEIGHTS && a.size_bytes() > 0)
      return true;
  return false;
}

bool fp32WeightsOnHost(const Plan &plan) {
  if (plan.buckets_size() > 0)
    return false;
  bool anyTrainable = false;
  for (const Parameter &p : plan.parameters()) {
    if (!p.trainable())
      continue;
    anyTrainable = true;
    if (p.master_buffer() == 0)
      return false;
  }
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions())
      if (isOp(instr, Op::moe_router) || isOp(instr, Op::moe_router_grad))
        return false;
  return anyTrainable;
}

bool masterRemainders(const Plan &plan) {
  uint64_t weights = 0;
  for (const Arena &a : plan.arenas())
    if (a.kind() == PARAMETERS)
      weights = a.size_bytes();
    else if (a.kind() == HOST_PARAMETERS && a.size_bytes() > 0)
      return false;
  if (weights == 0 || plan.buckets_size() > 0 || fp32WeightsOnHost(plan) ||
      weightsOffloaded(plan))
    return false;
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions()) {
      const std::optional<Op> op = opOf(instr);
      // MoE routers read their weights in fp32 too: those keep an fp32
      // copy of their own (DeviceFootprint::routerWeights).
      const bool fp32 = !op || signature(*op).family == OpFamily::Collective ||
                        signature(*op).family == OpFamily::Pipeline ||
                        *op == Op::copy_to_device || *op == Op::copy_to_host;
      if (!fp32)
        continue;
      for (const auto *ids : {&instr.inputs(), &instr.outputs()})
        for (uint32_t id : *ids)
          if (plan.buffers(id).arena() == PARAMETERS)
            return false;
    }
  return true;
}

bool isHostArena(ArenaKind kind) {
  return kind == HOST_PARAMETERS || kind == HOST_GRADIENTS || kind == HOST_OPTIMIZER ||
         kind == HOST_STAGED_GRADIENTS || kind == HOST_WEIGHTS;
}

bool isLivenessPlanned(ArenaKind kind) {
  return kind == ACTIVATIONS || kind == STAGED_GRADIENTS || kind == HOST_STAGED_GRADIENTS ||
         kind == STAGED_WEIGHTS;
}

bool hostWeightsAreMasters(const Plan &plan) {
  if (!fp32WeightsOnHost(plan))
    return false;
  for (const Parameter &p : plan.parameters())
    if (p.master_buffer() == 0 || plan.buffers(p.param_buffer()).arena() != PARAMETERS ||
        plan.buffers(p.master_buffer()).size_bytes() != plan.buffers(p.param_buffer()).size_bytes())
      return false;
  return true;
}

DeviceFootprint deviceFootprint(const Plan &plan) {
  DeviceFootprint f;
  f.shardViews = shardViews(plan);
  f.masterShards = masterShards(plan);
  for (const auto &[id, view] : f.shardViews)
    if (!f.masterShards.count(id))
      f.shardsInPlace += plan.buffers(id).size_bytes();
  for (const auto &[id, master] : f.masterShards) {
    f.masterShardBytes += roundUp(master.bytes, 64);
    f.bucketsNotHeld += master.planBytes;
  }
  const std::set<uint32_t> wide = wideActivations(plan);
  for (uint32_t id : wide) {
    f.wideOffsets[id] = f.wideActivations;
    f.wideActivations += roundUp(plan.buffers(id).size_bytes(), kWideAlignment);
  }
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions()) {
      const bool gather = isOp(instr, Op::all_gather), exchange = isOp(instr, Op::all_to_all);
      if (!exchange &&
          ((!gather && !isOp(instr, Op::reduce_scatter)) || Attrs(instr).i("outer") <= 1))
        continue;
      // The full tensor: an all-gather's output, a reduce-scatter's input;
      // an all-to-all's blocks, sent and received.
      const Buffer &full = plan.buffers(gather ? instr.outputs(0) : instr.inputs(0));
      const bool bf16 = full.arena() == ACTIVATIONS && !wide.count(full.id());
      f.collectiveStaging = std::max<uint64_t>(
          f.collectiveStaging, uint64_t(elementsOf(full)) * (bf16 ? 2 : 4) * (exchange ? 2 : 1));
    }
  if (fp32WeightsOnHost(plan))
    for (const Program &program : plan.programs())
      for (const Instruction &instr : program.instructions())
        if (isOp(instr, Op::copy_to_device) &&
            plan.buffers(instr.outputs(0)).arena() == PARAMETERS)
          f.weightStaging = std::max(f.weightStaging,
                                     plan.buffers(instr.outputs(0)).size_bytes());
  for (const Arena &a : plan.arenas()) {
    switch (a.kind()) {
    case PARAMETERS: {
      // A bucket's range rounded up to 64 bytes ends within the arena
      // (every buffer's offset is 64-byte aligned) or at its rounded end.
      f.weightsBeforeShards = roundUp(a.size_bytes(), 64) - f.bucketsNotHeld;
      const bool remainders = masterRemainders(plan);
      if (fp32WeightsOnHost(plan) || remainders)
        f.weights = 0;
      else
        f.weights = f.masterShards.empty() ? a.size_bytes()
                                           : f.weightsBeforeShards + f.masterShardBytes;
      f.shadows = a.size_bytes() / 2;
      f.remainders = remainders ? f.shadows : 0;
      if (const Ranges routed = remainders ? routerReadRanges(plan) : Ranges(); !routed.empty())
        for (const Parameter &p : plan.parameters()) {
          const Buffer &w = plan.buffers(p.param_buffer());
          if (overlapsAny(routed, w.offset_bytes(), w.size_bytes()) &&
              f.routerWeights.emplace(w.id(), f.routerWeightBytes).second)
            f.routerWeightBytes += roundUp(w.size_bytes(), 64);
        }
      break;
    }
    case GRADIENTS:
      f.gradients = a.size_bytes();
      break;
    case STAGED_GRADIENTS:
      f.stagedGradients = a.size_bytes();
      break;
    case STAGED_WEIGHTS:
      f.stagedWeights = a.size_bytes();
      f.stagedWeightShadows = a.size_bytes() / 2;
      break;
    case OPTIMIZER:
      f.optimizer = a.size_bytes();
      break;
    case ACTIVATIONS: // bf16 at half the planned offsets
      f.activations = roundUp(a.size_bytes() / 2, 64);
      break;
    case INPUTS:
      f.inputs = a.size_bytes();
      break;
    case OUTPUTS:
      f.outputs = a.size_bytes();
      break;
    default:
      break;
    }
  }
  return f;
}

std::optional<uint64_t> deviceWeightOffset(const DeviceFootprint &f, uint64_t planOffset,
                                           uint64_t bytes) {
  uint64_t before = 0; // bytes of left-out ranges before planOffset
  for (const auto &[id, m] : f.masterShards) {
    if (planOffset < m.planOffset + m.planBytes && m.planOffset < planOffset + bytes)
      return std::nullopt;
    if (m.planOffset + m.planBytes <= planOffset)
      before += m.planBytes;
  }
  return planOffset - before;
}

uint64_t kernelWorkspaceOf(const Instruction &instr) {
  const Attrs a(instr);
  if (isOp(instr, Op::rmsnorm_grad) || isOp(instr, Op::add_rmsnorm_grad))
    return rmsnormBackwardWorkspaceBytes(a.i("rows"), a.i("dim"));
  if (isOp(instr, Op::embedding_grad))
    return embeddingBackwardWorkspaceBytes(a.i("vocab"));
  if (isOp(instr, Op::moe_router) || isOp(instr, Op::moe_router_grad)) {
    // kernels::routerShapeOf's reading: seq_aux_loss balances each sequence.
    const int64_t tokens = a.i("tokens"), seq = std::max<int64_t>(1, a.i("seq", tokens));
    const int64_t groups = a.s("load_balancing_type") == "seq_aux_loss" ? tokens / seq : 1;
    return moeRouterWorkspaceBytes(tokens, a.i("hidden"), a.i("experts"), a.i("top_k"), groups);
  }
  if (isOp(instr, Op::moe_permute))
    return moePermuteWorkspaceBytes(a.i("tokens"), a.i("top_k"), a.i("experts"));
  if (isOp(instr, Op::moe_grouped_mlp) || isOp(instr, Op::moe_grouped_mlp_grad))
    return groupedMlpWorkspaceBytes(a.i("rows"), a.i("hidden"), a.i("ffn"), a.i("experts"),
                                    isOp(instr, Op::moe_grouped_mlp_grad),
                                    ExpertGemmPath::Library);
  if (isOp(instr, Op::moe_sort_chunks))
    return moeSortChunksWorkspaceBytes(a.i("parts"), a.i("groups"));
  if (isOp(instr, Op::moe_gather_counts))
    return uint64_t(a.i("parts") * a.i("experts")) * sizeof(int32_t);
  return 0;
}

uint64_t kernelWorkspace(const Plan &plan) {
  uint64_t most = 0;
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions())
      most = std::max(most, kernelWorkspaceOf(instr));
  return most;
}

AttentionWorkspace attentionWorkspaceOf(const Plan &plan, const Instruction &instr,
                                        uint64_t deviceBytes) {
  AttentionWorkspace w;
  // Ring attention's block forward (attention_block) needs none.
  const bool block = isOp(instr, Op::attention_block_grad);
  const bool backward = block || isOp(instr, Op::attention_grad);
  if (!backward && !isOp(instr, Op::attention))
    return w;
  const Attrs a(instr);
  w.batch = a.i("batch"), w.heads = a.i("heads"), w.seq = a.i("seq");
  w.kvSeq = block ? w.seq : a.i("kv_seq"), w.headDim = a.i("head_dim");
  if (w.batch == 0 || w.seq == 0)
    return w; // the launchers return at once
  const std::string axis = a.s("context_parallel_axis");
  const bool contextParallel = block || (!axis.empty() && plan.mesh().cp() > 1);
  w.deterministic = plan.training().deterministic_mode();
  w.cudnnBytes = cudnnAttentionWorkspaceBytes(w.batch, w.heads, w.seq, w.kvSeq, w.headDim,
                                              w.deterministic);
  // The order of planAttention's tests: documents, cp, then the limit.
  if (a.i("position_ids"))
    w.kernels = AttentionKernels::MtcDocuments;
  else if (contextParallel)
    w.kernels = AttentionKernels::MtcContextParallel;
  else if (!cudnnWorkspaceFits(w.cudnnBytes, deviceBytes))
    w.kernels = AttentionKernels::MtcOverLimit;
  else
    w.kernels = AttentionKernels::Cudnn;
  const bool cudnn = w.kernels == AttentionKernels::Cudnn;
  if (!backward)
    w.bytes = cudnn ? kCudnnAttentionForwardWorkspaceBytes : 0;
  else
    w.bytes = cudnn ? w.cudnnBytes : mtcAttentionWorkspaceBytes(w.batch, w.heads, w.seq);
  return w;
}

AttentionWorkspace attentionWorkspace(const Plan &plan, uint64_t deviceBytes) {
  AttentionWorkspace most; // the instruction with the largest need
  uint64_t shared = 0, planned = 0;
  bool backwardShared = false;
  for (const Program &program : plan.programs())
    for (const Instruction &instr : program.instructions()) {
      const AttentionWorkspace w = attentionWorkspaceOf(plan, instr, deviceBytes);
      if (w.kernels == AttentionKernels::None)
        continue;
      const bool inArena =
          instr.has_workspace() &&
          w.bytes <= plannedWorkspaceDeviceBytes(plan.buffers(instr.workspace()));
      uint64_t &need = inArena ? planned : shared;
      need = std::max(need, w.bytes);
      backwardShared |= !inArena && !isOp(instr, Op::attention);
      if (most.kernels == AttentionKernels::None || w.bytes > most.bytes)
        most = w;
    }
  most.bytes = shared;
  most.plannedBytes = planned;
  most.backwardShared = backwardShared;
  return most;
}

} // namespace mt::plan
