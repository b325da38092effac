// The CUDA backend's communication: the collectives of one group of ranks
// over device memory (NcclCommunicator), and how a rank selects its GPU and
// makes its NCCL groups (connectNccl). The unique id of each group reaches
// its members through the job's rendezvous store (comm::Store: a directory,
// or TCP from rank 0), so the GPU build needs no Gloo.
#ifndef MT_RUNTIME_CUDA_NCCLCOMMUNICATOR_H
#define MT_RUNTIME_CUDA_NCCLCOMMUNICATOR_H

#include "runtime/comm/Communicator.h"
#include "runtime/comm/Store.h"
#include "runtime/cuda/NcclWatchdog.h"
#include "runtime/comm/RankEnvironment.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <functional>
#include <memory>

namespace mt::cuda {

/// Makes this thread use the rank's GPU: LOCAL_RANK's, or the only visible
/// one (a launcher that gives each process one GPU through
/// CUDA_VISIBLE_DEVICES). An error names LOCAL_RANK and the GPUs seen.
Status selectDevice(const comm::RankInfo &info);

/// A Communicator over NCCL: data calls take device buffers (fp32 or bf16)
/// and are enqueued on stream() without waiting; the *Host calls and
/// barrier() stage through a device buffer on the same stream and wait.
/// Calls of one communicator come from one thread at a time, on the GPU
/// that was current when it was made.
class NcclCommunicator final : public comm::Communicator {
public:
  /// Makes the NCCL communicator of `ranks` (world ranks, this rank among
  /// them): every member announces itself under `key` in `store` and waits
  /// for the others (so that no member enters NCCL's bootstrap without its
  /// peers), then group rank 0 publishes the ncclUniqueId and the others
  /// read it. `watchdog` watches its calls (see NcclWatchdog): after a
  /// failure anywhere on this rank, every call returns it.
  static Expected<std::unique_ptr<NcclCommunicator>>
  create(const std::string &name, const std::vector<int> &ranks, const comm::RankInfo &info,
         comm::Store &store, const std::string &key, std::shared_ptr<NcclWatchdog> watchdog);
  ~NcclCommunicator() override;

  comm::Memory memory() const override { return comm::Memory::Device; }
  /// Where the next calls are enqueued (by default a stream of its own).
  void setStream(cudaStream_t stream) { stream_ = stream; }
  cudaStream_t stream() const { return stream_; }

  Status allReduce(void *data, size_t count, comm::DType type, comm::ReduceOp op) override;
  Status allGather(const void *in, void *out, size_t countPerRank, comm::DType type) override;
  Status reduceScatter(const void *in, void *out, size_t countPerRank, comm::DType type,
                       comm::ReduceOp op) override;
  /// Grouped ncclSend/ncclRecv, one pair per peer with a non-zero count
  /// (NCCL has no all-to-all-v of its own). The counts are host values: a
  /// caller whose counts are on the device copies them first. NCCL cannot
  /// check that they pair up across ranks.
  Status allToAllV(const void *in, const std::vector<size_t> &sendCounts, void *out,
                   const std::vector<size_t> &recvCounts, comm::DType type) override;
  Status broadcast(void *data, size_t count, comm::DType type, int root) override;
  Status send(const void *data, size_t count, comm::DType type, int peer) override;
  Status recv(void *data, size_t count, comm::DType type, int peer) override;
  Status barrier() override;

  Status allReduceHost(float *data, size_t count, comm::ReduceOp op) override;
  Status allGatherHost(const float *in, float *out, size_t countPerRank) override;
  Status broadcastHost(float *data, size_t count, int root) override;

  /// Runs `calls` (data calls of this communicator) between ncclGroupStart
  /// and ncclGroupEnd: NCCL launches them together (one kernel for many
  /// gradient all-reduces; send and recv pairs that must progress at once).
  Status grouped(const std::function<Status()> &calls);

private:
  NcclCommunicator(std::string name, std::vector<int> ranks, int worldRank, int worldSize)
      : comm::Communicator(std::move(name), std::move(ranks), worldRank, worldSize) {}
  /// A failed NCCL call as a Status naming the group; later calls refuse.
  Status check(ncclResult_t result, const char *op, const char *call);
  /// Runs `nccl` (one NCCL call, spelled `text`) under the watchdog's hold,
  /// unless this rank has failed, and has the watchdog watch it.
  template <typename Call> Status launch(const char *op, const char *text, Call &&nccl);
  /// The watchdog's failure as this call's error, once there is one.
  Status refuseIfFailed(const char *op);
  /// `bytes` of device scratch for the host calls.
  Expected<void *> scratch(size_t bytes);
  /// Host -> scratch, `body(scratch)`, scratch -> host, then waits.
  Status staged(const char *op, const void *in, size_t inBytes, void *out, size_t outBytes,
                const std::function<Status(void *)> &body);

  ncclComm_t comm_ = nullptr;
  std::shared_ptr<NcclWatchdog> watchdog_;
  cudaStream_t stream_ = nullptr, own_ = nullptr;
  void *scratch_ = nullptr;
  size_t scratchBytes_ = 0;
  bool failed_ = false;
};

/// The RankContext::Connect of the CUDA backend: selects the rank's GPU
/// (selectDevice) and returns the factory of its NCCL groups, bootstrapped
/// through the job's store (comm::openStore: MT_RENDEZVOUS, or TCP at
/// MASTER_ADDR:MASTER_PORT); `timeout` bounds each group's rendezvous and,
/// through one NcclWatchdog for all of them, how long any NCCL call may make
/// no progress.
Expected<std::unique_ptr<comm::GroupFactory>> connectNccl(const comm::RankInfo &info,
                                                          std::chrono::milliseconds timeout);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_NCCLCOMMUNICATOR_H
