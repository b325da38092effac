// The groups every backend makes for a rank, derived from the plan's mesh
// in one place (exec::meshGroups): Megatron's rank order, tp fastest.
#include "runtime/exec/RankContext.h"

#include <gtest/gtest.h>

#include <map>

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
                         MeshShape{.dp = 2, .cp = 2, .tp = 2, .ep = 2, .etp = 2}}) {
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
  // Without ep, no expert groups.
  EXPECT_FALSE(byKey(meshGroups(MeshShape{.dp = 4}, 1)).count("edp"));
}

} // namespace
