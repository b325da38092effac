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
    "SLURM_LOCALID", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "SLURM_JOB_NODELIST", "SLURM_JOB_ID", "MT_STORE_PORT", "TORCHELASTIC_USE_AGENT_STORE"};

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
  EXPECT_EQ(info->storeAddr, "node0");
  EXPECT_EQ(info->storePort, 29500);
  EXPECT_EQ(info->storeSource, "MASTER_ADDR:MASTER_PORT");
  EXPECT_EQ(info->rendezvous, "/shared/job-17");
}

TEST_F(RankEnvironment, TorchrunMeetsAtTheMasterWithoutADirectory) {
  set({{"RANK", "0"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "node0"},
       {"MASTER_PORT", "29500"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_TRUE(info->rendezvous.empty());
  EXPECT_EQ(info->storeAddr, "node0");
  EXPECT_EQ(info->storePort, 29500);
}

TEST_F(RankEnvironment, TorchrunsAgentStoreKeepsItsPort) {
  set({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"},
       {"MASTER_PORT", "29500"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->storePort, 29501);
  EXPECT_EQ(info->storeSource, "MASTER_ADDR:MASTER_PORT+1");
  set({{"MT_STORE_PORT", "40000"}});
  info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->storePort, 40000);
  EXPECT_EQ(info->storeSource, "MASTER_ADDR:MT_STORE_PORT");
  set({{"MT_STORE_PORT", "70000"}});
  EXPECT_EQ(error(), "MT_STORE_PORT=70000 is not a TCP port (1..65535)");
}

TEST_F(RankEnvironment, TorchrunWithoutAMeetingPlaceSaysWhatIsMissing) {
  set({{"RANK", "0"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "node0"}});
  EXPECT_EQ(error(), "WORLD_SIZE=8 needs a place where the ranks meet: MASTER_PORT (rank 0 "
                     "serves the rendezvous store there, over TCP), or MT_RENDEZVOUS (a fresh "
                     "directory on a file system every rank reaches)");
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

TEST_F(RankEnvironment, OpenMpiMeetsAtTheMaster) {
  set({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
       {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "29500"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->source, "openmpi");
  EXPECT_TRUE(info->rendezvous.empty());
  EXPECT_EQ(info->storeAddr, "10.1.2.3");
  EXPECT_EQ(info->storePort, 29500);
  unsetenv("MASTER_PORT");
  EXPECT_EQ(error(), "OMPI_COMM_WORLD_SIZE=4 needs a place where the ranks meet: MASTER_PORT "
                     "(rank 0 serves the rendezvous store there, over TCP), or MT_RENDEZVOUS (a "
                     "fresh directory on a file system every rank reaches)");
}

TEST_F(RankEnvironment, SlurmWithoutAMeetingPlaceIsAnError) {
  set({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(error(), "SLURM_NTASKS=2 needs a place where the ranks meet: MASTER_ADDR (or "
                     "SLURM_JOB_NODELIST) and MASTER_PORT (or SLURM_JOB_ID) (rank 0 serves "
                     "the rendezvous store there, over TCP), or MT_RENDEZVOUS (a fresh "
                     "directory on a file system every rank reaches)");
}

TEST_F(RankEnvironment, SlurmMeetsOnTheFirstNodeOfTheJob) {
  set({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "3"},
       {"SLURM_JOB_NODELIST", "gpu-[07-09,12],cpu1"}, {"SLURM_JOB_ID", "4812345"}});
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->storeAddr, "gpu-07");
  EXPECT_EQ(info->storePort, 15000 + 2345);
  EXPECT_EQ(info->storeSource, "SLURM_JOB_NODELIST:SLURM_JOB_ID");
  set({{"MASTER_ADDR", "head"}, {"MASTER_PORT", "29400"}}); // given: they win
  info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  EXPECT_EQ(info->storeAddr, "head");
  EXPECT_EQ(info->storePort, 29400);
}

TEST(SlurmNodeList, FirstHost) {
  EXPECT_EQ(firstSlurmHost("node1"), "node1");
  EXPECT_EQ(firstSlurmHost("node1,node2"), "node1");
  EXPECT_EQ(firstSlurmHost("gpu-[07-09,12],cpu1"), "gpu-07");
  EXPECT_EQ(firstSlurmHost("n[3,5]"), "n3");
  EXPECT_EQ(firstSlurmHost("a1,b[2-3]"), "a1");
  EXPECT_EQ(firstSlurmHost("rack[1-2]-ib"), "rack1-ib");
  EXPECT_EQ(firstSlurmHost("bad[1-2"), "");
  EXPECT_EQ(firstSlurmHost(""), "");
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
