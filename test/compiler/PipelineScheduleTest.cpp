// Pipeline schedules: every forward and backward exactly once per stage and
// chunk, dependencies respected, and the bubble of the textbook formulas.
#include "compiler/plan/PipelineSchedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <tuple>

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

using Schedule = std::vector<std::vector<PipelineAction>>;

double simulated(Schedule &schedule, int64_t pp, int64_t vpp, double backwardCost = 2.0,
                 const std::vector<double> &chunkCost = {}) {
  Expected<double> span = simulate(schedule, pp, vpp, backwardCost, chunkCost);
  EXPECT_TRUE(span.isOk()) << span.message();
  return span ? *span : -1.0;
}

/// The timeline simulate() gave, checked against the pipeline's data flow
/// as Megatron-Core runs it, with virtual stage v = chunk * pp + stage:
///  - forward (m, v) starts after forward (m, v - 1) ended (its input);
///  - backward (m, v) starts after backward (m, v + 1) ended (its output
///    gradient) and, on the last virtual stage, after forward (m, v) ended;
///  - every action lasts its cost, and a stage runs one action at a time in
///    the order of its list.
void expectDependenciesHold(const Schedule &schedule, int64_t pp, int64_t vpp,
                            double backwardCost, const std::vector<double> &chunkCost = {}) {
  std::map<std::tuple<bool, int64_t, int64_t>, const PipelineAction *> at;
  for (int64_t s = 0; s < pp; ++s)
    for (const PipelineAction &a : schedule[s])
      at[{a.forward, a.microBatch, a.chunk * pp + s}] = &a;
  const int64_t last = pp * vpp - 1;
  auto endOf = [&](bool forward, int64_t m, int64_t v) {
    auto it = at.find({forward, m, v});
    return it == at.end() ? INFINITY : it->second->end;
  };
  for (int64_t s = 0; s < pp; ++s) {
    double free = 0;
    for (const PipelineAction &a : schedule[s]) {
      const int64_t v = a.chunk * pp + s;
      std::string what = a.forward ? "F" : "B";
      what += std::to_string(a.microBatch) + " on virtual stage " + std::to_string(v);
      const double cost = (v < int64_t(chunkCost.size()) ? chunkCost[v] : 1.0) *
                          (a.forward ? 1.0 : backwardCost);
      EXPECT_DOUBLE_EQ(a.end - a.start, cost) << what;
      EXPECT_GE(a.start, free) << what << " overlaps the stage's previous action";
      free = a.end;
      if (a.forward && v > 0) {
        EXPECT_GE(a.start, endOf(true, a.microBatch, v - 1)) << what;
      } else if (!a.forward) {
        EXPECT_GE(a.start, endOf(true, a.microBatch, v)) << what;
        if (v < last) {
          EXPECT_GE(a.start, endOf(false, a.microBatch, v + 1)) << what;
        }
      }
    }
  }
}

TEST(PipelineSchedule, OneFOneBHasTheTextbookMakespanAndBubble) {
  const int64_t pp = 4, m = 8;
  auto schedule = pipelineSchedule(pp, 1, m);
  expectComplete(schedule, 1, m);
  // Stage s warms up with pp - s - 1 forwards, then alternates.
  EXPECT_TRUE(schedule[0][2].forward && schedule[0][3].forward && !schedule[0][4].forward);
  EXPECT_TRUE(schedule[3][0].forward && !schedule[3][1].forward);
  double makespan = simulated(schedule, pp, 1);
  expectDependenciesHold(schedule, pp, 1, 2.0);
  EXPECT_DOUBLE_EQ(makespan, double(m + pp - 1) * 3.0); // forward 1 + backward 2
  EXPECT_NEAR(bubbleFraction(schedule, makespan), double(pp - 1) / double(m + pp - 1), 1e-12);
}

TEST(PipelineSchedule, InterleavingShrinksTheBubble) {
  const int64_t pp = 4, vpp = 2, m = 8;
  auto plain = pipelineSchedule(pp, 1, m);
  auto interleaved = pipelineSchedule(pp, vpp, m);
  expectComplete(interleaved, vpp, m);
  double plainSpan = simulated(plain, pp, 1);
  double span = simulated(interleaved, pp, vpp);
  expectDependenciesHold(interleaved, pp, vpp, 2.0);
  // Each chunk is half a stage: unit costs are in whole-stage forwards here,
  // so compare bubbles, not makespans.
  EXPECT_LT(bubbleFraction(interleaved, span), bubbleFraction(plain, plainSpan));
}

