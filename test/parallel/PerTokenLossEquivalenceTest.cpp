// calculate_per_token_loss computes the step's mean over its loss tokens:
// on SFT data whose micro-batches hold different numbers of loss tokens,
// the per-token runs (4 micro-batches of 2 rows, on one rank and over dp,
// pp, tp x dp, cp x dp and the distributed optimizer) match the step taken
// as one micro-batch of 8 rows, whose mean over its tokens is the same
// quantity; the default normalization (the mean of the 4 micro-batches'
// means) does not, so that a layout normalizing per micro-batch or per rank
// would fail. The default normalization at cp 2 matches the single rank's:
// each cp rank's loss is its share of the micro-batch's, though the ranks'
// halves of it hold different numbers of loss tokens. A mixture-of-experts
// model's per-token runs agree over dp, ep, the distributed optimizer, pp
// and tp with sequence parallelism, and on plain tokens (every token a loss
// token) its per-token run is its default run: the aux losses' gradient
// factor T / N, Megatron-Core's, is the default's 1 / micro-batches there.
// The runs are made by
// run-per-token-loss.sh (a ctest fixture).
#include "test/parallel/Equivalence.h"

#include <gtest/gtest.h>

namespace mt {
namespace {

const std::string kRuns = std::string(MT_PER_TOKEN_RUNS_DIR) + "/";

class PerTokenLossEquivalence : public ::testing::TestWithParam<std::string> {};

TEST_P(PerTokenLossEquivalence, MatchesTheWholeBatchTokenMean) {
  // run-per-token-loss.sh trains 3 steps at a peak learning rate of 1e-3.
  test::expectSameTraining(kRuns, "whole", GetParam(), 3, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Layouts, PerTokenLossEquivalence,
                         ::testing::Values("pt_single", "pt_dp2", "pt_pp2", "pt_tp2_dp2",
                                           "pt_cp2_dp2", "pt_dp2_do"),
                         [](const auto &info) { return std::string(info.param); });

class MoEPerTokenLossEquivalence : public ::testing::TestWithParam<std::string> {};

TEST_P(MoEPerTokenLossEquivalence, MatchesTheSingleRank) {
  test::expectSameTraining(kRuns, "moe_pt_single", GetParam(), 3, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Layouts, MoEPerTokenLossEquivalence,
                         ::testing::Values("moe_pt_dp2", "moe_pt_ep2", "moe_pt_ep2_do",
                                           "moe_pt_pp2", "moe_pt_tp2_sp"),
                         [](const auto &info) { return std::string(info.param); });

// The hand computation: with N = micro-batches · T loss tokens (T = B·S,
// each router's tokens), the per-token gradient
//   (1 / N) Σ_mb (∇ Σ_tokens CE + T · ∇aux) = (1 / micro-batches) Σ_mb (∇CE_mean + ∇aux)
// is the default's, and so is the reported loss; an aux loss left unscaled
// would weigh 1 / T as much, which changes the loss (by the aux term) and
// the routers' gradients by far more than the tolerance.
TEST(MoEPerTokenLoss, OnPlainTokensIsTheDefaultLoss) {
  test::expectSameTraining(kRuns, "moe_lm_mean", "moe_lm_pt", 3, 1e-3);
}

// The loss's terms (lm_loss, aux_loss, z_loss) of MoE runs: they add up to
// the loss (two fp32 additions per micro-batch apart), with a
// load-balancing loss and a z-loss (moe_pt_*) and on plain tokens; and
// lm_loss is the language-model loss alone, that of the same first step
// with the aux coefficient 0 and no z-loss (the same weights: nothing else
// differs), bit for bit; without a z-loss coefficient no z_loss is written.
TEST(MoELossTerms, AddUpToTheLossAndTheLanguageModelLossIsTheLossWithoutAux) {
  for (const char *run : {"moe_pt_single", "moe_pt_dp2", "moe_pt_ep2", "moe_pt_pp2",
                          "moe_pt_tp2_sp", "moe_lm_mean", "moe_lm_pt"}) {
    std::vector<test::Step> steps = test::readMetrics(kRuns + run + ".jsonl");
    ASSERT_EQ(steps.size(), 3u) << run;
    for (size_t i = 0; i < steps.size(); ++i) {
      ASSERT_TRUE(steps[i].lmLoss && steps[i].auxLoss && steps[i].zLoss)
          << run << " step " << i + 1;
      EXPECT_GT(*steps[i].auxLoss, 0.0) << run << " step " << i + 1;
      EXPECT_GT(*steps[i].zLoss, 0.0) << run << " step " << i + 1;
      EXPECT_NEAR(*steps[i].lmLoss + *steps[i].auxLoss + *steps[i].zLoss, steps[i].loss,
                  1e-6 * steps[i].loss)
          << run << " step " << i + 1;
    }
  }
  std::vector<test::Step> with = test::readMetrics(kRuns + "moe_lm_mean.jsonl");
  std::vector<test::Step> without = test::readMetrics(kRuns + "moe_lm_noaux.jsonl");
  ASSERT_FALSE(with.empty());
  ASSERT_FALSE(without.empty());
  ASSERT_TRUE(with[0].lmLoss && without[0].auxLoss);
  EXPECT_EQ(*with[0].lmLoss, without[0].loss);
  EXPECT_EQ(*without[0].auxLoss, 0.0);
  EXPECT_FALSE(without[0].zLoss);
  // And the aux term is not negligible: it moves the loss by more than the
  // layouts' tolerance.
  EXPECT_GT(with[0].loss - without[0].loss, 100 * tolerance::kParallelRel * with[0].loss);
}

TEST(DefaultLoss, ContextParallelSharesMatchTheSingleRank) {
  test::expectSameTraining(kRuns, "mean", "mean_cp2", 3, 1e-3);
}

// The data makes the two normalizations differ, by far more than the
// layouts' tolerance: the first step's loss (the same weights in both runs)
// and its gradient norm.
TEST(PerTokenLoss, DiffersFromTheMeanOfMicroBatchMeans) {
  std::vector<test::Step> whole = test::readMetrics(kRuns + "whole.jsonl");
  std::vector<test::Step> mean = test::readMetrics(kRuns + "mean.jsonl");
  ASSERT_FALSE(whole.empty());
  ASSERT_FALSE(mean.empty());
  const double margin = 100 * tolerance::kParallelRel;
  EXPECT_GT(std::fabs(mean[0].loss - whole[0].loss), margin * whole[0].loss)
      << "loss: mean of means " << mean[0].loss << ", token mean " << whole[0].loss;
  EXPECT_GT(std::fabs(mean[0].gradNorm - whole[0].gradNorm), margin * whole[0].gradNorm)
      << "grad norm: mean of means " << mean[0].gradNorm << ", token mean "
      << whole[0].gradNorm;
}

} // namespace
} // namespace mt
