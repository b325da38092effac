// launchLocal: ranks as processes (small /bin/sh programs), their variables,
// exit codes, stopping the others on a failure, time limit, signals; and a
// real multi-process job (this test binary as the ranks).
#include "runtime/comm/Gloo.h"
#include "runtime/comm/Launcher.h"
#include "test/runtime/comm/CommTestSupport.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <unistd.h>

using namespace mt::comm;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

using mt::commtest::TempDir;

// `sh -c script sh arg`: the script sees `arg` as $1.
std::vector<std::string> shell(const std::string &script, const std::string &arg = "") {
  return {"/bin/sh", "-c", script, "sh", arg};
}

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// Sets `name` to `value` while alive, then restores what the environment
/// held (a value, or nothing): a test leaves the environment as it found it.
class ScopedEnv {
public:
  ScopedEnv(std::string name, const std::string &value) : name_(std::move(name)) {
    if (const char *old = std::getenv(name_.c_str()))
      old_ = old;
    setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_.c_str(), old_->c_str(), 1);
    else
      unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  std::string name_;
  std::optional<std::string> old_;
};

/// Set by Launcher.MultiProcessJob to its pid: a process whose parent it is
/// is one of that job's ranks.
constexpr const char *kJobParent = "MT_LAUNCHER_TEST_PARENT";

std::string readFile(const std::string &path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

} // namespace

TEST(Launcher, EveryRankGetsItsVariables) {
  TempDir out;
  std::ostringstream log;
  mt::Expected<int> code = mt::Status::error("not run");
  {
    ScopedEnv inherited("MT_RANK", "99"); // replaced in the ranks, not duplicated
    code = launchLocal(
      3,
        shell(R"sh([ "$MT_WORLD_SIZE" = 3 ] && [ "$MT_LOCAL_RANK" = "$MT_RANK" ] &&
                 [ -d "$MT_RENDEZVOUS" ] && [ "$MT_COMM_HOST" = 127.0.0.1 ] &&
                 [ "$(env | grep -c '^MT_RANK=')" = 1 ] &&
                 echo "$MT_RENDEZVOUS" > "$1/rank-$MT_RANK")sh",
              out.path),
        0ms, log);
  }
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 0) << log.str();
  std::string rendezvous = readFile(out.path + "/rank-0");
  EXPECT_NE(rendezvous.find("mtrun-"), std::string::npos);
  for (int r = 1; r < 3; ++r)
    EXPECT_EQ(readFile(out.path + "/rank-" + std::to_string(r)), rendezvous) << r;
  EXPECT_FALSE(fs::exists(rendezvous.substr(0, rendezvous.size() - 1)))
      << "the rendezvous directory is removed at the end";
}

TEST(Launcher, FailingRankStopsTheOthers) {
  std::ostringstream log;
  auto start = Clock::now();
  auto code = launchLocal(3, shell(R"([ "$MT_RANK" = 1 ] && exit 3; exec sleep 30)"), 0ms, log);
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 3);
  EXPECT_NE(log.str().find("rank 1 exited with status 3"), std::string::npos) << log.str();
  EXPECT_LT(secondsSince(start), 5.0);
}

TEST(Launcher, RankIgnoringSigtermIsKilled) {
  std::ostringstream log;
  auto start = Clock::now();
  auto code = launchLocal(
      2, shell(R"([ "$MT_RANK" = 0 ] && { sleep 0.2; exit 1; }; trap '' TERM; sleep 30)"), 0ms,
      log);
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 1);
  EXPECT_NE(log.str().find("rank 0 exited with status 1"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("sending SIGKILL"), std::string::npos) << log.str();
  double seconds = secondsSince(start);
  EXPECT_GT(seconds, 2.5); // the grace period
  EXPECT_LT(seconds, 8.0);
}

TEST(Launcher, RankKilledBySignal) {
  std::ostringstream log;
  auto code = launchLocal(2, shell(R"([ "$MT_RANK" = 1 ] && kill -9 $$; exec sleep 30)"), 0ms,
                          log);
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 128 + 9);
  EXPECT_NE(log.str().find("rank 1 was killed by signal 9"), std::string::npos) << log.str();
}

TEST(Launcher, TimeLimitStopsTheJob) {
  std::ostringstream log;
  auto start = Clock::now();
  auto code = launchLocal(2, shell("exec sleep 30"), 300ms, log);
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 124);
  EXPECT_NE(log.str().find("time limit"), std::string::npos) << log.str();
  EXPECT_LT(secondsSince(start), 4.0);
}

