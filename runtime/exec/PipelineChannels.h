// Point-to-point transfers between pipeline stages: activations forward,
// their gradients back, keyed by (micro-batch, buffer). The backend
// provides them (Executor::openPipeline): host threads over Gloo here
// (HostPipelineChannels), NCCL on the GPU (runtime/cuda/NcclPipeline.h).
#ifndef MT_RUNTIME_EXEC_PIPELINECHANNELS_H
#define MT_RUNTIME_EXEC_PIPELINECHANNELS_H

#include "runtime/exec/RankContext.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace mt::exec {

/// The transfers of one rank's pipeline stage. Elements are the backend's
/// activation storage: fp32 in host memory on the CPU, bf16 in device
/// memory on the GPU. Sends never block the schedule; a receive completes
/// (on the host, or on the device's stream) once its message arrived.
class PipelineChannels {
public:
  virtual ~PipelineChannels() = default;
  /// Sends a copy of `count` elements at `data` to stage `toStage`, keyed
  /// (microBatch, tag); what runs after (on the host, or later on the
  /// device's stream) may overwrite `data`.
  virtual Status send(int64_t toStage, int64_t microBatch, uint32_t tag, const void *data,
                      int64_t count) = 0;
  /// Receives the message (microBatch, tag) from stage `fromStage` into
  /// `out`; an error when a transfer failed, the peer stopped without
  /// sending it, or its size is not `count`.
  virtual Status receive(int64_t fromStage, int64_t microBatch, uint32_t tag, void *out,
                         int64_t count) = 0;
  /// The end of a step: every send of the step has been handed over.
  virtual Status flush() = 0;
  /// Time the host spent in receive() so far (what the measured timeline
  /// draws as waiting); zero where receives wait on the device instead.
  virtual std::chrono::steady_clock::duration receiveTime() const { return {}; }
};

/// The CPU backend's channels: a sender and a receiver thread per other
/// stage over the two-rank groups RankContext::p2p, so that messages arrive
/// in any order and wait in a mailbox.
class HostPipelineChannels final : public PipelineChannels {
public:
  /// Starts a sender and a receiver thread per other pipeline stage.
  explicit HostPipelineChannels(const RankContext &rank);
  /// Stops the threads (every rank must reach this: the peers' receivers
  /// wait for the stop message).
  ~HostPipelineChannels() override;

  /// Queues a copy of `count` floats at `data`.
  Status send(int64_t toStage, int64_t microBatch, uint32_t tag, const void *data,
              int64_t count) override;
  /// Waits for the message and copies its floats to `out`.
  Status receive(int64_t fromStage, int64_t microBatch, uint32_t tag, void *out,
                 int64_t count) override;
  /// Waits until every queued send has been delivered.
  Status flush() override;
  /// Read it from the thread that receives.
  std::chrono::steady_clock::duration receiveTime() const override { return receiveTime_; }

private:
  struct Message {
    int64_t microBatch = -1; // -1: stop
    uint32_t tag = 0;
    std::vector<float> data;
  };
  struct Outgoing {
    comm::Communicator *group = nullptr;
    std::deque<Message> queue;
    std::thread thread;
  };
  void sendLoop(Outgoing &out);
  void receiveLoop(int64_t fromStage, comm::Communicator *group);
  void fail(Status status);

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<int64_t, std::unique_ptr<Outgoing>> outgoing_; // by peer stage
  std::vector<std::thread> receivers_;
  std::map<std::tuple<int64_t, int64_t, uint32_t>, std::vector<float>> mailbox_;
  std::set<int64_t> stopped_; // stages whose stop message arrived
  int64_t inFlight_ = 0;
  Status failure_;
  std::chrono::steady_clock::duration receiveTime_{};
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_PIPELINECHANNELS_H
