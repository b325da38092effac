// Events of --profile-comm, and its table.
#include "runtime/cuda/CommProfile.h"

#include "runtime/cuda/Check.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace mt::cuda {

CommProfile::~CommProfile() {
  for (cudaEvent_t e : events_)
    (void)cudaEventDestroy(e);
}

Status CommProfile::mark(cudaStream_t stream, size_t &index) {
  if (used_ == events_.size()) {
    cudaEvent_t e = nullptr;
    MT_CUDA_CHECK(cudaEventCreate(&e)); // timing events
    events_.push_back(e);
  }
  index = used_++;
  MT_CUDA_CHECK(cudaEventRecord(events_[index], stream));
  return Status::ok();
}

Status CommProfile::recordPair(cudaStream_t stream, const std::string &what,
                               const Launch &inner) {
  Span span{what, 0, 0};
  MT_CUDA_RETURN_IF_ERROR(mark(stream, span.from));
  MT_CUDA_RETURN_IF_ERROR(inner(stream));
  MT_CUDA_RETURN_IF_ERROR(mark(stream, span.to));
  spans_.push_back(std::move(span));
  return Status::ok();
}

Launch CommProfile::timed(Launch inner, std::string what) {
  return [this, inner = std::move(inner), what = std::move(what)](cudaStream_t s) {
    return recordPair(s, what, inner);
  };
}

Status CommProfile::endProgram(cudaStream_t stream) {
  Span span{std::string(), programStart_, 0};
  MT_CUDA_RETURN_IF_ERROR(mark(stream, span.to));
  spans_.push_back(std::move(span));
  return Status::ok();
}

Expected<double> CommProfile::elapsed(size_t from, size_t to) const {
  float ms = 0;
  MT_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[from], events_[to]));
  return double(ms);
}

Status CommProfile::endStep(cudaStream_t stream, const OverlapTimes *overlap) {
  size_t stepEnd = 0;
  MT_CUDA_RETURN_IF_ERROR(mark(stream, stepEnd));
  MT_CUDA_CHECK(cudaEventSynchronize(events_[stepEnd]));
  std::vector<Span> spans = std::move(spans_);
  spans_.clear();
  used_ = 0;
  if (stepsSeen_++ == 0) // warm-up: first launches, cuBLASLt set-up, graph capture
    return Status::ok();
  auto step = elapsed(stepStart_, stepEnd);
  if (!step)
    return step.status();
  stepMs_ += *step;
  for (const Span &span : spans) {
    auto ms = elapsed(span.from, span.to);
    if (!ms)
      return ms.status();
    if (span.what.empty())
      inProgramsMs_ += *ms;
    else
      exposedMs_[span.what] += *ms;
  }
  if (overlap) {
    overlapped_ = true;
    overlap_.reducing += overlap->reducing;
    overlap_.tail += overlap->tail;
    overlap_.optimizerWait += overlap->optimizerWait;
    overlap_.lastBucket += overlap->lastBucket;
    overlap_.lastBucketElements = overlap->lastBucketElements;
    if (overlap->sparseRows >= 0)
      overlap_.sparseRows = std::max(overlap_.sparseRows, 0.0) + overlap->sparseRows;
  }
  ++counted_;
  return Status::ok();
}

std::string CommProfile::report(double predictedBubble) const {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2);
  if (counted_ == 0) {
    out << "communication profile: no step after the first to measure (--steps 2 or more)\n";
    return out.str();
  }
  const double n = double(counted_), step = stepMs_ / n;
  auto line = [&](const std::string &what, double ms) {
    out << "  " << std::left << std::setw(70) << what << std::right << std::setw(9) << ms
        << std::setw(7) << std::setprecision(1) << 100.0 * ms / step << "%\n"
        << std::setprecision(2);
  };
  out << "communication profile (CUDA events on the streams, mean over " << counted_
      << " steps after the first):\n";
  out << "  " << std::left << std::setw(70) << "" << std::right << std::setw(9) << "ms/step"
      << std::setw(8) << "share" << "\n";
  line("GPU step (compute stream: zero-fill to optimizer end)", step);
  const double idle = std::max(0.0, step - inProgramsMs_ / n);
  line("compute stream idle between programs (host)", idle);
  double exposed = 0, transfers = 0;
  for (const auto &[what, ms] : exposedMs_) {
    line("compute stream in " + what, ms / n);
    if (what.rfind("pipeline", 0) == 0)
      transfers += ms / n;
    else
      exposed += ms / n;
  }
  if (overlapped_) {
    line("dp gradient reduction on its stream (all buckets)", overlap_.reducing / n);
    line("dp reduction tail: end of backward -> last bucket reduced", overlap_.tail / n);
    std::ostringstream last;
    last << "  of which the last bucket (" << std::fixed << std::setprecision(1)
         << double(overlap_.lastBucketElements) / 1e6 << "M gradients) reducing";
    line(last.str(), overlap_.lastBucket / n);
    if (overlap_.sparseRows >= 0)
      line(kSparseRowsLine, overlap_.sparseRows / n);
    line("optimizer's wait for the last bucket (compute stream)", overlap_.optimizerWait / n);
    exposed += overlap_.optimizerWait / n;
  }
  out << "exposed communication per step: " << exposed << " ms (" << std::setprecision(1)
      << 100.0 * exposed / step << "% of the GPU step)" << std::setprecision(2);
  if (transfers > 0)
    out << ", pipeline transfers and their waits " << transfers << " ms";
  out << "\n";
  if (predictedBubble >= 0)
    out << "pipeline bubble on this rank: measured " << std::setprecision(1)
        << 100.0 * (transfers + idle) / step
        << "% of the GPU step (transfers and their waits, idle between programs); the "
           "schedule predicts "
        << 100.0 * predictedBubble << "% (backward = 2 x forward)\n";
  return out.str();
}

} // namespace mt::cuda