TEST(Launcher, ForwardsSigintToTheRanks) {
  TempDir out;
  std::ostringstream log;
  mt::Expected<int> code = mt::Status::error("not run");
  auto start = Clock::now();
  std::thread launcher([&] {
    code = launchLocal(2, shell(R"(touch "$1/started-$MT_RANK"; exec sleep 30)", out.path), 0ms,
                       log);
  });
  // The handlers are installed before the first fork, so once both ranks
  // have started, SIGINT reaches launchLocal rather than killing this test.
  auto giveUp = Clock::now() + 10s;
  while (!(fs::exists(out.path + "/started-0") && fs::exists(out.path + "/started-1")) &&
         Clock::now() < giveUp)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(fs::exists(out.path + "/started-1"));
  kill(getpid(), SIGINT);
  launcher.join();
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 128 + SIGINT);
  EXPECT_NE(log.str().find("forwarding signal 2"), std::string::npos) << log.str();
  EXPECT_LT(secondsSince(start), 8.0);
}

TEST(Launcher, BadArgumentsAreErrors) {
  auto noExec = launchLocal(2, {"/nonexistent/mt-program"}, 0ms);
  ASSERT_FALSE(noExec.isOk());
  EXPECT_EQ(noExec.message(),
            "rank 0: cannot execute '/nonexistent/mt-program': No such file or directory");
  auto none = launchLocal(0, shell("exit 0"), 0ms);
  ASSERT_FALSE(none.isOk());
  EXPECT_EQ(none.message(), "--nproc must be at least 1 (got 0)");
}

TEST(RankThreads, CoresDividedAmongTheLocalRanks) {
  struct Case { int ranks, cores, threads; };
  for (Case c : {Case{4, 2, 1}, Case{2, 16, 8}, Case{3, 16, 5}, Case{1, 1, 1}, Case{8, 64, 8}}) {
    auto t = chooseRankThreads(c.ranks, c.cores, std::nullopt, nullptr);
    ASSERT_TRUE(t.isOk()) << t.message();
    EXPECT_EQ(t->threads, c.threads) << c.ranks << " ranks on " << c.cores << " cores";
  }
  auto t = chooseRankThreads(4, 2, std::nullopt, "");
  EXPECT_EQ(t->note, "4 local ranks on 2 cores: 1 thread per rank (the cores divided among the "
                     "ranks; --threads-per-rank or OMP_NUM_THREADS to change)");
}

TEST(RankThreads, AnExplicitOmpNumThreadsIsKept) {
  auto t = chooseRankThreads(2, 16, std::nullopt, "3");
  ASSERT_TRUE(t.isOk()) << t.message();
  EXPECT_EQ(t->threads, 0); // the ranks inherit it unchanged
  EXPECT_EQ(t->note, "2 local ranks on 16 cores: OMP_NUM_THREADS=3 from the environment for "
                     "every rank");
}

TEST(RankThreads, TheFlagOverridesAndIsValidated) {
  auto t = chooseRankThreads(2, 2, 2, "1");
  ASSERT_TRUE(t.isOk()) << t.message();
  EXPECT_EQ(t->threads, 2);
  EXPECT_EQ(t->note,
            "2 local ranks on 2 cores: 2 threads per rank (--threads-per-rank, more threads "
            "than cores)");
  // One rank's threads beyond the cores cannot run at once.
  auto many = chooseRankThreads(2, 2, 1000, nullptr);
  ASSERT_FALSE(many.isOk());
  EXPECT_EQ(many.message(), "--threads-per-rank 1000 is more than the 2 cores mtrun may use: "
                            "give at most 2 (without it, the cores are divided among the ranks)");
  auto zero = chooseRankThreads(2, 2, 0, nullptr);
  ASSERT_FALSE(zero.isOk());
  EXPECT_EQ(zero.message(), "--threads-per-rank must be at least 1 (got 0)");
  EXPECT_FALSE(chooseRankThreads(2, 2, -4, nullptr).isOk());
}

TEST(Launcher, RanksGetTheirThreadCount) {
  ScopedEnv omp("OMP_NUM_THREADS", "7");
  std::ostringstream log;
  auto set = launchLocal(
      2, shell(R"([ "$OMP_NUM_THREADS" = 3 ] && [ "$OPENBLAS_NUM_THREADS" = 3 ])"), 0ms, log, 3);
  ASSERT_TRUE(set.isOk()) << set.message();
  EXPECT_EQ(*set, 0) << log.str();
  auto inherited = launchLocal(2, shell(R"([ "$OMP_NUM_THREADS" = 7 ])"), 0ms, log, 0);
  ASSERT_TRUE(inherited.isOk()) << inherited.message();
  EXPECT_EQ(*inherited, 0) << log.str();
}

