// The comparison every parallel equivalence test makes between a layout's
// run and the reference run of the same model, seed and global batch.
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

/// Expects DIR/<layout>.jsonl to hold `steps` steps whose loss and gradient
/// norm match DIR/<reference>.jsonl's, and every tensor of
/// DIR/<layout>.hf/model.safetensors (the gathered --export-hf) to match the
/// reference's, within test/Tolerances.h's parallel tolerances; `lr` is the
/// run's peak learning rate.
inline void expectSameTraining(const std::string &dir, const std::string &reference,
                               const std::string &layout, double steps, double lr) {
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
    double worst = 0, scale = steps * lr;
    for (size_t i = 0; i < x.size(); ++i) {
      worst = std::max(worst, double(std::fabs(x[i] - y[i])));
      scale = std::max(scale, double(std::fabs(x[i])));
    }
    EXPECT_LE(worst, tolerance::kParallelWeightRel * scale) << t.name;
  }
}

} // namespace mt::test

#endif // MT_TEST_PARALLEL_EQUIVALENCE_H
