// The all-to-all collectives of the CPU backend, as plan instructions: two
// ranks (threads over Gloo) on an ep axis of 2 exchange the alltoall
// dispatcher's counts (moe_exchange_counts) and rows (all_to_all_v, with
// the counts read from the plan's i32 buffers), and gather the allgather
// dispatcher's counts (moe_gather_counts, also as etp gathers them); on a
// cp axis of 2 they exchange sequence slices for heads (all_to_all,
// cp_comm_type a2a) and gather packed documents' position ids in the
// sequence's true order (all_gather load_balanced, the copies both backends
// run: kernels::allGatherUnpack).
#include "runtime/comm/Gloo.h"
#include "runtime/cpu/CpuExecutor.h"
#include "runtime/kernels/AllToAll.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

namespace mt::cpu {
namespace {

using namespace std::chrono_literals;

struct BufferSpec {
  const char *name;
  plan::DType type;
  std::vector<int64_t> shape;
};

/// A plan on a mesh of ep 2 (or, with `axis` cp, of cp 2) with one program
/// "p" of one instruction `op` reading `inputs` and writing `outputs`
/// (buffers 0.. in that order, in one activation arena), with integer
/// attributes, string attributes `strings` and `axis`.
plan::Plan onePlan(const std::string &op, const std::vector<BufferSpec> &inputs,
                   const std::vector<BufferSpec> &outputs,
                   const std::vector<std::pair<const char *, int64_t>> &attrs,
                   const std::string &axisName = "ep",
                   std::vector<std::pair<const char *, const char *>> strings = {}) {
  plan::Plan p;
  plan::Mesh *mesh = p.mutable_mesh();
  const bool cp = axisName == "cp";
  mesh->set_pp(1), mesh->set_dp(cp ? 1 : 2), mesh->set_cp(cp ? 2 : 1), mesh->set_ep(cp ? 1 : 2),
      mesh->set_tp(1);
  plan::Program *program = p.add_programs();
  program->set_name("p");
  plan::Instruction *instr = program->add_instructions();
  instr->set_op(op);
  uint64_t offset = 0;
  auto add = [&](const BufferSpec &spec) {
    plan::Buffer *b = p.add_buffers();
    b->set_id(uint32_t(p.buffers_size() - 1));
    b->set_name(spec.name);
    b->set_dtype(spec.type);
    int64_t n = 1;
    for (int64_t d : spec.shape)
      b->add_shape(d), n *= d;
    b->set_arena(plan::ACTIVATIONS);
    b->set_offset_bytes(offset);
    b->set_size_bytes(uint64_t(n * 4));
    offset += (b->size_bytes() + 63) / 64 * 64;
    return b->id();
  };
  for (const BufferSpec &s : inputs)
    instr->add_inputs(add(s));
  for (const BufferSpec &s : outputs)
    instr->add_outputs(add(s));
  plan::Arena *arena = p.add_arenas();
  arena->set_kind(plan::ACTIVATIONS);
  arena->set_size_bytes(offset);
  for (auto [name, value] : attrs) {
    plan::Attribute *a = instr->add_attributes();
    a->set_name(name);
    a->set_i(value);
  }
  strings.push_back({"axis", axisName.c_str()});
  for (auto [name, value] : strings) {
    plan::Attribute *a = instr->add_attributes();
    a->set_name(name);
    a->set_s(value);
  }
  return p;
}

/// Runs `plan`'s program "p" on two ranks: fill(r, memory) before, and
/// check(r, memory) after.
void runOnTwoRanks(const plan::Plan &plan,
                   const std::function<void(int, exec::HostMemory &)> &fill,
                   const std::function<void(int, exec::HostMemory &)> &check) {
  std::string pattern = (std::filesystem::temp_directory_path() / "mta2a-XXXXXX").string();
  std::string dir = mkdtemp(pattern.data());
  auto body = [&](int r) {
    comm::RankInfo info;
    info.rank = r, info.worldSize = 2, info.localRank = r, info.rendezvous = dir;
    info.host = "127.0.0.1";
    auto rank = exec::RankContext::create(plan.mesh(), info, 20s);
    ASSERT_TRUE(rank) << rank.message();
    auto memory = exec::HostMemory::create(plan);
    ASSERT_TRUE(memory) << memory.message();
    fill(r, **memory);
    auto executor = CpuExecutor::create(plan, **memory, rank->get());
    ASSERT_TRUE(executor) << executor.message();
    auto ran = executor->run("p");
    ASSERT_TRUE(ran) << ran.message();
    check(r, **memory);
  };
  std::thread other(body, 1);
  body(0);
  other.join();
  std::filesystem::remove_all(dir);
}

// Rank r sends (r + 1) rows to rank 0 and (2 - r) to rank 1 (rank 0: 1 and
// 2, rank 1: 2 and 1); row i of rank r holds 10 r + i. Rank 0 receives 1 row
// from itself and 2 from rank 1, rank 1 2 from rank 0 and 1 from itself;
// the rest of each result is zero.
TEST(ExpertParallelCollectives, AllToAllVExchangesRowsByTheCountsOfThePlan) {
  if (!comm::World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo";
  constexpr int64_t kRow = 3, kRowsIn = 4, kRowsOut = 6;
  plan::Plan plan = onePlan("all_to_all_v",
                            {{"rows", plan::F32, {kRowsIn, kRow}},
                             {"send", plan::I32, {2}},
                             {"recv", plan::I32, {2}}},
                            {{"received", plan::F32, {kRowsOut, kRow}}},
                            {{"rows_in", kRowsIn}, {"rows_out", kRowsOut}, {"row", kRow},
                             {"parts", 2}});
  const std::vector<std::vector<float>> want = {{0, 10, 11, 0, 0, 0}, {1, 2, 12, 0, 0, 0}};
  runOnTwoRanks(
      plan,
      [&](int r, exec::HostMemory &m) {
        for (int64_t i = 0; i < kRowsIn * kRow; ++i)
          m.f32(0)[i] = float(10 * r + i / kRow);
        m.i32(1)[0] = r + 1, m.i32(1)[1] = 2 - r;
        m.i32(2)[0] = r == 0 ? 1 : 2, m.i32(2)[1] = r == 0 ? 2 : 1;
        std::fill_n(m.f32(3), kRowsOut * kRow, -1.0f);
      },
      [&](int r, exec::HostMemory &m) {
        for (int64_t i = 0; i < kRowsOut; ++i)
          for (int64_t h = 0; h < kRow; ++h)
            EXPECT_EQ(m.f32(3)[i * kRow + h], want[size_t(r)][size_t(i)])
                << "rank " << r << " row " << i;
      });
}

// 4 experts, 2 per rank: rank 0 routes {1, 2, 3, 4} rows to experts 0..3,
// rank 1 {5, 6, 7, 8}. Rank 0 sends 3 and 7 rows, gets [[1, 2], [5, 6]]
// for its experts 0 and 1 (3 and 11 rows from ranks 0 and 1; 6 and 8 per
// expert); rank 1 sends 11 and 15, gets [[3, 4], [7, 8]].
TEST(ExpertParallelCollectives, ExchangeCountsGivesMegatronsSplits) {
  if (!comm::World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo";
  plan::Plan plan = onePlan("moe_exchange_counts", {{"tokens_per_expert", plan::I32, {4}}},
                            {{"send", plan::I32, {2}},
                             {"recv", plan::I32, {2}},
                             {"global", plan::I32, {2, 2}},
                             {"local", plan::I32, {2}}},
                            {{"experts", 4}, {"parts", 2}});
  using I = std::vector<int32_t>;
  const I send[2] = {{3, 7}, {11, 15}}, recv[2] = {{3, 11}, {7, 15}},
          global[2] = {{1, 2, 5, 6}, {3, 4, 7, 8}}, local[2] = {{6, 8}, {10, 12}};
  runOnTwoRanks(
      plan,
      [&](int r, exec::HostMemory &m) {
        for (int e = 0; e < 4; ++e)
          m.i32(0)[e] = 4 * r + e + 1;
      },
      [&](int r, exec::HostMemory &m) {
        EXPECT_EQ(I(m.i32(1), m.i32(1) + 2), send[r]) << "rank " << r;
        EXPECT_EQ(I(m.i32(2), m.i32(2) + 2), recv[r]) << "rank " << r;
        EXPECT_EQ(I(m.i32(3), m.i32(3) + 4), global[r]) << "rank " << r;
        EXPECT_EQ(I(m.i32(4), m.i32(4) + 2), local[r]) << "rank " << r;
      });
}

// The same routing gathered (the allgather dispatcher): rank 0 keeps
// experts 0 and 1 of both ranks' rows ([[1, 2], [5, 6]], from row 0 of each
// rank's block), rank 1 experts 2 and 3 ([[3, 4], [7, 8]], after rank 0's 3
// and rank 1's 11 rows for experts 0 and 1). With same_experts (the etp
// gather) every rank keeps all 4 experts of both ranks, from row 0.
TEST(ExpertParallelCollectives, GatherCountsPicksTheLocalExperts) {
  if (!comm::World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo";
  using I = std::vector<int32_t>;
  for (bool same : {false, true}) {
    const int64_t local = same ? 4 : 2;
    plan::Plan plan = onePlan("moe_gather_counts", {{"tokens_per_expert", plan::I32, {4}}},
                              {{"global", plan::I32, {2, local}},
                               {"offsets", plan::I32, {2}},
                               {"local", plan::I32, {local}}},
                              {{"experts", 4}, {"parts", 2}, {"same_experts", same}});
    const I global[2] = {{1, 2, 5, 6}, {3, 4, 7, 8}}, offsets[2] = {{0, 0}, {3, 11}},
            sums[2] = {{6, 8}, {10, 12}};
    const I all = {1, 2, 3, 4, 5, 6, 7, 8}, allSums = {6, 8, 10, 12};
    runOnTwoRanks(
        plan,
        [&](int r, exec::HostMemory &m) {
          for (int e = 0; e < 4; ++e)
            m.i32(0)[e] = 4 * r + e + 1;
        },
        [&](int r, exec::HostMemory &m) {
          EXPECT_EQ(I(m.i32(1), m.i32(1) + 2 * local), same ? all : global[r]) << "rank " << r;
          EXPECT_EQ(I(m.i32(2), m.i32(2) + 2), same ? I(2, 0) : offsets[r]) << "rank " << r;
          EXPECT_EQ(I(m.i32(3), m.i32(3) + local), same ? allSums : sums[r]) << "rank " << r;
        });
  }
}

// cp_comm_type a2a on cp 2 with sequences of 8 tokens in 4 chunks of 2:
// rank 0 holds chunks 0 and 3 (places 0, 1, 6, 7), rank 1 chunks 1 and 2
// (places 2, 3, 4, 5). A [1, 4, 2, 1] slice of two heads, value 100 place +
// head, becomes on rank h the [1, 8, 1, 1] sequence of head h in its true
// order; the exchange back (split along the sequence, concat along heads)
// restores the slices.
constexpr int64_t kPlaces[2][4] = {{0, 1, 6, 7}, {2, 3, 4, 5}};

TEST(ContextParallelCollectives, AllToAllGivesEachRankWholeSequencesOfItsHeadsInOrder) {
  if (!comm::World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo";
  plan::Plan plan = onePlan("all_to_all", {{"slice", plan::F32, {1, 4, 2, 1}}},
                            {{"heads", plan::F32, {1, 8, 1, 1}}},
                            {{"parts", 2}, {"split_outer", 4}, {"split_size", 2},
                             {"split_inner", 1}, {"concat_outer", 1}, {"concat_size", 8},
                             {"concat_inner", 1}},
                            "cp", {{"load_balanced", "concat"}});
  runOnTwoRanks(
      plan,
      [&](int r, exec::HostMemory &m) {
        for (int64_t l = 0; l < 4; ++l)
          for (int64_t h = 0; h < 2; ++h)
            m.f32(0)[l * 2 + h] = float(100 * kPlaces[r][l] + h);
      },
      [&](int r, exec::HostMemory &m) {
        for (int64_t place = 0; place < 8; ++place)
          EXPECT_EQ(m.f32(1)[place], float(100 * place + r)) << "rank " << r << " place " << place;
      });
}

TEST(ContextParallelCollectives, AllToAllBackGivesEachRankItsSliceOfEveryHead) {
  if (!comm::World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo";
  plan::Plan plan = onePlan("all_to_all", {{"heads", plan::F32, {1, 8, 1, 1}}},
                            {{"slice", plan::F32, {1, 4, 2, 1}}},
                            {{"parts", 2}, {"split_outer", 1}, {"split_size", 8},
                             {"split_inner", 1}, {"concat_outer", 4}, {"concat_size", 2},
                             {"concat_inner", 1}},
                            "cp", {{"load_balanced", "split"}});
  runOnTwoRanks(
      plan,
      [&](int r, exec::HostMemory &m) {
        for (int64_t place = 0; place < 8; ++place)
          m.f32(0)[place] = float(100 * place + r);
      },
      [&](int r, exec::HostMemory &m) {
        for (int64_t l = 0; l < 4; ++l)
          for (int64_t h = 0; h < 2; ++h)
            EXPECT_EQ(m.f32(1)[l * 2 + h], float(100 * kPlaces[r][l] + h))
                << "rank " << r << " token " << l << " head " << h;
      });
}

// The position ids of packed documents under a2a: rank r's [2, 4] i32
// slice of two rows (value 100 row + place) becomes on both ranks the
// [2, 8] rows in their true order.
TEST(ContextParallelCollectives, AllGatherLoadBalancedPutsTheSlicesInTrueOrder) {
  if (!comm::World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo";
  plan::Plan plan = onePlan("all_gather", {{"slice", plan::I32, {2, 4}}},
                            {{"rows", plan::I32, {2, 8}}},
                            {{"outer", 2}, {"run", 4}, {"parts", 2}, {"load_balanced", 1}}, "cp");
  runOnTwoRanks(
      plan,
      [&](int r, exec::HostMemory &m) {
        for (int64_t row = 0; row < 2; ++row)
          for (int64_t l = 0; l < 4; ++l)
            m.i32(0)[row * 4 + l] = int32_t(100 * row + kPlaces[r][l]);
      },
      [&](int r, exec::HostMemory &m) {
        for (int64_t row = 0; row < 2; ++row)
          for (int64_t place = 0; place < 8; ++place)
            EXPECT_EQ(m.i32(1)[row * 8 + place], int32_t(100 * row + place))
                << "rank " << r << " row " << row << " place " << place;
      });
}

// Two chunks per rank need an even run; the error names it.
TEST(ContextParallelCollectives, AllGatherLoadBalancedRefusesAnOddRun) {
  auto copies = kernels::allGatherUnpack(2, 3, 2, true);
  ASSERT_FALSE(copies.isOk());
  EXPECT_NE(copies.message().find("load_balanced: run (3) is not even"), std::string::npos)
      << copies.message();
  EXPECT_TRUE(kernels::allGatherUnpack(2, 3, 2, false).isOk());
}

} // namespace
} // namespace mt::cpu
