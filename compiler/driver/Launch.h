// mtc train started by a launcher (torchrun, Slurm's srun, OpenMPI's mpirun):
// every process runs `mtc train`; one process per node prepares the run
// (data, model, plan) and the others wait for it, then every process runs
// mtrun as its rank.
#ifndef MT_COMPILER_DRIVER_LAUNCH_H
#define MT_COMPILER_DRIVER_LAUNCH_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <string>

namespace mt {

/// This process's place in a launched job, from the launcher's variables:
/// torchrun (WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
/// TORCHELASTIC_RUN_ID, TORCHELASTIC_RESTART_COUNT, MASTER_ADDR/PORT), Slurm
/// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID,
/// SLURM_JOB_NUM_NODES, SLURM_JOB_ID, SLURM_STEP_ID) or OpenMPI
/// (OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK/_LOCAL_SIZE, PMIX_NAMESPACE or
/// OMPI_MCA_ess_base_jobid). The variables mtrun reads itself to find its
/// rank; mtc train only needs who prepares and how many ranks there are.
struct Launch {
  std::string by;        // "torchrun", "slurm", "openmpi"; empty: not launched
  int64_t worldSize = 1; // processes in the job
  int64_t localRank = 0; // among this node's processes; 0 prepares the run
  bool oneNode = true;   // the whole job on this node
  std::string node;      // this node's index (or host name) among the job's nodes
  /// The launcher's identifiers of this job (torchrun: run id, master
  /// address and restart count; Slurm: job and step; OpenMPI: namespace):
  /// a preparation marked with them, and written after this process
  /// started, is this job's.
  std::string job;
  /// Not launched: LLaMA-Factory's NPROC_PER_NODE, the local ranks that
  /// mtrun --nproc starts (0: unset). NNODES above 1 needs a launcher.
  int64_t nprocPerNode = 0;
};

/// The launch, or an error naming a variable with an unusable value.
Expected<Launch> launchFromEnvironment();

/// The directory a node's preparation goes to: `runDir` for a job on one
/// node, `runDir/node-NODE` otherwise (nodes need not share a file system;
/// where they do, each still prepares its own copy).
std::string launchRunDir(const std::string &runDir, const Launch &launch);

/// Local rank 0, before preparing: forgets an earlier job's preparation in `dir`.
Status beginPreparation(const std::string &dir);

/// Local rank 0, after preparing: tells the node's other ranks that `dir`
/// is ready (`failure` empty) or that preparing failed with `failure`.
Status endPreparation(const std::string &dir, const Launch &launch, const std::string &failure);

/// The other local ranks: waits until local rank 0 ended this job's
/// preparation of `dir`; an error if it failed (its message) or if
/// `timeoutSeconds` pass first.
Status awaitPreparation(const std::string &dir, const Launch &launch, double timeoutSeconds);

} // namespace mt

#endif // MT_COMPILER_DRIVER_LAUNCH_H
