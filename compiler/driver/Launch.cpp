#include "compiler/driver/Launch.h"

#include "runtime/support/AtomicFile.h"
#include "runtime/support/FileKind.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h> // gethostname

namespace mt {
namespace {

namespace fs = std::filesystem;

constexpr const char *kReady = ".prepared";        // holds the job
constexpr const char *kFailed = ".prepare-failed"; // holds the job, then the error

std::string env(const char *name) {
  const char *value = std::getenv(name);
  return value ? value : "";
}

/// A variable that must hold an integer >= `least`; `fallback` when unset.
/// `setBy` says who sets it, for the error.
Expected<int64_t> integerVariable(const char *name, int64_t least, int64_t fallback,
                                  const char *setBy = "set by the launcher") {
  std::string text = env(name);
  if (text.empty())
    return fallback;
  char *end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || value < least)
    return Status::error(std::string(name) + "='" + text + "': expected an integer >= " +
                         std::to_string(least) + " (" + setBy + ")");
  return int64_t(value);
}

/// Not launched: llamafactory-cli's variables, NPROC_PER_NODE local ranks
/// on NNODES nodes (one: several need a launcher on each).
Expected<Launch> unlaunched() {
  Launch launch;
  auto nproc = integerVariable("NPROC_PER_NODE", 1, 0, "LLaMA-Factory's variable: the local "
                                                        "ranks to start");
  if (!nproc)
    return nproc.status();
  launch.nprocPerNode = *nproc;
  if (std::string nodes = env("NNODES"); !nodes.empty() && nodes != "1")
    return Status::error("NNODES=" + nodes + ": several nodes need a launcher; run `torchrun "
                         "--nnodes ... $(which mtc) train CONFIG` (or srun, mpirun) on each");
  return launch;
}

std::string hostName() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

/// The launcher's names for world size, local rank, local size and node.
struct Spelling {
  const char *by, *rank, *world, *localRank, *localSize;
};

constexpr Spelling kTorchrun{"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"};
constexpr Spelling kSlurm{"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", nullptr};
constexpr Spelling kOpenMpi{"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                            "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"};

std::string readAll(const fs::path &path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

} // namespace

Expected<Launch> launchFromEnvironment() {
  // The order of mtrun's rank environment: torchrun, Slurm, OpenMPI.
  const Spelling *s = nullptr;
  for (const Spelling *candidate : {&kTorchrun, &kSlurm, &kOpenMpi})
    if (!env(candidate->world).empty() && !s)
      s = candidate;
  if (!s)
    return unlaunched();
  Launch launch;
  launch.by = s->by;
  auto world = integerVariable(s->world, 1, 1);
  auto localRank = integerVariable(s->localRank, 0, 0);
  auto localSize = s->localSize ? integerVariable(s->localSize, 1, 0) : Expected<int64_t>(0);
  for (const auto *value : {&world, &localRank, &localSize})
    if (!*value)
      return value->status();
  launch.worldSize = *world;
  launch.localRank = *localRank;
  if (launch.by == "torchrun") {
    launch.oneNode = *localSize == 0 || *localSize == *world;
    launch.node = env("GROUP_RANK").empty() ? hostName() : env("GROUP_RANK");
    launch.job = "torchrun " + env("TORCHELASTIC_RUN_ID") + " " + env("MASTER_ADDR") + ":" +
                 env("MASTER_PORT") + " restart " + env("TORCHELASTIC_RESTART_COUNT");
  } else if (launch.by == "slurm") {
    launch.oneNode = env("SLURM_JOB_NUM_NODES").empty() || env("SLURM_JOB_NUM_NODES") == "1";
    launch.node = env("SLURM_NODEID").empty() ? hostName() : env("SLURM_NODEID");
    launch.job = "slurm " + env("SLURM_JOB_ID") + "." + env("SLURM_STEP_ID");
  } else {
    launch.oneNode = *localSize == 0 || *localSize == *world;
    launch.node = hostName();
    std::string id = env("PMIX_NAMESPACE").empty() ? env("OMPI_MCA_ess_base_jobid")
                                                   : env("PMIX_NAMESPACE");
    launch.job = "openmpi " + id;
  }
  return launch;
}

std::string launchRunDir(const std::string &runDir, const Launch &launch) {
  return launch.oneNode ? runDir : runDir + "/node-" + launch.node;
}

Status beginPreparation(const std::string &dir) {
  std::error_code ec;
  for (const char *marker : {kReady, kFailed})
    if (fs::remove(fs::path(dir) / marker, ec); ec)
      return Status::error(dir + "/" + marker + ": cannot remove: " + ec.message());
  return Status::ok();
}

Status endPreparation(const std::string &dir, const Launch &launch, const std::string &failure) {
  return io::writeFileAtomically((fs::path(dir) / (failure.empty() ? kReady : kFailed)).string(),
                                 [&](std::ostream &out) {
                                   out << launch.job << "\n" << failure;
                                   return Status::ok();
                                 });
}

Status awaitPreparation(const std::string &dir, const Launch &launch, double timeoutSeconds) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeoutSeconds);
  // A marker older than this process (less the launcher's start-up skew) is
  // an earlier job's that happened to have the same identifiers.
  const auto notBefore = fs::file_time_type::clock::now() - std::chrono::seconds(10);
  const std::string mine = launch.job + "\n";
  auto current = [&](const char *marker, std::string &text) {
    fs::path path = fs::path(dir) / marker;
    std::error_code ec;
    auto written = fs::last_write_time(path, ec);
    // Rank 0 writes a regular file (atomically, over whatever was there); a
    // FIFO's read would wait for a writer past the timeout.
    if (ec || written < notBefore || fileKindOf(path.string()) != FileKind::Regular)
      return false;
    text = readAll(path);
    return text.rfind(mine, 0) == 0;
  };
  for (std::string text;;) {
    if (current(kReady, text))
      return Status::ok();
    if (current(kFailed, text))
      return Status::error("local rank 0 failed to prepare the run in " + dir + ": " +
                           text.substr(mine.size()));
    if (Clock::now() > deadline)
      return Status::error("local rank 0 did not prepare the run in " + dir + " within " +
                           std::to_string(int64_t(timeoutSeconds)) +
                           " s (--launch-timeout); is it still running?");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

} // namespace mt
