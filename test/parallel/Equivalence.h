// The comparisons the equivalence tests make between a run and its
// reference: within the parallel tolerances (a layout against the single
// rank) or bit for bit (options that move work, not values).
#ifndef MT_TEST_PARALLEL_EQUIVALENCE_H
#define MT_TEST_PARALLEL_EQUIVALENCE_H

#include "runtime/io/Safetensors.h"
#include "test/Tolerances.h"
#include "test/parallel/Metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace mt::test {

/// Reads the runs REF and GOT (paths without extension): expects `steps`
/// steps in each's .jsonl metrics and the same tensors, of the same shapes,
/// in each's .hf/model.safetensors (the gathered --export-hf), and passes
/// each pair of steps (with its index) and of tensors (with its name) to the
/// comparisons.
inline void compareRuns(
    const std::string &ref, const std::string &got, size_t steps,
    const std::function<void(const Step &, const Step &, size_t)> &compareStep,
    const std::function<void(const std::string &, const std::vector<float> &,
                             const std::vector<float> &)> &compareTensor) {
  std::vector<Step> a = readMetrics(ref + ".jsonl"), b = readMetrics(got + ".jsonl");
  ASSERT_EQ(a.size(), steps);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i)
    compareStep(a[i], b[i], i);
  auto x = io::openSafetensors(ref + ".hf/model.safetensors");
  auto y = io::openSafetensors(got + ".hf/model.safetensors");
  ASSERT_TRUE(x) << x.message();
  ASSERT_TRUE(y) << y.message();
  ASSERT_EQ(x->tensors().size(), y->tensors().size());
  for (const io::TensorInfo &t : x->tensors()) {
    const io::TensorInfo *other = y->find(t.name);
    ASSERT_NE(other, nullptr) << t.name;
    ASSERT_EQ(other->shape, t.shape) << t.name;
    std::vector<float> u(t.numElements()), v(t.numElements());
    ASSERT_TRUE(x->readAsFloat32(t.name, u.data(), u.size()));
    ASSERT_TRUE(y->readAsFloat32(t.name, v.data(), v.size()));
    compareTensor(t.name, u, v);
  }
}

/// Expects DIR/<layout>'s run to match DIR/<reference>'s (compareRuns):
/// each step's loss and gradient norm, and every updated weight, within
/// test/Tolerances.h's parallel tolerances; `lr` is the run's peak learning
/// rate.
inline void expectSameTraining(const std::string &dir, const std::string &reference,
                               const std::string &layout, double steps, double lr) {
  compareRuns(
      dir + reference, dir + layout, size_t(steps),
      [](const Step &ref, const Step &got, size_t i) {
        EXPECT_NEAR(got.loss, ref.loss, tolerance::kParallelRel * ref.loss) << "step " << i + 1;
        EXPECT_NEAR(got.gradNorm, ref.gradNorm, tolerance::kParallelRel * ref.gradNorm)
            << "step " << i + 1;
        // MoE: the loss's terms too.
        ASSERT_EQ(got.lmLoss.has_value(), ref.lmLoss.has_value()) << "lm_loss, step " << i + 1;
        ASSERT_EQ(got.auxLoss.has_value(), ref.auxLoss.has_value()) << "aux_loss, step " << i + 1;
        ASSERT_EQ(got.zLoss.has_value(), ref.zLoss.has_value()) << "z_loss, step " << i + 1;
        if (ref.zLoss) {
          EXPECT_NEAR(*got.zLoss, *ref.zLoss, tolerance::kParallelRel * *ref.zLoss)
              << "z_loss, step " << i + 1;
        }
        if (ref.lmLoss) {
          EXPECT_NEAR(*got.lmLoss, *ref.lmLoss, tolerance::kParallelRel * *ref.lmLoss)
              << "lm_loss, step " << i + 1;
          EXPECT_NEAR(*got.auxLoss, *ref.auxLoss,
                      tolerance::kParallelRel * *ref.auxLoss)
              << "aux_loss, step " << i + 1;
        }
      },
      [&](const std::string &name, const std::vector<float> &x, const std::vector<float> &y) {
        // The scale of a weight is its largest magnitude, or for a parameter
        // that starts at zero (biases) the largest total update of the run,
        // steps x lr: its relative error is that of its gradients.
        double worst = 0, scale = steps * lr;
        for (size_t i = 0; i < x.size(); ++i) {
          worst = std::max(worst, double(std::fabs(x[i] - y[i])));
          scale = std::max(scale, double(std::fabs(x[i])));
        }
        EXPECT_LE(worst, tolerance::kParallelWeightRel * scale) << name;
      });
}

/// Expects the run GOT to be bit-identical to REF (compareRuns): every
/// step's loss and gradient norm, and every byte of every updated weight.
inline void expectIdenticalTraining(const std::string &ref, const std::string &got,
                                    size_t steps) {
  compareRuns(
      ref, got, steps,
      [](const Step &a, const Step &b, size_t i) {
        EXPECT_EQ(b.loss, a.loss) << "step " << i + 1;
        EXPECT_EQ(b.gradNorm, a.gradNorm) << "step " << i + 1;
        EXPECT_EQ(b.lmLoss, a.lmLoss) << "step " << i + 1;
        EXPECT_EQ(b.auxLoss, a.auxLoss) << "step " << i + 1;
        EXPECT_EQ(b.zLoss, a.zLoss) << "step " << i + 1;
      },
      [](const std::string &name, const std::vector<float> &x, const std::vector<float> &y) {
        EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float))) << name;
      });
}

/// A test case's name for MODEL on LAYOUT: "<model>_<layout>" with the
/// hyphens of model names made underscores (GoogleTest's name rule).
inline std::string caseName(const std::string &model, const std::string &layout) {
  std::string name = model + "_" + layout;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

} // namespace mt::test

#endif // MT_TEST_PARALLEL_EQUIVALENCE_H
