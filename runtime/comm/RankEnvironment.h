// Which rank this process is (rankFromEnvironment), from the variables that
// mtrun --nproc, torchrun, Slurm or OpenMPI set.
#ifndef MT_RUNTIME_COMM_RANKENVIRONMENT_H
#define MT_RUNTIME_COMM_RANKENVIRONMENT_H

#include "runtime/support/Status.h"

#include <string>

namespace mt::comm {

/// Where this process sits among the ranks of a job.
struct RankInfo {
  int rank = 0, worldSize = 1, localRank = 0;
  /// A directory every rank can reach, fresh for each job (MT_RENDEZVOUS).
  std::string rendezvous;
  /// The address this rank listens on (MT_COMM_HOST); empty: the hostname.
  std::string host;
  /// The variables the values came from: "mtrun" (MT_RANK...), "torchrun", "slurm",
  /// "openmpi", or "none" (a single rank).
  std::string source = "none";
  /// Where rank 0 serves the job's TcpStore when there is no `rendezvous`
  /// directory: MASTER_ADDR (Slurm: else the first host of
  /// SLURM_JOB_NODELIST) and MASTER_PORT (Slurm: else 15000 + the last four
  /// digits of SLURM_JOB_ID, Lightning's rule; under torchrun's agent store,
  /// TORCHELASTIC_USE_AGENT_STORE=True, MASTER_PORT + 1, since torchrun's
  /// own store holds MASTER_PORT). MT_STORE_PORT overrides the port.
  std::string storeAddr;
  int storePort = 0;
  /// The variables storeAddr:storePort came from, for messages:
  /// "MASTER_ADDR:MASTER_PORT", "SLURM_JOB_NODELIST:MT_STORE_PORT", ...
  std::string storeSource;
};

/// Reads the rank from, in this order: MT_RANK/MT_WORLD_SIZE/MT_LOCAL_RANK
/// (mtrun --nproc), torchrun's RANK/WORLD_SIZE/LOCAL_RANK, Slurm's
/// SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, OpenMPI's
/// OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK. MT_RENDEZVOUS, MT_COMM_HOST and
/// the store's address (RankInfo::storeAddr) apply to every style; more than
/// one rank needs MT_RENDEZVOUS or the store's address and port. Without
/// any of these variables: a single rank.
Expected<RankInfo> rankFromEnvironment();

/// The first host of a Slurm node list: "gpu-[07-09,12],cpu1" -> "gpu-07";
/// empty for an empty or malformed list.
std::string firstSlurmHost(const std::string &nodeList);

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_RANKENVIRONMENT_H
