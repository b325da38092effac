// rankFromEnvironment for each launcher's variables, their precedence, and
// the errors for incomplete or inconsistent values.
#include "runtime/comm/RankEnvironment.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>

using namespace mt::comm;

namespace {

const char *const kVariables[] = {
    "MT_RANK",      "MT_WORLD_SIZE",        "MT_LOCAL_RANK",        "MT_RENDEZVOUS",
    "MT_COMM_HOST", "RANK",                 "WORLD_SIZE",           "LOCAL_RANK",
    "MASTER_ADDR",  "MASTER_PORT",          "SLURM_PROCID",         "SLURM_NTASKS",
    "SLURM_LOCALID", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"};

// Starts every test from none of the variables; puts the originals back.
class RankEnvironment : public ::testing::Test {
protected:
  void SetUp() override {
    for (const char *name : kVariables) {
      if (const char *v = std::getenv(name))
        saved_[name] = v;
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (const char *name : kVariables) {
      unsetenv(name);
      if (auto it = saved_.find(name); it != saved_.end())
        setenv(name, it->second.c_str(), 1);
    }
  }
  static void set(std::initializer_list<std::pair<const char *, const char *>> values) {
    for (auto [name, value] : values)
      setenv(name, value, 1);
  }
  static std::string error() {
    auto info = rankFromEnvironment();
    EXPECT_FALSE(info.isOk());
    return info.isOk() ? std::string() : info.message();
  }

private:
  std::map<std::string, std::string> saved_;
};

} // namespace

TEST_F(RankEnvironment, NoVariablesMeansOneRank) {
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->rank, 0);
  EXPECT_EQ(info->worldSize, 1);
  EXPECT_EQ(info->localRank, 0);
  EXPECT_EQ(info->source, "none");
  EXPECT_TRUE(info->rendezvous.empty());
}

TEST_F(RankEnvironment, MtrunVariables) {
  set({{"MT_RANK", "2"}, {"MT_WORLD_SIZE", "4"}, {"MT_LOCAL_RANK", "2"},
       {"MT_RENDEZVOUS", "/tmp/mtrun-x"}, {"MT_COMM_HOST", "127.0.0.1"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->rank, 2);
  EXPECT_EQ(info->worldSize, 4);
  EXPECT_EQ(info->localRank, 2);
  EXPECT_EQ(info->rendezvous, "/tmp/mtrun-x");
  EXPECT_EQ(info->host, "127.0.0.1");
  EXPECT_EQ(info->source, "mtrun");
}

TEST_F(RankEnvironment, MtrunTakesPrecedenceOverTorchrunAndSlurm) {
  set({{"MT_RANK", "1"}, {"MT_WORLD_SIZE", "2"}, {"MT_LOCAL_RANK", "1"},
       {"MT_RENDEZVOUS", "/tmp/r"}, {"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "5"},
       {"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->source, "mtrun");
  EXPECT_EQ(info->rank, 1);
  EXPECT_EQ(info->worldSize, 2);
}

TEST_F(RankEnvironment, TorchrunVariablesRecordTheMaster) {
  set({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"},
       {"MASTER_PORT", "29500"}, {"MT_RENDEZVOUS", "/shared/job-17"},
       {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_LOCALID", "0"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->source, "torchrun");
  EXPECT_EQ(info->rank, 3);
  EXPECT_EQ(info->worldSize, 8);
  EXPECT_EQ(info->localRank, 1);
  EXPECT_EQ(info->masterAddr, "node0");
  EXPECT_EQ(info->masterPort, 29500);
  EXPECT_EQ(info->rendezvous, "/shared/job-17");
}

TEST_F(RankEnvironment, TorchrunWithoutRendezvousSaysWhy) {
  set({{"RANK", "0"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "node0"},
       {"MASTER_PORT", "29500"}});
  std::string message = error();
  EXPECT_NE(message.find("WORLD_SIZE=8 needs MT_RENDEZVOUS"), std::string::npos) << message;
  EXPECT_NE(message.find("no TCP store"), std::string::npos) << message;
  EXPECT_NE(message.find("(node0:29500)"), std::string::npos) << message;
}

TEST_F(RankEnvironment, OneRankNeedsNoRendezvous) {
  set({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->worldSize, 1);
  EXPECT_EQ(info->source, "torchrun");
}

TEST_F(RankEnvironment, SlurmVariablesBeforeOpenMpi) {
  set({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"},
       {"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"},
       {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"MT_RENDEZVOUS", "/shared/r"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->source, "slurm");
  EXPECT_EQ(info->rank, 5);
  EXPECT_EQ(info->worldSize, 16);
  EXPECT_EQ(info->localRank, 1);
}

TEST_F(RankEnvironment, OpenMpiVariables) {
  set({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"},
       {"OMPI_COMM_WORLD_LOCAL_RANK", "3"}, {"MT_RENDEZVOUS", "/shared/r"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->source, "openmpi");
  EXPECT_EQ(info->rank, 3);
  EXPECT_EQ(info->worldSize, 4);
  EXPECT_EQ(info->localRank, 3);
}

TEST_F(RankEnvironment, SlurmWithoutRendezvousIsAnError) {
  set({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "1"}});
  EXPECT_NE(error().find("SLURM_NTASKS=2 needs MT_RENDEZVOUS"), std::string::npos);
}

TEST_F(RankEnvironment, RankNotBelowSizeIsAnError) {
  set({{"MT_RANK", "4"}, {"MT_WORLD_SIZE", "4"}, {"MT_LOCAL_RANK", "0"}});
  EXPECT_EQ(error(), "MT_RANK=4 is not less than MT_WORLD_SIZE=4");
}

TEST_F(RankEnvironment, LocalRankNotBelowSizeIsAnError) {
  set({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"},
       {"OMPI_COMM_WORLD_LOCAL_RANK", "2"}});
  EXPECT_EQ(error(), "OMPI_COMM_WORLD_LOCAL_RANK=2 is not less than OMPI_COMM_WORLD_SIZE=2");
}

TEST_F(RankEnvironment, NonNumbersAreErrors) {
  set({{"RANK", "abc"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}});
  EXPECT_EQ(error(), "RANK='abc' is not a non-negative integer");
  set({{"RANK", "1"}, {"WORLD_SIZE", "2x"}});
  EXPECT_EQ(error(), "WORLD_SIZE='2x' is not a positive integer");
  set({{"WORLD_SIZE", "0"}});
  EXPECT_EQ(error(), "WORLD_SIZE='0' is not a positive integer");
  set({{"WORLD_SIZE", "2"}, {"LOCAL_RANK", "-1"}});
  EXPECT_EQ(error(), "LOCAL_RANK='-1' is not a non-negative integer");
  set({{"LOCAL_RANK", ""}});
  EXPECT_EQ(error(), "LOCAL_RANK='' is not a non-negative integer");
  set({{"LOCAL_RANK", "0"}, {"MASTER_PORT", "http"}, {"MT_RENDEZVOUS", "/r"}});
  EXPECT_EQ(error(), "MASTER_PORT='http' is not a positive integer");
}

TEST_F(RankEnvironment, IncompleteVariablesAreErrors) {
  set({{"MT_RANK", "1"}});
  EXPECT_EQ(error(), "mtrun rank variables are incomplete: MT_RANK=1 set, MT_WORLD_SIZE, "
                     "MT_LOCAL_RANK missing");
  unsetenv("MT_RANK");
  set({{"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}});
  EXPECT_EQ(error(), "slurm rank variables are incomplete: SLURM_NTASKS=4, SLURM_LOCALID=0 "
                     "set, SLURM_PROCID missing");
}
