// --profile's bookkeeping: every instruction timed with CUDA events (the
// device's time) inside the replayed CUDA graph of its program, or, where the
// program runs eagerly, alone with a host clock around its launch (the time
// the host spent issuing it, waits for the device included); summed per
// instruction class and per op. The report prints both tables.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace mt::cuda {

/// The profile's class of an op, by its family in the op table (e.g.
/// "GEMM (linear)", "attention", "norms").
const char *opClass(const std::string &op);

/// Sums of one class's or one op's instructions over the profiled steps.
struct ProfileEntry {
  double ms = 0;      // device time (CUDA events)
  double hostMs = 0;  // host time issuing the launches, waits included
  int64_t launches = 0;
  int64_t inGraph = 0; // of the launches, those timed inside a graph (no host time)
  double flops = 0, bytes = 0; // the roofline's work (plan/Roofline.h)
};

/// Per-class and per-op times of --profile. Not thread-safe: the
/// executor's host thread only.
class InstructionProfile {
public:
  /// One instruction's run: `className` is its class (opClass, or the step's
  /// own), `op` the plan op; times in milliseconds.
  void record(const std::string &className, const std::string &op, double deviceMs,
              double hostMs);
  /// One instruction's time between the events around it in a replayed
  /// graph (milliseconds; the gap after the previous one's kernels included).
  void recordInGraph(const std::string &className, const std::string &op, double deviceMs);
  /// Adds one run's roofline work to a class that launched something.
  void addWork(const std::string &className, double flops, double bytes);
  /// One run of a program took `ms` of wall time (host clock, launch to the
  /// device being done).
  void addWall(double ms) { wall_ += ms; }
  /// One more training step profiled: the tables are per step, whatever
  /// the number of programs (micro-batches) a step runs.
  void addStep() { steps_ += 1; }
  bool empty() const { return classes_.empty(); }
  /// The class table (ms/step, share of the programs' wall, launches/step,
  /// TFLOP/s and GB/s where the class has work), the idle remainder, then the
  /// `topOps` ops that took the most device time, each with its host time
  /// (host ≈ device: the op is bound by its launches or host waits), or
  /// "in graph" where every launch was timed inside a graph.
  std::string report(int topOps = 24) const;

private:
  std::map<std::string, ProfileEntry> classes_, ops_;
  double wall_ = 0; // ms, all programs' runs
  int64_t steps_ = 0;
};

} // namespace mt::cuda
