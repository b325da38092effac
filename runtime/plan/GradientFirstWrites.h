// Which bytes of the main-gradient arena a program writes before anything
// else touches them, in the order its instructions are issued: the CUDA
// backend runs the first forward_backward of a step with those written (a
// weight-gradient GEMM with beta 0) instead of added to zeros, and
// zero-fills only the rest (runtime/cuda/Lowering.h, setGradientsUnwritten).
// Plain data, so that the rule is tested without a GPU.
#ifndef MT_RUNTIME_PLAN_GRADIENTFIRSTWRITES_H
#define MT_RUNTIME_PLAN_GRADIENTFIRSTWRITES_H

#include "runtime/plan/OverlapOrder.h"

#include <cstdint>
#include <vector>

namespace mt::plan {

/// Accesses of byte ranges [begin, end) of one arena, in issue order. A
/// range may overlap others (views of several gradients, as the fused qkv
/// and fc1 weights' are).
class GradientFirstWrites {
public:
  /// Whether no access so far touched any byte of `r`: a kernel that can
  /// write may then write it whole instead of adding to zeros.
  bool untouched(ByteRange r) const;
  /// An access of `r`: a read, an add, or a write.
  void touch(ByteRange r) { touched_.push_back(r); }
  /// A whole write of `r` as its first access (after untouched(r) held).
  void wrote(ByteRange r) { written_.push_back(r); }
  /// The ranges of [0, size) that no first access wrote, sorted and
  /// disjoint: what must be zero before the program runs.
  std::vector<ByteRange> unwritten(uint64_t size) const;
  void clear() {
    touched_.clear();
    written_.clear();
  }

private:
  std::vector<ByteRange> touched_, written_;
};

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_GRADIENTFIRSTWRITES_H
