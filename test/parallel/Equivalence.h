// The comparison of two training runs that the parallel-equivalence tests
// make: a layout's run against the reference (single-rank) run.
#ifndef MT_TEST_PARALLEL_EQUIVALENCE_H
#define MT_TEST_PARALLEL_EQUIVALENCE_H

#include "runtime/io/Safetensors.h"
#include "test/Tolerances.h"
#include "test/parallel/Metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace mt::test {

/// Expects DIR/LAYOUT's run (LAYOUT.jsonl metrics of `steps` steps, LAYOUT.hf/
/// export) to match DIR/REFERENCE's: each step's loss and gradient norm,
/// and every updated weight, within the fp32 tolerances of
/// test/Tolerances.h. `steps` and `lr` (the runs' step count and peak
/// learning rate) scale the tolerance of weights that start at zero.
inline void expectSameTraining(const std::string &dir, const std::string &layout,
                               const std::string &reference, int steps, double lr) {
  std::vector<Step> ref = readMetrics(dir + reference + ".jsonl"),
                    got = readMetrics(dir + layout + ".jsonl");
  ASSERT_EQ(ref.size(), size_t(steps));
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(got[i].loss, ref[i].loss, tolerance::kParallelRel * ref[i].loss) << "step " << i + 1;
    EXPECT_NEAR(got[i].gradNorm, ref[i].gradNorm, tolerance::kParallelRel * ref[i].gradNorm)
        << "step " << i + 1;
  }
  auto a = io::openSafetensors(dir + reference + ".hf/model.safetensors");
  auto b = io::openSafetensors(dir + layout + ".hf/model.safetensors");
  ASSERT_TRUE(a) << a.message();
  ASSERT_TRUE(b) << b.message();
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  for (const io::TensorInfo &t : a->tensors()) {
    const io::TensorInfo *other = b->find(t.name);
    ASSERT_NE(other, nullptr) << t.name;
    ASSERT_EQ(other->shape, t.shape) << t.name;
    std::vector<float> x(t.numElements()), y(t.numElements());
    ASSERT_TRUE(a->readAsFloat32(t.name, x.data(), x.size()));
    ASSERT_TRUE(b->readAsFloat32(t.name, y.data(), y.size()));
    // The scale of a weight is its largest magnitude, or for a parameter that
    // starts at zero (biases) the largest total update of the run,
    // steps x lr: its relative error is that of its gradients.
    double worst = 0, scale = double(steps) * lr;
    for (size_t i = 0; i < x.size(); ++i) {
      worst = std::max(worst, double(std::fabs(x[i] - y[i])));
      scale = std::max(scale, double(std::fabs(x[i])));
    }
    EXPECT_LE(worst, tolerance::kParallelWeightRel * scale) << t.name;
  }
}

} // namespace mt::test

#endif // MT_TEST_PARALLEL_EQUIVALENCE_H
