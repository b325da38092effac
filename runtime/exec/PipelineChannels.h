// Point-to-point transfers between pipeline stages: activations forward,
// their gradients back. Sends never block the schedule: each peer has a
// sender thread; receives wait for the message of a (micro-batch, buffer).
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

class PipelineChannels {
public:
  /// Starts a sender and a receiver thread per other pipeline stage.
  explicit PipelineChannels(const RankContext &rank);
  /// Stops the threads (every rank must reach this: the peers' receivers
  /// wait for the stop message).
  ~PipelineChannels();

  /// Queues a copy of `data` for stage `toStage`, keyed (microBatch, tag).
  Status send(int64_t toStage, int64_t microBatch, uint32_t tag, const float *data,
              int64_t count);
  /// Waits for the message (microBatch, tag) from stage `fromStage`; an
  /// error when a transfer failed or that stage stopped without sending it.
  Status receive(int64_t fromStage, int64_t microBatch, uint32_t tag, float *out,
                 int64_t count);
  /// Waits until every queued send has been delivered.
  Status flush();
  /// Time spent in receive() so far (waiting for messages and copying them
  /// out): what the measured timeline draws as waiting rather than compute.
  /// Read it from the thread that receives.
  std::chrono::steady_clock::duration receiveTime() const { return receiveTime_; }

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
