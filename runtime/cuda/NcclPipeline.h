// The CUDA backend's pipeline transfers: bf16 activations and their
// gradients as ncclSend/ncclRecv of device buffers over the two-rank NCCL
// group of each ordered pair of stages (RankContext::p2p), so that each
// group carries one direction. Receives are enqueued on the compute stream
// where the schedule reaches them; sends copy their buffer to a staging
// buffer on the compute stream and go out from a transfer stream of their
// own, so that a send never blocks the compute stream while its receiver
// is busy (the stream-ordered form of Megatron's batched isend/irecv).
//
// NCCL matches the sends and receives of a group in the order they are
// posted, not by key: the channels check once that each stage produces its
// messages in the order their receiver takes them (pipelineMessages of the
// plan's schedule), and each send and receive against that order. NCCL
// calls are never captured in a CUDA graph here: the transfers of a stage
// program run eagerly, the steps between them replay as graphs
// (stagePieces in CudaExecutor.cpp says why).
#ifndef MT_RUNTIME_CUDA_NCCLPIPELINE_H
#define MT_RUNTIME_CUDA_NCCLPIPELINE_H

#include "runtime/cuda/NcclCommunicator.h"
#include "runtime/exec/PipelineChannels.h"
#include "runtime/plan/PlanSchedule.h"

#include <cuda_runtime_api.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mt::cuda {

class NcclPipelineChannels final : public exec::PipelineChannels {
public:
  /// The channels of `rank`'s stage for the schedule `plan` carries.
  /// `compute` is the stream the programs run on.
  /// Errors: a pair group that is not an NCCL communicator (RankContext
  /// made without cuda::connectNccl); a stage program whose transfers do
  /// not match the schedule.
  static Expected<std::unique_ptr<NcclPipelineChannels>>
  create(const plan::Plan &plan, const exec::RankContext &rank, cudaStream_t compute);
  ~NcclPipelineChannels() override;

  /// `data`: `count` bf16 elements on this rank's GPU, as the compute stream
  /// leaves them; an error when (microBatch, tag) is not the next message
  /// the schedule sends to `toStage`.
  Status send(int64_t toStage, int64_t microBatch, uint32_t tag, const void *data,
              int64_t count) override;
  /// Enqueues the receive of `count` bf16 elements into `out` on the
  /// compute stream; an error when (microBatch, tag) is not the next message
  /// the schedule receives from `fromStage`.
  Status receive(int64_t fromStage, int64_t microBatch, uint32_t tag, void *out,
                 int64_t count) override;
  /// Checks that the step sent and received every message of the schedule,
  /// and waits for the sends to complete.
  Status flush() override;

private:
  using Key = std::pair<int64_t, uint32_t>; // (micro-batch, buffer)
  /// A copy of a sent buffer, so that the compute stream may overwrite the
  /// buffer before the receiver takes the message.
  struct Staging {
    void *data = nullptr;
    size_t bytes = 0;
    cudaEvent_t sent = nullptr; // the send from it is done
  };
  struct Peer {
    NcclCommunicator *sendGroup = nullptr, *receiveGroup = nullptr;
    std::vector<Key> sendOrder, receiveOrder; // one step's messages
    size_t sent = 0, received = 0;            // in this step
  };
  NcclPipelineChannels(cudaStream_t compute, int64_t self) : compute_(compute), self_(self) {}
  /// One element each way with every other stage, all in one NCCL group:
  /// NCCL connects a pair at its first transfer, blocking the host until
  /// the peer does too, which here happens at once on every rank rather
  /// than wherever the schedule first reaches each pair.
  Status connect();
  /// A staging buffer of at least `bytes` whose last send completed.
  Expected<Staging *> freeStaging(size_t bytes);
  /// An error unless `key` is the next of `order` (`done` of it so far).
  Status checkTurn(const char *what, int64_t stage, const Key &key,
                   const std::vector<Key> &order, size_t done) const;
  std::string where(int64_t stage, const Key &key) const;

  cudaStream_t compute_ = nullptr, transfer_ = nullptr;
  cudaEvent_t copied_ = nullptr; // the last staging copy on the compute stream
  int64_t self_ = 0;
  std::map<int64_t, Peer> peers_; // by the other stage
  std::deque<Staging> staging_; // grows to the sends in flight at once
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_NCCLPIPELINE_H
