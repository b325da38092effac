// The CUDA executor's state, shared by its files: CudaExecutor.cpp (running
// programs, state copies, profiling) and CudaExecutorPrograms.cpp (lowering
// the programs and their variants). Private to runtime/cuda.
#ifndef MT_RUNTIME_CUDA_CUDAEXECUTORIMPL_H
#define MT_RUNTIME_CUDA_CUDAEXECUTORIMPL_H

#include "runtime/cuda/Check.h"
#include "runtime/cuda/CommProfile.h"
#include "runtime/cuda/DeviceWeights.h"
#include "runtime/cuda/InstructionProfile.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/NcclCommunicator.h"
#include "runtime/cuda/NcclOverlap.h"
#include "runtime/cuda/ParamGatherOverlap.h"
#include "runtime/cuda/NcclPipeline.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/GradientBuckets.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanSchedule.h"
#include "runtime/plan/Roofline.h"
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <memory>
#include <set>
#include <sstream>
#include "runtime/cuda/CudaExecutor.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace mt::cuda::executor {

/// Suffixes of a program's variants: forward_backward's first micro-batch of
/// a step, its last one's with overlapped gradient reduction (and the
/// optimizer after it), and the first forward after an optimizer step whose
/// parameter gathers it starts with.
inline constexpr const char *kFirst = "+first";
inline constexpr const char *kOverlapped = "+overlap";
inline constexpr const char *kGathering = "+gather";

/// The bytes an instruction of `family` moves of buffer `id` on the GPU
/// (the roofline's count; CudaExecutorPrograms.cpp).
double deviceBytes(const plan::Plan &plan, const DeviceArenas &arenas, uint32_t id,
                   bool isOutput, plan::OpFamily family);

/// A run of a program's steps [begin, end): launched eagerly (a pipeline
/// transfer) or replayed as a CUDA graph (the steps between transfers).
struct Piece {
  size_t begin = 0, end = 0;
  bool eager = false;
  cudaGraphExec_t graph = nullptr; // captured at the first replay
};

struct LoweredProgram {
  const plan::Program *plan = nullptr;
  int64_t slot = 0; // the pipeline slot whose per-micro-batch buffers it uses
  std::vector<Step> steps;
  std::vector<int> order; // the order its instructions are issued in (Lowerer::order)
  /// OUTPUTS buffers written on the device: copied to the host after a run.
  std::vector<uint32_t> deviceOutputs;
  bool capturable = true;
  int64_t runs = 0;
  cudaGraphExec_t graph = nullptr;
  /// --profile: the graph again with an event recorded before its first
  /// launching step and after each (one more event than launching steps);
  /// captured at the first profiled run.
  cudaGraphExec_t timedGraph = nullptr;
  std::vector<cudaEvent_t> timedEvents;
  /// Not empty: replayed piece by piece (stagePieces).
  std::vector<Piece> pieces;
  /// The FLOPs and bytes of one run per profile class (plan/Roofline.h).
  std::map<std::string, plan::InstructionWork> work;
  /// The +first variant: runs with Resources::gradientsUnwritten set, after
  /// these GRADIENTS byte ranges are zero-filled (Lowerer::gradientZeroRanges).
  bool writesGradients = false;
  std::vector<plan::ByteRange> gradientZeroRanges;
};

class CudaExecutor final : public exec::Executor {
public:
  CudaExecutor(const plan::Plan &plan, exec::HostMemory &host, const exec::RankContext *rank,
               const CudaOptions &options)
      : plan_(plan), host_(host), rank_(rank), options_(options) {}
  ~CudaExecutor() override;

