// mtrun --profile-comm on the CUDA backend: where a step's communication
// goes, measured with CUDA events on the streams, without changing how the
// step runs (graphs still replay; only one synchronization per step, after
// the optimizer, which mtrun's loss read-back makes anyway). Off, nothing
// of this is made or called.
//
// Per step it measures the GPU step (the compute stream from the zeroing
// of the gradients to the end of the optimizer), the spans of the programs
// (the rest is the compute stream idle between programs: host work and
// read-backs), every collective and pipeline transfer the compute stream
// runs (exposed: compute waits for it), and, with the overlapped dp
// gradient reduction (runtime/cuda/NcclOverlap.h), the reductions' time on
// their own stream, the tail from the end of backward to the last bucket
// reduced, and the optimizer's wait for it.
#ifndef MT_RUNTIME_CUDA_COMMPROFILE_H
#define MT_RUNTIME_CUDA_COMMPROFILE_H

#include "runtime/cuda/Lowering.h"

#include <cuda_runtime_api.h>

#include <map>
#include <string>
#include <vector>

namespace mt::cuda {

/// The report's line of the sparse embedding rows (OverlapTimes::sparseRows).
inline constexpr const char *kSparseRowsLine =
    "  of which the sparse embedding rows' all-gather and addition";

/// Times of the overlapped gradient reduction in one step, in ms.
struct OverlapTimes {
  // Sum over buckets of their NCCL calls (communication stream), with the
  // sparse embedding rows' gather and addition (NcclOverlap.h).
  double reducing = 0;
  double tail = 0; // end of backward -> last bucket reduced, or rows added (0: before)
  double optimizerWait = 0; // the compute stream's wait for the last bucket
  double lastBucket = 0;    // the last bucket's NCCL calls (the tail's floor)
  size_t lastBucketElements = 0;
  /// The sparse embedding rows' gather and addition (in `reducing`); < 0:
  /// none were kept sparse.
  double sparseRows = -1;
};

class CommProfile {
public:
  CommProfile() = default;
  CommProfile(const CommProfile &) = delete;
  CommProfile &operator=(const CommProfile &) = delete;
  ~CommProfile();

  /// `inner` between two events on the stream it is given, counted under
  /// `what` (ms per step). Only for steps that run eagerly (collectives are
  /// never captured): each call takes the next pair of a pool.
  Launch timed(Launch inner, std::string what);
  /// Brackets a program's run (graph or eager) on `stream`.
  Status beginProgram(cudaStream_t stream) { return mark(stream, programStart_); }
  Status endProgram(cudaStream_t stream);
  /// The start of a step (before its gradients are zeroed) and its end
  /// (after the optimizer): waits for `stream`, then adds the step's times;
  /// `overlap`, when given, are the overlapped reduction's times of the step.
  /// The first step (warm-up: first launches, graph capture) is not counted.
  Status beginStep(cudaStream_t stream) { return mark(stream, stepStart_); }
  Status endStep(cudaStream_t stream, const OverlapTimes *overlap);

  /// The table of means per counted step; `predictedBubble` (a fraction;
  /// negative: not a pipeline) is printed beside the measured bubble: the
  /// compute stream's time in pipeline transfers (receives wait for the
  /// other stage) and idle between programs, over the step.
  std::string report(double predictedBubble) const;

private:
  /// Records the next pooled event on `stream`; its index in `index`.
  Status mark(cudaStream_t stream, size_t &index);
  Status recordPair(cudaStream_t stream, const std::string &what, const Launch &inner);
  Expected<double> elapsed(size_t from, size_t to) const;

  std::vector<cudaEvent_t> events_; // the pool; used_ of them this step
  size_t used_ = 0;
  size_t stepStart_ = 0, programStart_ = 0;
  struct Span {
    std::string what;
    size_t from, to;
  };
  std::vector<Span> spans_; // this step's

  int64_t stepsSeen_ = 0, counted_ = 0;
  double stepMs_ = 0, inProgramsMs_ = 0;
  std::map<std::string, double> exposedMs_;
  OverlapTimes overlap_;
  bool overlapped_ = false;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_COMMPROFILE_H