TEST(PipelineSchedule, EveryLayoutRunsEveryActionInDependencyOrder) {
  // A backward of 1.75 forwards and uneven chunks, so that no dependency is
  // met by accident of equal durations (all costs exact in binary).
  for (int64_t pp : {1, 2, 3, 4})
    for (int64_t vpp : {1, 2, 3})
      for (int64_t m : {pp, 2 * pp, 3 * pp}) {
        if (vpp > 1 && pp == 1)
          continue;
        SCOPED_TRACE("pp " + std::to_string(pp) + " vpp " + std::to_string(vpp) + " m " +
                     std::to_string(m));
        auto schedule = pipelineSchedule(pp, vpp, m);
        expectComplete(schedule, vpp, m);
        std::vector<double> cost;
        for (int64_t v = 0; v < pp * vpp; ++v)
          cost.push_back(1.0 + 0.25 * double(v % 3));
        for (PipelineAction &a : schedule[0])
          a.start = a.end = -1; // simulate() must time every action
        const double span = simulated(schedule, pp, vpp, 1.75, cost);
        expectDependenciesHold(schedule, pp, vpp, 1.75, cost);
        for (const auto &stage : schedule)
          for (const PipelineAction &a : stage) {
            EXPECT_GE(a.start, 0.0);
            EXPECT_LE(a.end, span);
          }
      }
}

TEST(PipelineSchedule, ADeadlockIsAnErrorThatNamesTheStuckActions) {
  // Stage 1 runs the backward of micro-batch 0 before its forward: it waits
  // for its own forward; stage 0 then waits for stage 1's backward.
  Schedule schedule = pipelineSchedule(2, 1, 2);
  std::swap(schedule[1][0], schedule[1][1]);
  ASSERT_FALSE(schedule[1][0].forward);
  Expected<double> span = simulate(schedule, 2, 1);
  ASSERT_FALSE(span.isOk());
  EXPECT_EQ(span.message(),
            "pipeline schedule deadlocks: stage 0 waits at action 2 (backward of micro-batch 0 "
            "on virtual stage 0) for the backward of micro-batch 0 on virtual stage 1; stage 1 "
            "waits at action 0 (backward of micro-batch 0 on virtual stage 1) for the forward "
            "of micro-batch 0 on virtual stage 1");
}

TEST(PipelineSchedule, AMissingActionIsReportedNotSkipped) {
  // Stage 0 never runs the forward of micro-batch 1: stage 1 cannot either.
  Schedule schedule = pipelineSchedule(2, 1, 4);
  auto &stage0 = schedule[0];
  stage0.erase(std::find_if(stage0.begin(), stage0.end(), [](const PipelineAction &a) {
    return a.forward && a.microBatch == 1;
  }));
  Expected<double> span = simulate(schedule, 2, 1);
  ASSERT_FALSE(span.isOk());
  EXPECT_NE(span.message().find("stage 1 waits at action 2 (forward of micro-batch 1 on "
                                "virtual stage 1) for the forward of micro-batch 1 on "
                                "virtual stage 0"),
            std::string::npos)
      << span.message();
}

TEST(PipelineSchedule, RejectsAScheduleOfAnotherShape) {
  Schedule schedule = pipelineSchedule(2, 1, 2);
  EXPECT_EQ(simulate(schedule, 3, 1).message(),
            "pipeline schedule has 2 stages, expected pp = 3");
  schedule[1][0].chunk = 1;
  EXPECT_EQ(simulate(schedule, 2, 1).message(),
            "pipeline schedule: stage 1 has chunk 1, expected 0 <= chunk < vpp = 1");
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
      if (!(last[a] < first[b] || last[b] < first[a])) {
        EXPECT_NE(slot[a], slot[b]) << "micro-batches " << a << " and " << b;
      }
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
  double span = simulated(schedule, 2, 2);
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
