// Pipeline schedules: every forward and backward exactly once per stage and
// chunk, dependencies respected, and the bubble of the textbook formulas.
#include "runtime/schedule/PipelineSchedule.h"

#include <gtest/gtest.h>

#include <cctype>
#include <set>

namespace mt {
namespace {

void expectComplete(const std::vector<std::vector<PipelineAction>> &schedule, int64_t vpp,
                    int64_t microBatches) {
  for (const auto &stage : schedule) {
    std::set<std::tuple<bool, int64_t, int64_t>> seen;
    for (const PipelineAction &a : stage)
      EXPECT_TRUE(seen.insert({a.forward, a.microBatch, a.chunk}).second);
    EXPECT_EQ(int64_t(seen.size()), 2 * microBatches * vpp);
  }
}

TEST(PipelineSchedule, OneFOneBHasTheTextbookMakespanAndBubble) {
  const int64_t pp = 4, m = 8;
  auto schedule = pipelineSchedule(pp, 1, m);
  expectComplete(schedule, 1, m);
  // Stage s warms up with pp - s - 1 forwards, then alternates.
  EXPECT_TRUE(schedule[0][2].forward && schedule[0][3].forward && !schedule[0][4].forward);
  EXPECT_TRUE(schedule[3][0].forward && !schedule[3][1].forward);
  double makespan = simulate(schedule, pp, 1);
  EXPECT_DOUBLE_EQ(makespan, double(m + pp - 1) * 3.0); // forward 1 + backward 2
  EXPECT_NEAR(bubbleFraction(schedule, makespan), double(pp - 1) / double(m + pp - 1), 1e-12);
}

TEST(PipelineSchedule, InterleavingShrinksTheBubble) {
  const int64_t pp = 4, vpp = 2, m = 8;
  auto plain = pipelineSchedule(pp, 1, m);
  auto interleaved = pipelineSchedule(pp, vpp, m);
  expectComplete(interleaved, vpp, m);
  double plainSpan = simulate(plain, pp, 1);
  double span = simulate(interleaved, pp, vpp);
  // Each chunk is half a stage: unit costs are in whole-stage forwards here,
  // so compare bubbles, not makespans.
  EXPECT_LT(bubbleFraction(interleaved, span), bubbleFraction(plain, plainSpan));
  // Dependencies: a forward of virtual stage v starts after v - 1's.
  for (size_t s = 0; s < interleaved.size(); ++s)
    for (const PipelineAction &a : interleaved[s])
      EXPECT_GE(a.start, 0.0);
}

/// Micro-batches whose actions on a stage overlap never share a slot.
void expectDisjointSlots(const std::vector<PipelineAction> &stage, int64_t microBatches,
                         const std::vector<int64_t> &slot) {
  std::vector<int64_t> first(microBatches, -1), last(microBatches, -1);
  for (size_t i = 0; i < stage.size(); ++i) {
    int64_t m = stage[i].microBatch;
    if (first[m] < 0)
      first[m] = int64_t(i);
    last[m] = int64_t(i);
  }
  for (int64_t a = 0; a < microBatches; ++a)
    for (int64_t b = a + 1; b < microBatches; ++b)
      if (!(last[a] < first[b] || last[b] < first[a]))
        EXPECT_NE(slot[a], slot[b]) << "micro-batches " << a << " and " << b;
}

TEST(PipelineSchedule, OneFOneBKeepsPpMinusStageMicroBatchesInFlight) {
  const int64_t pp = 4, microBatches = 8;
  auto schedule = pipelineSchedule(pp, 1, microBatches);
  for (int64_t stage = 0; stage < pp; ++stage) {
    int64_t count = 0;
    auto slot = activationSlots(schedule[stage], microBatches, count);
    EXPECT_EQ(count, pp - stage) << "stage " << stage;
    expectDisjointSlots(schedule[stage], microBatches, slot);
  }
}

TEST(PipelineSchedule, InterleavedSlotsAreDisjointAndFewerThanMicroBatches) {
  const int64_t pp = 2, vpp = 2, microBatches = 8;
  auto schedule = pipelineSchedule(pp, vpp, microBatches);
  for (int64_t stage = 0; stage < pp; ++stage) {
    int64_t count = 0;
    auto slot = activationSlots(schedule[stage], microBatches, count);
    EXPECT_LT(count, microBatches) << "stage " << stage;
    EXPECT_GE(count, 1);
    expectDisjointSlots(schedule[stage], microBatches, slot);
  }
}

TEST(PipelineSchedule, SvgDrawsEveryAction) {
  auto schedule = pipelineSchedule(2, 2, 4);
  double span = simulate(schedule, 2, 2);
  std::string svg = scheduleSvg(schedule, 2, span, "pp 2 x vpp 2");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find(">F3.1<"), std::string::npos);
  EXPECT_NE(svg.find(">B0.0<"), std::string::npos);
  size_t boxes = 0;
  for (size_t at = svg.find(">F"); at != std::string::npos; at = svg.find(">F", at + 1))
    boxes += std::isdigit(static_cast<unsigned char>(svg[at + 2])) ? 1 : 0;
  EXPECT_EQ(boxes, 2u * 2u * 4u);
}

} // namespace
} // namespace mt
