// The groups every backend makes for a rank, derived from the plan's mesh
// in one place (exec::meshGroups): Megatron's rank order, tp fastest.
#include "runtime/exec/RankContext.h"

#include "runtime/comm/Gloo.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <latch>
#include <map>
#include <thread>

using mt::exec::GroupSpec;
using mt::exec::meshGroups;
using mt::exec::MeshShape;

namespace {

std::map<std::string, GroupSpec> byKey(const std::vector<GroupSpec> &groups) {
  std::map<std::string, GroupSpec> m;
  for (const GroupSpec &g : groups)
    m[g.key] = g;
  return m;
}

// pp2 x dp2 x tp2: rank = pp * 4 + dp * 2 + tp. Rank 5 is (pp 1, dp 0, tp 1).
TEST(MeshGroups, OneRankOfPp2Dp2Tp2) {
  auto groups = meshGroups(MeshShape{.pp = 2, .dp = 2, .tp = 2}, 5);
  std::vector<std::string> order;
  for (const GroupSpec &g : groups)
    order.push_back(g.key);
  EXPECT_EQ(order, (std::vector<std::string>{"pp", "dp", "tp", "p2p.0.1", "p2p.1.0", "pp_tied"}));
  auto g = byKey(groups);
  EXPECT_EQ(g["pp"].members, (std::vector<int>{1, 5}));
  EXPECT_EQ(g["pp"].name, "pp.0.0.1");
  EXPECT_EQ(g["dp"].members, (std::vector<int>{5, 7}));
  EXPECT_EQ(g["dp"].name, "dp.1.0.1");
  EXPECT_EQ(g["tp"].members, (std::vector<int>{4, 5}));
  EXPECT_EQ(g["tp"].name, "tp.1.0.0");
  EXPECT_EQ(g["p2p.0.1"].members, (std::vector<int>{1, 5}));
  EXPECT_EQ(g["p2p.1.0"].members, (std::vector<int>{5, 1}));
  EXPECT_EQ(g["p2p.1.0"].name, "p2p.1.0.1");
  EXPECT_EQ(g["pp_tied"].members, (std::vector<int>{1, 5}));
}

// Every member of a group derives the same group (name and members), so
// the backends' collective group creation matches across ranks.
TEST(MeshGroups, EveryMemberDerivesTheSameGroup) {
  for (MeshShape sizes : {MeshShape{.pp = 2, .dp = 2, .tp = 2}, MeshShape{.pp = 4},
                         MeshShape{.dp = 4, .tp = 2}, MeshShape{.pp = 3, .dp = 2},
                         MeshShape{.pp = 2, .dp = 4, .ep = 2}, MeshShape{.dp = 4, .ep = 4},
                         MeshShape{.dp = 2, .tp = 2, .ep = 4},
                         MeshShape{.dp = 2, .cp = 2, .tp = 2, .ep = 2, .etp = 2},
                         MeshShape{.dp = 4, .etp = 2}}) {
    const int world = int(sizes.world());
    for (int r = 0; r < world; ++r)
      for (const GroupSpec &mine : meshGroups(sizes, r)) {
        ASSERT_NE(std::find(mine.members.begin(), mine.members.end(), r), mine.members.end());
        for (int peer : mine.members) {
          auto theirs = byKey(meshGroups(sizes, peer));
          ASSERT_TRUE(theirs.count(mine.key)) << "rank " << peer << " lacks " << mine.key;
          EXPECT_EQ(theirs[mine.key].name, mine.name) << "rank " << r << " vs " << peer;
          EXPECT_EQ(theirs[mine.key].members, mine.members) << mine.name;
        }
      }
  }
}

TEST(MeshGroups, ASingleRankAndPureDataParallelism) {
  EXPECT_TRUE(meshGroups(MeshShape{}, 0).empty());
  auto dp = meshGroups(MeshShape{.dp = 2}, 1);
  ASSERT_EQ(dp.size(), 1u);
  EXPECT_EQ(dp[0].key, "dp");
  EXPECT_EQ(dp[0].name, "dp.0.0.0");
  EXPECT_EQ(dp[0].members, (std::vector<int>{0, 1}));
}

// MoE parallel folding, pp2 x dp4 with ep2: the dense layers' dp group holds
// the 4 ranks of a stage; expert layers split them into ep groups of
// neighbours (etp 1 varies fastest, then ep) and edp groups across them.
// Rank 6 is (pp 1, dp 2) and (edp 1, ep 0).
TEST(MeshGroups, ExpertLayersFoldOverTheDataParallelRanks) {
  auto g = byKey(meshGroups(MeshShape{.pp = 2, .dp = 4, .ep = 2}, 6));
  EXPECT_EQ(g["dp"].members, (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(g["ep"].members, (std::vector<int>{6, 7}));
  EXPECT_EQ(g["ep"].name, "ep.1.1.0");
  EXPECT_EQ(g["edp"].members, (std::vector<int>{4, 6}));
  EXPECT_EQ(g["pp"].members, (std::vector<int>{2, 6}));
  EXPECT_FALSE(g.count("etp"));
  // tp2 x dp2 x ep2, etp 1: an ep group spans the ranks of a tp group.
  auto t = byKey(meshGroups(MeshShape{.dp = 2, .tp = 2, .ep = 2}, 1));
  EXPECT_EQ(t["tp"].members, (std::vector<int>{0, 1}));
  EXPECT_EQ(t["ep"].members, (std::vector<int>{0, 1}));
  EXPECT_EQ(t["edp"].members, (std::vector<int>{1, 3}));
  // Without ep or etp, no expert groups, unless the plan lays whole experts
  // on their mesh under tp (tp2 x dp2: edp holds the stage's 4 ranks).
  EXPECT_FALSE(byKey(meshGroups(MeshShape{.dp = 4}, 1)).count("edp"));
  EXPECT_FALSE(byKey(meshGroups(MeshShape{.dp = 2, .tp = 2}, 1)).count("edp"));
  auto w = byKey(meshGroups(MeshShape{.dp = 2, .tp = 2, .expertMesh = true}, 1));
  EXPECT_EQ(w["edp"].members, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_FALSE(w.count("ep"));
  // Expert tensor parallelism alone (ep 1, etp 2 over dp 4): etp groups of
  // neighbours, edp across them; with tp 2 the etp group is the tp group.
  auto e = byKey(meshGroups(MeshShape{.dp = 4, .etp = 2}, 2));
  EXPECT_EQ(e["etp"].members, (std::vector<int>{2, 3}));
  EXPECT_EQ(e["edp"].members, (std::vector<int>{0, 2}));
  EXPECT_FALSE(e.count("ep"));
  auto et = byKey(meshGroups(MeshShape{.tp = 2, .etp = 2}, 1));
  EXPECT_EQ(et["etp"].members, et["tp"].members);
}

} // namespace

namespace mt::exec {
namespace {

/// A two-rank dp2 job (Gloo over a rendezvous directory) in which each rank
/// checks a plan whose one instruction reduces over `axis`; the checks'
/// messages, rank 0's first.
std::vector<std::string> checkOnTwoRanks(const std::string &axis) {
  plan::Plan plan;
  plan.mutable_mesh()->set_dp(2);
  plan::Instruction &reduce = *plan.add_programs()->add_instructions();
  reduce.set_op("all_reduce");
  plan::Attribute &a = *reduce.add_attributes();
  a.set_name("axis");
  a.set_s(axis);
  plan.mutable_programs(0)->set_name("optimizer_step");
  std::string pattern = ::testing::TempDir() + "/mt-groups-XXXXXX";
  const std::string dir = mkdtemp(pattern.data());
  std::vector<std::string> messages(2);
  // Each rank keeps its groups open until both have checked: one that
  // closed its sockets first could cut the other's connection mid-way.
  std::latch checked(2);
  auto body = [&](int r) {
    comm::RankInfo info;
    info.rank = r, info.worldSize = 2, info.localRank = r, info.rendezvous = dir;
    info.host = "127.0.0.1";
    auto rank = RankContext::create(plan.mesh(), info, std::chrono::seconds(20));
    if (!rank) {
      messages[size_t(r)] = "create: " + rank.message();
      checked.count_down();
      return;
    }
    messages[size_t(r)] = (*rank)->checkCollectiveGroups(plan).message();
    checked.arrive_and_wait();
  };
  std::thread other(body, 1);
  body(0);
  other.join();
  std::filesystem::remove_all(dir);
  return messages;
}

// dp2 without ep: edp has size 2 but no expert groups exist, so a reduction
// over it would sum nothing; it is refused by name. One over dp runs.
TEST(CollectiveGroups, AnAxisWithoutAGroupIsRefused) {
  if (!comm::World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo";
  for (const std::string &m : checkOnTwoRanks("dp"))
    EXPECT_EQ(m, "");
  for (const std::string &m : checkOnTwoRanks("edp"))
    EXPECT_NE(m.find("instruction 0 (all_reduce) runs over axis 'edp' of size 2, but this mesh "
                     "(ep 1, etp 1) makes no group for it"),
              std::string::npos)
        << m;
}

} // namespace
} // namespace mt::exec
