// The CUDA backend: plan programs lowered once to launches over the plan's
// arenas in GPU memory (bf16 activations, fp32 master weights, gradients
// and optimizer state), run on one stream, captured as CUDA graphs; the
// plan's collectives as NCCL calls, the dp gradient all-reduce in buckets
// on a second stream during backward (runtime/cuda/NcclOverlap.h).
#ifndef MT_RUNTIME_CUDA_CUDAEXECUTOR_H
#define MT_RUNTIME_CUDA_CUDAEXECUTOR_H

#include "runtime/cuda/Attention.h"
#include "runtime/cuda/MoE.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/Memory.h"
#include "runtime/exec/RankContext.h"

#include <memory>
#include <optional>

namespace mt::cuda {

struct CudaOptions {
  /// Replays programs that never wait for the host as CUDA graphs.
  bool graphs = true;
  /// With `graphs`: a pipeline stage's programs replay as CUDA graphs
  /// between their transfers, which run eagerly (stagePieces in
  /// CudaExecutor.cpp says why); MT_CUDA_STAGE_GRAPHS=0 runs them eagerly.
  bool stageGraphs = true;
  /// Waits for the GPU after every instruction, so that an asynchronous
  /// fault names its instruction (slow; MT_CUDA_SYNC=1).
  bool syncEachInstruction = false;
  /// Times every instruction with CUDA events for profileReport(): inside
  /// the replayed graph of a program that replays as one (events between
  /// instructions), the others' instructions alone (no stage graphs).
  bool profile = false;
  /// Times the communication with CUDA events on the streams, graphs
  /// replaying as without it, for profileReport() (runtime/cuda/
  /// CommProfile.h; mtrun --profile-comm).
  bool profileComm = false;
  /// Starts the dp gradient all-reduce in buckets during the last
  /// micro-batch's backward (Megatron's overlap_grad_reduce;
  /// runtime/cuda/NcclOverlap.h); MT_CUDA_OVERLAP=0 turns it off.
  bool overlapGradReduce = true;
  /// With `overlapGradReduce`: the last micro-batch's embedding backward
  /// keeps its rows sparse, so that the bucket of the embedding's gradient
  /// (tied: also the output layer's) starts early in backward, and the dp
  /// ranks' rows are gathered and added after its reduction
  /// (runtime/cuda/NcclOverlap.h); the same sums up to fp32 rounding.
  /// MT_CUDA_SPARSE_EMBEDDING_GRAD=0 scatter-adds them before it.
  bool sparseEmbeddingGrad = true;
  /// Gradient elements per bucket (MT_CUDA_BUCKET_ELEMENTS); 0: Megatron's
  /// bucket_size default for the plan's dp (defaultBucketElements).
  size_t bucketElements = 0;
  /// Attention's implementation: auto (cuDNN's fused flash attention where
  /// it runs the shape, else the mtc kernels), cudnn or mtc
  /// (MT_ATTENTION_BACKEND). Whether its backward must be deterministic is
  /// the plan's deterministic_mode unless attentionDeterministic says.
  AttentionOptions attention{AttentionBackend::Auto, false};
  /// MT_ATTENTION_DETERMINISTIC=0|1 over the plan's deterministic_mode
  /// (unset: the plan decides).
  std::optional<bool> attentionDeterministic;
  /// Ring attention's key/value transfers (ring_shift) on a stream of their
  /// own, overlapping the attention blocks that do not need them
  /// (MT_CUDA_OVERLAP_CP=0 keeps them on the compute stream).
  bool overlapRingTransfers = true;
  /// Tensor and sequence parallelism's all-gathers, reduce-scatters and
  /// all-reduces of bf16 activations on that stream too, each
  /// weight-gradient GEMM issued after the next of them so that it runs
  /// meanwhile (Megatron's tp_comm_overlap in its simple form; Lowering.h,
  /// plan::deferWeightGradients); MT_CUDA_OVERLAP_SP=0 keeps them on the
  /// compute stream in the plan's order.
  bool overlapSequenceParallel = true;
  /// How the MoE experts' GEMMs run (MT_MOE_GEMM=auto|cublaslt|grouped|kernel|tiled).
  ExpertGemm moeGemm = ExpertGemm::Auto;
  /// How each GEMM shape's cuBLASLt algorithm is chosen (GemmRunner::Choice;
  /// MT_GEMM_CHOICE=heuristic|timed|verbose).
  GemmRunner::Choice gemmChoice = GemmRunner::Choice::Heuristic;
  /// Streams the experts' small weight-gradient products run side by side
  /// on (ExpertLanes; MT_MOE_LANES=N, 0: one after another on the compute
  /// stream). Three: one such product (Qwen3-30B-A3B's 768 x 2048, 48 tiles)
  /// fills about a third of an H200's 132 multiprocessors.
  int moeLanes = 3;
};

/// The options the environment sets: MT_CUDA_SYNC=1, MT_CUDA_GRAPHS=0,
/// MT_CUDA_STAGE_GRAPHS=0, MT_CUDA_OVERLAP=0, MT_CUDA_OVERLAP_CP=0, MT_CUDA_OVERLAP_SP=0,
/// MT_CUDA_SPARSE_EMBEDDING_GRAD=0,
/// MT_CUDA_BUCKET_ELEMENTS=N (an error names a value that
/// is not a positive integer), MT_ATTENTION_BACKEND=auto|cudnn|mtc,
/// MT_ATTENTION_DETERMINISTIC=0|1, MT_MOE_GEMM=auto|cublaslt|grouped|kernel|tiled,
/// MT_GEMM_CHOICE=heuristic|timed|verbose, MT_MOE_LANES=N (0 to 16).
Expected<CudaOptions> optionsFromEnvironment();

/// GPUs visible to this process (0 without a driver).
int deviceCount();

/// Lowers every program of `plan` for the GPU; `host` is the host side of
/// the state (HostMemory::Arenas::HostSide is enough). An op without a CUDA
/// kernel is an error that names its instruction.
Expected<std::unique_ptr<exec::Executor>> createCudaExecutor(const plan::Plan &plan,
                                                             exec::HostMemory &host,
                                                             const exec::RankContext *rank,
                                                             const CudaOptions &options);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_CUDAEXECUTOR_H
