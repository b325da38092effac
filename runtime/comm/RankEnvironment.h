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
  /// torchrun's MASTER_ADDR / MASTER_PORT, recorded for messages only: the
  /// Gloo build used here has no TCP store, ranks meet in `rendezvous`.
  std::string masterAddr;
  int masterPort = 0;
};

/// Reads the rank from, in this order: MT_RANK/MT_WORLD_SIZE/MT_LOCAL_RANK
/// (mtrun --nproc), torchrun's RANK/WORLD_SIZE/LOCAL_RANK, Slurm's
/// SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID, OpenMPI's
/// OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK. MT_RENDEZVOUS (required when
/// there is more than one rank) and MT_COMM_HOST apply to every style.
/// Without any of these variables: a single rank.
Expected<RankInfo> rankFromEnvironment();

} // namespace mt::comm

#endif // MT_RUNTIME_COMM_RANKENVIRONMENT_H