  Status initialize();
  Expected<exec::ProgramResult> run(const std::string &name,
                                    const std::function<void(int)> &afterEach) override;
  Expected<std::unique_ptr<exec::PipelineChannels>> openPipeline() override;
  void setPipeline(exec::PipelineChannels *pipeline, int64_t microBatch) override {
    resources_.pipeline = pipeline;
    resources_.microBatch = microBatch;
  }
  Status clearGradients() override;
  Status inputsWritten() override;
  Status stateWritten() override;
  Status readState() override;
  std::string profileReport() const override;

private:
  Status lowerAll();
  Expected<LoweredProgram> lowerProgram(Lowerer &lowerer, const plan::Program &program,
                                        int64_t slot);
  /// The lowered program of `name` for the pipeline slot the host uses now.
  std::string inSlot(const std::string &name) const;
  Status planOverlap();
  /// --profile-comm: every collective step timed, the overlap's events.
  Status planCommProfile();
  /// The bubble the plan's schedule predicts (backward = 2 x forward);
  /// negative without pipeline parallelism.
  double predictedBubble() const;
  /// overlap_param_gather: the optimizer's deferred gathers move to the
  /// start of the next forward_backward (ParamGatherOverlap).
  Status planParamGather();
  /// The lowered program that runs for `name` now: the first micro-batch's
  /// forward_backward (`first`: its +first variant) and, with overlap, the
  /// last one's and the optimizer after it differ.
  std::string variantOf(const std::string &name, bool first);
  Status launchEagerly(LoweredProgram &program, exec::ProgramResult &result);
  /// --profile-comm after a program's launch; after the optimizer (its
  /// overlapped variant when `overlapped`), the step's times.
  Status endProfiledProgram(const std::string &name, bool overlapped);
  /// Captures `program`'s steps [begin, end) as the CUDA graph `graph`;
  /// with `timing`, the events its replays record: the first before the
  /// first launching step, one after each.
  Status capture(const LoweredProgram &program, size_t begin, size_t end,
                 cudaGraphExec_t &graph, const std::vector<cudaEvent_t> *timing = nullptr);
  /// --profile on a program that replays as one graph: replays its timed
  /// graph (captured on first use), to be read by recordTimedRun once the
  /// stream is done.
  Status launchTimed(LoweredProgram &program);
  /// Adds the instructions' times of the timed replay that just finished.
  Status recordTimedRun(const LoweredProgram &program);
  /// Adds one run's roofline work of the classes that launched something.
  void recordWork(const LoweredProgram &program);
  /// A replay of a program in pieces (stagePieces), each graph captured at
  /// its first replay.
  Status launchPieces(LoweredProgram &program);
  Status copyArena(plan::ArenaKind kind, cudaMemcpyKind direction);
  /// Zero-fills [begin, end) byte ranges of the GRADIENTS arena on the stream.
  Status zeroGradients(const std::vector<plan::ByteRange> &ranges);
  /// The whole GRADIENTS arena, as zeroGradients takes it.
  std::vector<plan::ByteRange> allGradients() const;
  std::string where(const LoweredProgram &program, const Step &step) const;

  const plan::Plan &plan_;
  exec::HostMemory &host_;
  const exec::RankContext *rank_;
  CudaOptions options_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceArenas> arenas_;
  Resources resources_;
  std::map<std::string, LoweredProgram> programs_;
  std::unique_ptr<GradientReduceOverlap> overlap_; // null: the optimizer reduces
  std::unique_ptr<CommProfile> commProfile_;       // null: no --profile-comm
  // --profile-comm: the programs the schedule runs as the optimizer step
  // ("optimizer_step", or "optimizer.<stage>" in pipelines); a step ends there.
  std::set<std::string> optimizerPrograms_;
  std::unique_ptr<ParamGatherOverlap> gathers_;    // null: the optimizer gathers
  bool gathersPending_ = false; // an optimizer step ran without its gathers
  int64_t microBatchesRun_ = 0;                    // forward_backward runs this step
  bool reducedEarly_ = false; // this step's gradients were reduced during backward
  /// clearGradients left the main gradients to the next program (run zero-
  /// fills what its +first variant does not write, or all of them).
  bool gradientsUncleared_ = false;
  InstructionProfile profile_;
  int64_t stepsStarted_ = 0; // clearGradients calls, for the profile's steps
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

/// The pieces that replay a pipeline stage's program (CudaExecutorPrograms.cpp).
std::vector<Piece> stagePieces(const LoweredProgram &program);

} // namespace mt::cuda::executor

#endif // MT_RUNTIME_CUDA_CUDAEXECUTORIMPL_H
