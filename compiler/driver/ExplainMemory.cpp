// `mtc compile --explain`'s memory per rank: the arenas of a plan as the
// CPU and the CUDA backend allocate them, the CUDA backend's host memory
// and kernel workspace, and what the offloads move.
#include "compiler/driver/Explain.h"

#include "runtime/plan/AttentionWorkspace.h"
#include "runtime/plan/CudaSupport.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/Wording.h"

#include "llvm/Support/Format.h"

#include <algorithm>
#include <map>
#include <string>

namespace mt {

/// The activation slots a stage's schedule needs at most (1 without pp).
uint64_t mostActivationSlots(const plan::Plan &plan) {
  int64_t slots = 1;
  for (const plan::StageSchedule &stage : plan.schedule())
    slots = std::max(slots, stage.activation_slots());
  return uint64_t(slots);
}

namespace {

/// grad_offload with the distributed optimizer: the bytes of the reduced
/// gradient shards in HOST_GRADIENTS (the buckets' host_grad_buffer there,
/// beside the whole buckets), on the stage that holds the most.
uint64_t hostGradientShardBytes(const plan::Plan &plan) {
  std::map<std::string, const plan::Parameter *> byName;
  for (const plan::Parameter &p : plan.parameters())
    byName[p.name()] = &p;
  uint64_t most = 0;
  for (int64_t s = 0; s < std::max<int64_t>(plan.mesh().pp(), 1); ++s) {
    uint64_t bytes = 0;
    for (const plan::Bucket &b : plan.buckets())
      if (b.host_grad_buffer() != 0 &&
          plan.buffers(b.grad_buffer()).arena() == plan::HOST_GRADIENTS &&
          plan::stageHolds(*byName.at(b.members(0).param()), s))
        bytes += plan.buffers(b.host_grad_buffer()).size_bytes();
    most = std::max(most, bytes);
  }
  return most;
}

/// The CPU backend's collectives gather or reduce the full fp32 tensor in a
/// temporary of its own (runtime/cpu/CpuExecutor.cpp): the largest.
uint64_t cpuCollectiveStaging(const plan::Plan &plan) {
  uint64_t most = 0;
  for (const plan::Program &program : plan.programs())
    for (const plan::Instruction &instr : program.instructions()) {
      const bool gather = plan::isOp(instr, plan::Op::all_gather);
      if (gather || plan::isOp(instr, plan::Op::reduce_scatter))
        most = std::max(
            most, plan.buffers(gather ? instr.outputs(0) : instr.inputs(0)).size_bytes());
    }
  return most;
}

/// What the kernels add to the CUDA backend's shared kernel workspace,
/// which the runtime sizes to the largest need (runtime/cuda/Lowering.h
/// needWorkspace) and which the communication staging uses too:
/// attention's needs that no planned workspace holds, and the other
/// kernels' (plan::kernelWorkspace: norms, embedding, mixture of experts);
/// labelled by attention's while it is largest.
struct KernelWorkspaceRow {
  const char *label;
  uint64_t bytes;
};
KernelWorkspaceRow kernelWorkspaceRow(const plan::Plan &plan, const plan::DeviceFootprint &gpu,
                                      const plan::AttentionWorkspace &attention) {
  const uint64_t others = plan::kernelWorkspace(plan);
  const uint64_t most = std::max(attention.bytes, others);
  const char *label = attention.bytes < others ? "kernel workspace (shared)"
                      : attention.kernels == plan::AttentionKernels::Cudnn
                          ? "attention workspace (cuDNN backward)"
                          : "attention workspace (mtc backward)";
  return {label, std::max(most, gpu.collectiveStaging) - gpu.collectiveStaging};
}

/// What the offloads move, below the memory table: optimizer_offload's
/// copies, grad_offload's staged gradients, param_offload's staged weights.
void printOffloadNotes(const plan::DeviceFootprint &gpu, const CudaHostBytes &host,
                       std::map<plan::ArenaKind, uint64_t> &arenas, bool gradsOnHost,
                       uint64_t mainOnHost, uint64_t shards, llvm::raw_ostream &os) {
  if (host.masters)
    os << "  (optimizer_offload: AdamW runs on the host from the master weights, gradients and "
          "AdamW state in pinned host memory; each step copies "
       << (gradsOnHost ? "" : "the gradients to the host and ") << "the updated weights back, "
       << bytesText(double((gradsOnHost ? 1 : 2) * host.masters)) << " per rank"
       << (gradsOnHost ? ""
                       : ", each gradient through a host staging area while the one before it "
                         "is updated")
       << (gpu.weightStaging ? "; the GPU keeps only the bf16 copy of the weights" : "")
       << (host.masters && !host.weights && !host.offloadedWeights
               ? ", and the host's fp32 weights are the masters"
               : "")
       << ")\n";
  if (gradsOnHost)
    os << "  (grad_offload: the main gradients live in pinned host memory; each program copies "
          "a gradient to the GPU before its first use there and back after its last, so the GPU "
          "holds at most "
       << bytesText(double(gpu.stagedGradients)) << " of them at once instead of "
       << bytesText(double(mainOnHost))
       << (shards ? "; each bucket's reduce-scatter runs on the GPU and its shard goes to the "
                    "host, where"
                  : "; the gradient norm")
       << (shards ? (host.masters ? " the gradient norm and AdamW read it" :
                                    " the gradient norm reads it (AdamW a staged copy)")
                  : (host.masters ? " and AdamW read them on the host" : " reads them on the host"))
       << ")\n";
  if (arenas[plan::HOST_WEIGHTS])
    os << "  (param_offload: the weights live in host memory; each program copies a weight to "
          "the device before each run of its uses there (and the optimizer's update back), so "
          "the device holds at most "
       << bytesText(double(arenas[plan::STAGED_WEIGHTS])) << " of them at once instead of "
       << bytesText(double(arenas[plan::HOST_WEIGHTS]))
       << "; CUDA: the weights in pinned host memory, each staged copy in fp32 with its bf16 "
          "copy, "
       << bytesText(double(gpu.stagedWeights + gpu.stagedWeightShadows)) << " at most)\n";
}

/// What the attention workspace row holds and why: the kernels auto picks
/// for the plan's largest attention shape on a device of `deviceBytes`
/// (0: kAssumedGpuBytes, said so).
void printAttentionNote(const plan::AttentionWorkspace &w, const plan::DeviceFootprint &gpu,
                        uint64_t deviceBytes, llvm::raw_ostream &os) {
  if (w.kernels == plan::AttentionKernels::None)
    return;
  const std::string shape = "batch " + std::to_string(w.batch) + " x " +
                            countOf(w.heads, "head") + " x seq " + std::to_string(w.seq) +
                            (w.kvSeq != w.seq ? " (keys " + std::to_string(w.kvSeq) + ")" : "");
  const uint64_t device = deviceBytes ? deviceBytes : kAssumedGpuBytes;
  const std::string of = deviceBytes ? "--gpu-memory's " + bytesText(double(device))
                                     : bytesText(double(device)) +
                                           ", an H200's, assumed: --gpu-memory SIZE sets it";
  const std::string limit = "1/16 of the device's memory (" +
                            bytesText(double(device / plan::kCudnnWorkspaceShareOfDevice)) +
                            " of " + of + ")";
  const std::string cudnn =
      std::string(w.deterministic ? "its deterministic backward (deterministic_mode) keeps dP "
                                  "whole in bf16 (2 bytes per query-key pair) and an fp32 dQ: "
                                : "its backward accumulates an fp32 dQ with atomics "
                                  "(deterministic_mode: false): ") +
      bytesText(double(w.cudnnBytes)) + " at " + shape;
  os << "  (attention, under mtrun's default MT_ATTENTION_BACKEND=auto: ";
  switch (w.kernels) {
  case plan::AttentionKernels::Cudnn:
    os << "cuDNN's fused attention; " << cudnn << "; auto takes it while that is at most "
       << limit << ", else the mtc kernels";
    break;
  case plan::AttentionKernels::MtcOverLimit:
    os << "the mtc kernels, as cuDNN's fused attention is over its limit: " << cudnn
       << ", over " << limit;
    break;
  case plan::AttentionKernels::MtcDocuments:
    os << "the mtc kernels: cuDNN's do not mask documents packed in a row (position ids)";
    break;
  default:
    os << "the mtc kernels: cuDNN's do not mask a context-parallel slice";
    break;
  }
  if (gpu.collectiveStaging && w.bytes)
    os << "; the kernels share one workspace with the communication staging: the attention "
          "row is what attention adds to it, "
       << bytesText(double(std::max(w.bytes, gpu.collectiveStaging))) << " in all";
  if (w.plannedBytes && !w.backwardShared)
    os << "; each backward's workspace (" << bytesText(double(w.plannedBytes))
       << " at most) is planned in the activation arena, in bytes free while it runs: "
          "the activations row holds it";
  else if (w.plannedBytes)
    os << "; some backwards' workspaces (" << bytesText(double(w.plannedBytes))
       << " at most) are planned in the activation arena, in bytes free while they run; "
          "the others take the attention row, as below the activations' peak no bytes are "
          "free while they run";
  os << ")\n";
}

} // namespace

void explainMemory(const plan::Plan &plan, uint64_t deviceBytes, llvm::raw_ostream &os) {
  bool pipelined = plan.training().virtual_stages() > 1;
  std::map<plan::ArenaKind, uint64_t> arenas;
  for (const plan::Arena &a : plan.arenas())
    arenas[a.kind()] = a.size_bytes();
  const plan::DeviceFootprint gpu = plan::deviceFootprint(plan);
  // A pipeline stage keeps each micro-batch in flight in an activation slot
  // of its own: the rank of the stage with the most in flight needs most.
  const uint64_t slots = mostActivationSlots(plan);
  const CudaHostBytes host = cudaHostBytes(plan);
  const plan::AttentionWorkspace attention =
      plan::attentionWorkspace(plan, deviceBytes ? deviceBytes : kAssumedGpuBytes);
  const KernelWorkspaceRow workspace = kernelWorkspaceRow(plan, gpu, attention);
  const uint64_t cpuStaging = cpuCollectiveStaging(plan);
  // The CPU backend computes in host memory; the CUDA backend on the device
  // (CUDA) and keeps in host memory what saves, exports and inputs use.
  // Rows marked `ifAny` are left out when all zero (the offloads').
  // grad_offload: the main gradients themselves are in HOST_GRADIENTS.
  bool gradsOnHost = false;
  for (const plan::Parameter &p : plan.parameters())
    gradsOnHost |= p.trainable() && plan.buffers(p.grad_buffer()).arena() == plan::HOST_GRADIENTS;
  const uint64_t shards = gradsOnHost ? hostGradientShardBytes(plan) : 0;
  const uint64_t mainOnHost = arenas[plan::HOST_GRADIENTS] - shards;
  struct Row { const char *what; uint64_t cpu, gpu, host; bool ifAny = false; };
  const Row rows[] = {
      {"weights (fp32 master)", arenas[plan::PARAMETERS],
       gpu.weights + gpu.weightStaging + gpu.routerWeightBytes,
       host.weights},
      {"weights (bf16 copy the GPU reads)", 0, gpu.shadows, 0},
      // plan::masterRemainders: the GPU's fp32 masters are the bf16 copy
      // and these 16 low bits (Megatron-Core's store_param_remainders).
      {"weights (fp32 master's low 16 bits)", 0, gpu.remainders, 0, true},
      {"master weights (fp32, offloaded)", arenas[plan::HOST_PARAMETERS], 0, host.masters, true},
      // param_offload: the CUDA backend stages each weight in fp32 (what
      // the copy brings and AdamW updates) and its bf16 copy (what the
      // layers read), DeviceArenas.h.
      {"weights (fp32, offloaded)", arenas[plan::HOST_WEIGHTS], 0, host.offloadedWeights, true},
      {"weights staged on the device (peak)", arenas[plan::STAGED_WEIGHTS],
       gpu.stagedWeights + gpu.stagedWeightShadows, 0, true},
      {"gradients (fp32 main)", arenas[plan::GRADIENTS], gpu.gradients, 0},
      // optimizer_offload without grad_offload: the gradients pass through
      // a liveness-planned host staging arena; grad_offload: the main
      // gradients (and the distributed optimizer's reduced shards) live there.
      {gradsOnHost ? "gradients (fp32 main, offloaded)" : "gradients staged on the host (peak)",
       mainOnHost + arenas[plan::HOST_STAGED_GRADIENTS], 0, host.gradients - shards, true},
      {"reduced gradient shards (offloaded)", shards, 0, shards, true},
      {"gradients staged on the GPU (peak)", arenas[plan::STAGED_GRADIENTS], gpu.stagedGradients,
       0, true},
      {"AdamW state (fp32)", arenas[plan::OPTIMIZER] + arenas[plan::HOST_OPTIMIZER], gpu.optimizer,
       host.optimizer},
      {pipelined ? "activations (micro-batches in flight)"
                 : "activations (peak, liveness-planned)",
       arenas[plan::ACTIVATIONS] * slots, gpu.activations * slots, 0},
      {"activations kept 32-bit (lse, scalars)", 0, gpu.wideActivations * slots, 0},
      {"communication buffers (staging)", cpuStaging, gpu.collectiveStaging, 0},
      {workspace.label, 0, workspace.bytes, 0, true},
      {"inputs", arenas[plan::INPUTS] * slots, (gpu.inputs + gpu.outputs) * slots,
       host.inputs}};
  auto cell = [](uint64_t bytes) { return bytes ? bytesText(double(bytes)) : std::string("-"); };
  os << "memory per rank:\n";
  os << llvm::format("  %-38s %12s %12s %12s\n", "", "CPU (fp32)", "CUDA (bf16)", "CUDA host");
  uint64_t cpuTotal = 0, gpuTotal = 0;
  for (const Row &r : rows) {
    if (r.ifAny && !(r.cpu || r.gpu || r.host))
      continue;
    os << llvm::format("  %-38s %12s %12s %12s\n", r.what, cell(r.cpu).c_str(),
                       bytesText(double(r.gpu)).c_str(), cell(r.host).c_str());
    cpuTotal += r.cpu;
    gpuTotal += r.gpu;
  }
  os << llvm::format("  %-38s %12s %12s %12s\n", "total (the peak)",
                     bytesText(double(cpuTotal)).c_str(), bytesText(double(gpuTotal)).c_str(),
                     bytesText(double(host.total())).c_str());
  if (std::optional<plan::CudaGap> gap = plan::cudaGapOf(plan))
    os << "  (the CUDA backend does not run this plan yet: it " << gap->what
       << "; the CUDA columns are what it would hold)\n";
  printOffloadNotes(gpu, host, arenas, gradsOnHost, mainOnHost, shards, os);
  printAttentionNote(attention, gpu, deviceBytes, os);
  os << "  (CUDA host: the host memory a CUDA rank holds for the whole run: the fp32 weights "
        "and AdamW state that --save, --export-hf and the loads go through, the inputs, and "
        "what the offloads keep there)\n";
  os << "  (the GPU also holds its CUDA context and library workspaces, about "
     << bytesText(double(kCudaContextBytes))
     << " (cuBLASLt's 32 MiB among them; NCCL's own buffers, per communicator, come on top "
        "with several ranks); the arenas are allocated once, before the first step)\n";
  if (pipelined)
    os << "  (every rank's weight, gradient and AdamW arenas fit the stage that holds the most; "
          "activations: "
       << countOf(int64_t(slots), "slot") << " of "
       << countOf(plan.training().micro_batches_per_step(), "micro-batch", "micro-batches")
       << ", on the stage with the most in flight)\n";
}

CudaHostBytes cudaHostBytes(const plan::Plan &plan) {
  // exec::HostMemory::create with Arenas::HostSide: 64-byte multiples, the
  // per-micro-batch arenas once per slot.
  const uint64_t slots = mostActivationSlots(plan);
  auto padded = [](uint64_t n) { return (n + 63) / 64 * 64; };
  CudaHostBytes host;
  for (const plan::Arena &a : plan.arenas()) {
    if (a.kind() == plan::PARAMETERS)
      host.weights = plan::hostWeightsAreMasters(plan) ? 0 : padded(a.size_bytes());
    else if (a.kind() == plan::OPTIMIZER || a.kind() == plan::HOST_OPTIMIZER)
      host.optimizer += padded(a.size_bytes());
    else if (a.kind() == plan::HOST_PARAMETERS)
      host.masters = padded(a.size_bytes());
    else if (a.kind() == plan::HOST_WEIGHTS)
      host.offloadedWeights = padded(a.size_bytes());
    else if (a.kind() == plan::HOST_GRADIENTS || a.kind() == plan::HOST_STAGED_GRADIENTS)
      host.gradients += padded(a.size_bytes());
    else if (a.kind() == plan::INPUTS || a.kind() == plan::OUTPUTS)
      host.inputs += padded(a.size_bytes()) * slots;
  }
  return host;
}

uint64_t gpuPlanBytes(const plan::Plan &plan, uint64_t deviceBytes) {
  const plan::DeviceFootprint gpu = plan::deviceFootprint(plan);
  const plan::AttentionWorkspace attention =
      plan::attentionWorkspace(plan, deviceBytes ? deviceBytes : kAssumedGpuBytes);
  // total() counts the per-micro-batch arenas once; each slot has its own.
  return gpu.total() + kernelWorkspaceRow(plan, gpu, attention).bytes +
         (gpu.activations + gpu.wideActivations + gpu.inputs + gpu.outputs) *
             (mostActivationSlots(plan) - 1);
}

ActivationBytes activationBytes(const plan::Plan &plan) {
  ActivationBytes bytes;
  for (const plan::Arena &a : plan.arenas())
    if (a.kind() == plan::ACTIVATIONS)
      bytes.cpu = a.size_bytes();
  const plan::DeviceFootprint gpu = plan::deviceFootprint(plan);
  bytes.gpu = gpu.activations + gpu.wideActivations;
  return bytes;
}

} // namespace mt
