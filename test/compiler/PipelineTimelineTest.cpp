// The measured pipeline timeline on schedules whose bubble is known: the
// stages' waits for their input count as bubble, not as compute
// (runtime/exec/PipelineTimeline.h).
#include "runtime/exec/PipelineTimeline.h"

#include "compiler/plan/PipelineSchedule.h"

#include <gtest/gtest.h>

namespace mt::exec {
namespace {

using Schedule = std::vector<std::vector<PipelineAction>>;

/// What the stages record when they run `schedule` as simulate() timed it,
/// one unit taking `unit` seconds: each action is entered as soon as its
/// stage finished the previous one, and waits in its receives until its
/// input exists (its simulated start).
std::vector<std::vector<RecordedAction>> recordAsRun(const Schedule &schedule, double unit) {
  std::vector<std::vector<RecordedAction>> recorded(schedule.size());
  for (size_t s = 0; s < schedule.size(); ++s) {
    double free = 0;
    for (const PipelineAction &a : schedule[s]) {
      recorded[s].push_back({free * unit, a.start * unit, a.end * unit});
      free = a.end;
    }
  }
  return recorded;
}

TEST(PipelineTimeline, OneFOneBBubbleIsTheTextbookOneWaitsIncluded) {
  const int64_t pp = 4, m = 8;
  const double unit = 0.01; // seconds per forward; a backward takes two
  Schedule schedule = pipelineSchedule(pp, 1, m);
  ASSERT_TRUE(simulate(schedule, pp, 1, 2.0));
  auto step = measureStep(pipelineSchedule(pp, 1, m), recordAsRun(schedule, unit));
  ASSERT_TRUE(step) << step.status().message();
  // 1F1B: (pp - 1) / (m + pp - 1) of stage time (Narayanan et al. 2021).
  EXPECT_NEAR(step->bubble, 3.0 / 11.0, 1e-9);
  // Makespan (m + pp - 1) x 3 units; stage s finishes 2s units before the
  // end (the last backward runs down the stages), so 2 x (0+1+2+3) = 12 of
  // the 4 x 33 stage units are idle tails, and 36 - 12 = 24 are waits.
  EXPECT_NEAR(step->makespan, 33 * unit, 1e-12);
  EXPECT_NEAR(step->waiting, 24.0 / 132.0, 1e-9);
  EXPECT_NEAR(step->meanForward, unit, 1e-12);
  EXPECT_NEAR(step->meanBackward, 2 * unit, 1e-12);
  // Stage 3's first forward waits for stages 0-2's: 3 units, drawn apart.
  ASSERT_FALSE(step->waits[3].empty());
  EXPECT_NEAR(step->waits[3].front().first, 0.0, 1e-12);
  EXPECT_NEAR(step->waits[3].front().second, 3 * unit, 1e-12);
  EXPECT_NEAR(step->compute[3].front().start, 3 * unit, 1e-12);
  EXPECT_TRUE(step->waits[0].empty() || step->waits[0].front().first > 0);
}

TEST(PipelineTimeline, InterleavedBubbleIsTheTextbookOne) {
  const int64_t pp = 2, vpp = 2, m = 8;
  Schedule schedule = pipelineSchedule(pp, vpp, m);
  ASSERT_TRUE(simulate(schedule, pp, vpp, 2.0));
  auto step = measureStep(pipelineSchedule(pp, vpp, m), recordAsRun(schedule, 0.003));
  ASSERT_TRUE(step) << step.status().message();
  // Interleaved 1F1B: (pp - 1) / (vpp x m + pp - 1) (Megatron-LM's paper).
  EXPECT_NEAR(step->bubble, 1.0 / 17.0, 1e-9);
  EXPECT_GT(step->waiting, 0.0);
  EXPECT_LE(step->waiting, step->bubble + 1e-12);
}

TEST(PipelineTimeline, RecordsThatDoNotFitTheScheduleAreErrors) {
  Schedule schedule = pipelineSchedule(2, 1, 2);
  std::vector<std::vector<RecordedAction>> recorded(2);
  recorded[0].resize(schedule[0].size(), {0, 0, 1});
  recorded[1].resize(schedule[1].size() - 1, {0, 0, 1});
  auto missing = measureStep(schedule, recorded);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().message(), "stage 1 recorded 3 actions; its schedule has 4");

  recorded[1].resize(schedule[1].size(), {0, 0, 1});
  recorded[0][2] = {0.5, 0.4, 1.0};
  auto disordered = measureStep(schedule, recorded);
  ASSERT_FALSE(disordered);
  EXPECT_EQ(disordered.status().message(),
            "stage 0 action 2: start, ready and end out of order");
}

} // namespace
} // namespace mt::exec
