// How the CUDA backend lays a plan out in GPU memory, in numbers the
// compiler can print (`mtc compile --explain`) and the runtime allocates
// (runtime/cuda/DeviceArenas.h): bf16 activations at half their planned
// offsets, the activations that stay 32-bit in an arena of their own, and a
// bf16 shadow of every fp32 parameter.
#ifndef MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H
#define MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H

#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <map>
#include <set>

namespace mt::plan {

/// Alignment of each buffer in the 32-bit activation arena.
inline constexpr uint64_t kWideAlignment = 256;

/// The ACTIVATIONS buffers kept in their planned dtype rather than bf16:
/// non-fp32 ones (indices), one-element ones (the optimizer's scalars), the
/// attention's log-sum-exp (read by its backward), the row statistics of
/// the vocab-parallel cross-entropy (row maxima, label logits, sums of exp)
/// and norm weight gradients held as activations (tensor parallelism sums
/// them over tp before they reach the fp32 main gradient).
std::set<uint32_t> wideActivations(const Plan &plan);

/// Bytes the CUDA backend allocates for one rank's arenas.
struct DeviceFootprint {
  uint64_t weights = 0, shadows = 0, gradients = 0, optimizer = 0, activations = 0,
           wideActivations = 0, inputs = 0, outputs = 0;
  /// Offset of each wide activation in its arena.
  std::map<uint32_t, uint64_t> wideOffsets;
  uint64_t total() const {
    return weights + shadows + gradients + optimizer + activations + wideActivations +
           inputs + outputs;
  }
};
DeviceFootprint deviceFootprint(const Plan &plan);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_DEVICEFOOTPRINT_H
