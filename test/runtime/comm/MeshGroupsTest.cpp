// The groups every backend makes for a rank, derived from the plan's mesh
// in one place (exec::meshGroups): Megatron's rank order, tp fastest.
#include "runtime/exec/RankContext.h"

#include <gtest/gtest.h>

#include <map>

using mt::exec::GroupSpec;
using mt::exec::meshGroups;

namespace {

std::map<std::string, GroupSpec> byKey(const std::vector<GroupSpec> &groups) {
  std::map<std::string, GroupSpec> m;
  for (const GroupSpec &g : groups)
    m[g.key] = g;
  return m;
}

// pp2 x dp2 x tp2: rank = pp * 4 + dp * 2 + tp. Rank 5 is (pp 1, dp 0, tp 1).
TEST(MeshGroups, OneRankOfPp2Dp2Tp2) {
  auto groups = meshGroups({2, 2, 1, 1, 2}, 5);
  std::vector<std::string> order;
  for (const GroupSpec &g : groups)
    order.push_back(g.key);
  EXPECT_EQ(order, (std::vector<std::string>{"pp", "dp", "tp", "p2p.0.1", "p2p.1.0", "pp_tied"}));
  auto g = byKey(groups);
  EXPECT_EQ(g["pp"].members, (std::vector<int>{1, 5}));
  EXPECT_EQ(g["pp"].name, "pp.0.0.0.1");
  EXPECT_EQ(g["dp"].members, (std::vector<int>{5, 7}));
  EXPECT_EQ(g["dp"].name, "dp.1.0.0.1");
  EXPECT_EQ(g["tp"].members, (std::vector<int>{4, 5}));
  EXPECT_EQ(g["tp"].name, "tp.1.0.0.0");
  EXPECT_EQ(g["p2p.0.1"].members, (std::vector<int>{1, 5}));
  EXPECT_EQ(g["p2p.1.0"].members, (std::vector<int>{5, 1}));
  EXPECT_EQ(g["p2p.1.0"].name, "p2p.1.0.1");
  EXPECT_EQ(g["pp_tied"].members, (std::vector<int>{1, 5}));
}

// Every member of a group derives the same group (name and members), so
// the backends' collective group creation matches across ranks.
TEST(MeshGroups, EveryMemberDerivesTheSameGroup) {
  for (std::array<int64_t, 5> sizes : {std::array<int64_t, 5>{2, 2, 1, 1, 2},
                                       std::array<int64_t, 5>{4, 1, 1, 1, 1},
                                       std::array<int64_t, 5>{1, 4, 1, 1, 2},
                                       std::array<int64_t, 5>{3, 2, 1, 1, 1}}) {
    int world = 1;
    for (int64_t s : sizes)
      world *= int(s);
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
  EXPECT_TRUE(meshGroups({1, 1, 1, 1, 1}, 0).empty());
  auto dp = meshGroups({1, 2, 1, 1, 1}, 1);
  ASSERT_EQ(dp.size(), 1u);
  EXPECT_EQ(dp[0].key, "dp");
  EXPECT_EQ(dp[0].name, "dp.0.0.0.0");
  EXPECT_EQ(dp[0].members, (std::vector<int>{0, 1}));
}

} // namespace
