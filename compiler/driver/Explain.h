// `mtc compile --explain`: the parallel layout of a model, in words, and
// what its plan gives each rank. Every figure of memory, parameters and
// communication comes from the plan, the same numbers mtrun allocates.
#ifndef MT_COMPILER_DRIVER_EXPLAIN_H
#define MT_COMPILER_DRIVER_EXPLAIN_H

#include "compiler/config/ParallelConfig.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/plan.pb.h"

#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace mt {

/// The model, the batch, the mesh and each rank's coordinates of a resolved
/// layout; no figures of memory (those come with the plan: explainPlan).
void explainLayout(const ModelDims &dims, const ParallelConfig &parallel, llvm::raw_ostream &os);

/// The optimizer and learning-rate schedule a plan carries, in one line
/// (Megatron-Core's names: lr, min_lr, lr_warmup_iters, lr_decay_style,
/// lr_decay_iters, weight_decay, adam_beta1/2, adam_eps, clip_grad,
/// train_iters).
void explainOptimizer(const OptimizerConfig &optimizer, llvm::raw_ostream &os);

/// The layers of each virtual stage of `plan` (chunk c of stage s is
/// virtual stage c x pp + s; one entry without pipelining), from the layers
/// its forward programs' instructions belong to.
std::vector<std::set<int64_t>> layersOfVirtualStages(const plan::Plan &plan);

/// The pipeline stages of `plan` and the layers each holds.
void explainPipelineStages(const plan::Plan &plan, llvm::raw_ostream &os);

/// One micro-batch slot's activations in a plan: its activation arena as
/// planned (fp32, the CPU backend) and as the CUDA backend lays it out
/// (DeviceFootprint: bf16 activations and those kept 32-bit).
struct ActivationBytes {
  uint64_t cpu = 0, gpu = 0;
};
ActivationBytes activationBytes(const plan::Plan &plan);

/// The device memory --explain assumes where --gpu-memory gives none (for
/// attention's choice of kernels): the one the plan's workspaces are sized
/// for, an H200's.
inline constexpr uint64_t kAssumedGpuBytes = plan::kAssumedDeviceBytes;

/// Bytes of one rank's CUDA arenas, staging and attention workspace (the
/// "total (the peak)" that --explain prints) on a device of `deviceBytes`
/// (0: kAssumedGpuBytes): plan::DeviceFootprint::total() (weights, their
/// bf16 copy, staged weights and gradients, gradients, AdamW state, the
/// communication staging, ...), what attention's backward adds to the
/// kernel workspace (plan::attentionWorkspace), and each activation slot's
/// activations, 32-bit activations and inputs.
uint64_t gpuPlanBytes(const plan::Plan &plan, uint64_t deviceBytes);

/// The activation slots a stage's schedule needs at most (1 without pp).
uint64_t mostActivationSlots(const plan::Plan &plan);

/// The memory table of --explain: one rank's memory by kind on the CPU
/// backend, the CUDA device (on a device of `deviceBytes`, 0:
/// kAssumedGpuBytes, said so) and the CUDA host, the total, and notes on
/// what the offloads move and which attention kernels run.
void explainMemory(const plan::Plan &plan, uint64_t deviceBytes, llvm::raw_ostream &os);

/// Host memory of one rank of the CUDA backend (exec::HostMemory's
/// host-side arenas): the fp32 weights and AdamW state that saves and
/// exports read and loads write (no weights of their own where the masters
/// are the weights: plan::hostWeightsAreMasters), and every slot's inputs
/// and outputs.
struct CudaHostBytes {
  uint64_t weights = 0, optimizer = 0, inputs = 0;
  /// The offloads' host arenas: the fp32 master weights, and the gradients
  /// (optimizer_offload: the peak of those staged for the host update;
  /// grad_offload: the main gradients) (pinned; the AdamW state moved
  /// there counts in `optimizer`).
  uint64_t masters = 0, gradients = 0;
  /// param_offload: the weights the programs stage on the device, all of
  /// them (HOST_WEIGHTS, pinned).
  uint64_t offloadedWeights = 0;
  uint64_t total() const {
    return weights + optimizer + inputs + masters + gradients + offloadedWeights;
  }
};
CudaHostBytes cudaHostBytes(const plan::Plan &plan);

/// What the GPU holds besides the plan's arenas: its CUDA context and the
/// libraries' workspaces (measured, about).
inline constexpr uint64_t kCudaContextBytes = uint64_t(512) << 20;

/// "1.5 GiB": bytes in binary units, one decimal.
std::string bytesText(double bytes);

/// The AdamW state and the fp32 master weights one rank updates, with and
/// without Megatron-Core's distributed optimizer (on the stage that holds
/// most), the fp32 masters each backend holds, and the optimizer's weight
/// all-gathers and in-place shards (ExplainDistributedOptimizer.cpp).
void printDistributedOptimizer(const plan::Plan &plan, llvm::raw_ostream &os);

/// What activation recompute changes in a plan: the activations of the same
/// step planned without it, and the forward FLOPs the recomputed ops add.
struct RecomputeEffect {
  std::string what; // RecomputeConfig::describe()
  ActivationBytes without; // the same step planned without recompute
  int64_t ops = 0;          // forward ops recomputed per micro-batch, all stages
  /// Per pipeline stage, per micro-batch: the recomputed ops' FLOPs, and
  /// the stage's model FLOPs of training (3 x forward), as ModelInfo counts them.
  std::vector<double> extraFlops, trainingFlops;
};

/// What the compiled plan holds for each rank: the parameters of each
/// stage, memory per arena (for the CPU and the CUDA backend), and the
/// collectives of one step (runs, bytes and the traffic of each rank).
/// With `recompute`, the activations with and without it and its cost;
/// `deviceBytes` as explainMemory.
void explainPlan(const plan::Plan &plan, llvm::raw_ostream &os,
                 const RecomputeEffect *recompute = nullptr, uint64_t deviceBytes = 0);

/// `n` with commas between groups of three digits: 3,213,568.
std::string withCommas(int64_t n);

} // namespace mt

#endif // MT_COMPILER_DRIVER_EXPLAIN_H
