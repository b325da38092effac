// What a training step reports: its log line and its line of the metrics
// file (mtrun --metrics).
#ifndef MT_RUNTIME_EXEC_STEPREPORT_H
#define MT_RUNTIME_EXEC_STEPREPORT_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace mt::exec {

/// A step's loss, and for mixture-of-experts plans its terms (the plan's
/// lm_loss, aux_loss and, with a z-loss, z_loss bindings): loss = lmLoss +
/// auxLoss (+ zLoss).
struct StepLoss {
  double loss;
  std::optional<double> lmLoss, auxLoss, zLoss;
};

/// What one optimizer step reports: its loss, the global gradient norm, the
/// learning rate it ran at (0 for a skipped step), its tokens per second,
/// and whether it was skipped and why ("'grad_norm' is nan").
struct StepRecord {
  int64_t step;
  StepLoss loss;
  double gradNorm, lr, tokensPerSecond;
  bool skipped;
  std::string skipReason;
};

/// Writes `r` as one JSON object per line. JSON has no NaN or Inf: such a
/// value is written as null and named, with its spelling in the log, under
/// "non_finite". `tokens`: the step's tokens (global batch x seq).
/// Opens `path` as `out` for a run's step records, emptied, with `kept` (a
/// resumed run's earlier lines, metricsUpTo) written first; an error names
/// the path when it cannot be written. A FIFO (a piped /dev/stdout, or one
/// made with mkfifo) must have a reader already: opening it would otherwise
/// wait for one, and the run would hang before its first step.
Status openMetrics(std::ofstream &out, const std::string &path,
                   const std::vector<std::string> &kept);
void writeMetrics(std::ofstream &out, const StepRecord &r, int64_t tokens);

/// The log line of `r` ("step 3/8  loss 5.1234  grad_norm ... lr ... tok/s
/// ETA ... s"), or on a terminal (`bar`) the progress bar's line.
void report(std::ostream &log, const StepRecord &r, int64_t last, double etaSeconds, bool bar);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_STEPREPORT_H