TEST(Launcher, CurrentExecutableIsThisTest) {
  auto exe = currentExecutable();
  ASSERT_TRUE(exe.isOk()) << exe.message();
  EXPECT_EQ(fs::path(*exe).filename(), "MtCommTests");
}

namespace {

/// Set by Launcher.MultiProcessJobOverTcp: the port where its rank 0 serves
/// the rendezvous store.
constexpr const char *kTcpPort = "MT_LAUNCHER_TEST_TCP_PORT";

bool isRankOfThisTestsJob() {
  const char *parent = std::getenv(kJobParent);
  return parent && std::to_string(getppid()) == parent;
}

// A rank's part of the multi-process jobs: connect, all-reduce over the
// world, make and use a group.
void connectAndReduce(const RankInfo &info) {
  auto world = World::connect(info, 20s);
  ASSERT_TRUE(world.isOk()) << world.message();
  const int n = info.worldSize, r = info.rank;
  std::vector<float> data = {float(r + 1), 0.1f * float(r), -float(r)};
  ASSERT_TRUE((*world)->world().allReduce(data.data(), 3, DType::F32, ReduceOp::Sum).isOk());
  float second = 0.0f;
  for (int k = 0; k < n; ++k)
    second += 0.1f * float(k);
  EXPECT_EQ(data[0], float(n * (n + 1) / 2));
  EXPECT_EQ(data[1], second);
  auto pair = (*world)->group("pair", {r / 2 * 2, std::min(r / 2 * 2 + 1, n - 1)});
  ASSERT_TRUE(pair.isOk()) << pair.message();
  ASSERT_TRUE((*pair)->barrier().isOk());
}

} // namespace

// One rank of the job that MultiProcessJob launches; skipped otherwise, even
// where MT_RANK is set around the test binary (inside another job).
TEST(Launcher, RankOfMultiProcessJob) {
  if (!isRankOfThisTestsJob() || std::getenv(kTcpPort))
    GTEST_SKIP() << "runs as a rank of Launcher.MultiProcessJob";
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  connectAndReduce(*info);
}

TEST(Launcher, MultiProcessJob) {
  if (!World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo (-DMT_REQUIRE_GLOO=OFF)";
  auto exe = currentExecutable();
  ASSERT_TRUE(exe.isOk()) << exe.message();
  std::ostringstream log;
  ScopedEnv job(kJobParent, std::to_string(getpid()));
  auto code = launchLocal(4, {*exe, "--gtest_filter=Launcher.RankOfMultiProcessJob"}, 60s, log);
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 0) << log.str();
}

// A rank of MultiProcessJobOverTcp: it turns the launcher's variables into
// torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and
// drops the rendezvous directory, so the ranks meet over TCP alone.
TEST(Launcher, RankOfMultiProcessJobOverTcp) {
  const char *port = std::getenv(kTcpPort);
  if (!isRankOfThisTestsJob() || !port)
    GTEST_SKIP() << "runs as a rank of Launcher.MultiProcessJobOverTcp";
  for (auto [from, to] : {std::pair{"MT_RANK", "RANK"}, std::pair{"MT_WORLD_SIZE", "WORLD_SIZE"},
                          std::pair{"MT_LOCAL_RANK", "LOCAL_RANK"}}) {
    setenv(to, std::getenv(from), 1);
    unsetenv(from);
  }
  unsetenv("MT_RENDEZVOUS");
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", port, 1);
  auto info = rankFromEnvironment();
  ASSERT_TRUE(info.isOk()) << info.message();
  ASSERT_EQ(info->source, "torchrun");
  ASSERT_TRUE(info->rendezvous.empty());
  connectAndReduce(*info);
}

TEST(Launcher, MultiProcessJobOverTcp) {
  if (!World::multiRankSupported())
    GTEST_SKIP() << "built without Gloo (-DMT_REQUIRE_GLOO=OFF)";
  auto exe = currentExecutable();
  ASSERT_TRUE(exe.isOk()) << exe.message();
  // A port free now; rank 0 listens on it.
  const int free = mt::commtest::freeLoopbackPort();
  ASSERT_NE(free, 0);
  std::ostringstream log;
  ScopedEnv job(kJobParent, std::to_string(getpid()));
  ScopedEnv port(kTcpPort, std::to_string(free));
  auto code =
      launchLocal(4, {*exe, "--gtest_filter=Launcher.RankOfMultiProcessJobOverTcp"}, 60s, log);
  ASSERT_TRUE(code.isOk()) << code.message();
  EXPECT_EQ(*code, 0) << log.str();
}
