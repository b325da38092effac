// Sender and receiver threads over two-rank groups along the pp axis.
#include "runtime/exec/PipelineChannels.h"

namespace mt::exec {
namespace {

// A header of 4 floats: micro-batch, tag and count (in two exact halves:
// floats hold integers below 2^24 exactly).
constexpr int kHeader = 4;
constexpr int64_t kHalf = int64_t(1) << 20;

void encode(float (&h)[kHeader], int64_t microBatch, uint32_t tag, int64_t count) {
  h[0] = float(microBatch);
  h[1] = float(tag);
  h[2] = float(count / kHalf);
  h[3] = float(count % kHalf);
}

} // namespace

HostPipelineChannels::HostPipelineChannels(const RankContext &rank) {
  int64_t stages = rank.axisSize("pp"), self = rank.coordinate("pp");
  for (int64_t peer = 0; peer < stages; ++peer) {
    if (peer == self)
      continue;
    auto out = std::make_unique<Outgoing>();
    out->group = rank.p2p(self, peer);
    Outgoing &ref = *out;
    outgoing_[peer] = std::move(out);
    ref.thread = std::thread([this, &ref] { sendLoop(ref); });
    receivers_.emplace_back([this, peer, group = rank.p2p(peer, self)] {
      receiveLoop(peer, group);
    });
  }
}

HostPipelineChannels::~HostPipelineChannels() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto &[peer, out] : outgoing_)
      out->queue.push_back(Message{}); // stop
  }
  changed_.notify_all();
  for (auto &[peer, out] : outgoing_)
    out->thread.join();
  for (std::thread &t : receivers_)
    t.join();
}

void HostPipelineChannels::fail(Status status) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (failure_)
    failure_ = std::move(status);
  changed_.notify_all();
}

void HostPipelineChannels::sendLoop(Outgoing &out) {
  for (;;) {
    Message m;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return !out.queue.empty(); });
      m = std::move(out.queue.front());
      out.queue.pop_front();
    }
    float header[kHeader];
    encode(header, m.microBatch, m.tag, int64_t(m.data.size()));
    Status s = out.group->broadcastHost(header, kHeader, 0);
    if (s && m.microBatch >= 0 && !m.data.empty())
      s = out.group->broadcastHost(m.data.data(), m.data.size(), 0);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (m.microBatch >= 0)
        --inFlight_;
    }
    changed_.notify_all();
    if (!s) {
      fail(s);
      return;
    }
    if (m.microBatch < 0)
      return;
  }
}

void HostPipelineChannels::receiveLoop(int64_t fromStage, comm::Communicator *group) {
  for (;;) {
    float header[kHeader];
    if (Status s = group->broadcastHost(header, kHeader, 0); !s)
      return fail(s);
    int64_t microBatch = int64_t(header[0]);
    if (microBatch < 0) { // the peer stopped: what it has not sent never comes
      std::lock_guard<std::mutex> lock(mutex_);
      stopped_.insert(fromStage);
      changed_.notify_all();
      return;
    }
    auto tag = uint32_t(header[1]);
    int64_t count = int64_t(header[2]) * kHalf + int64_t(header[3]);
    std::vector<float> data(static_cast<size_t>(count));
    if (count > 0)
      if (Status s = group->broadcastHost(data.data(), data.size(), 0); !s)
        return fail(s);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      mailbox_[{fromStage, microBatch, tag}] = std::move(data);
    }
    changed_.notify_all();
  }
}

Status HostPipelineChannels::send(int64_t toStage, int64_t microBatch, uint32_t tag,
                                  const void *data, int64_t count) {
  auto it = outgoing_.find(toStage);
  if (it == outgoing_.end())
    return Status::error("no pipeline channel to stage " + std::to_string(toStage));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!failure_)
      return failure_;
    const auto *floats = static_cast<const float *>(data);
    it->second->queue.push_back(
        Message{microBatch, tag, std::vector<float>(floats, floats + count)});
    ++inFlight_;
  }
  changed_.notify_all();
  return Status::ok();
}

Status HostPipelineChannels::receive(int64_t fromStage, int64_t microBatch, uint32_t tag,
                                     void *out, int64_t count) {
  const auto entered = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  auto key = std::make_tuple(fromStage, microBatch, tag);
  changed_.wait(lock, [&] {
    return mailbox_.count(key) || !failure_ || stopped_.count(fromStage);
  });
  if (!failure_)
    return failure_;
  if (!mailbox_.count(key))
    return Status::error("pipeline stage " + std::to_string(fromStage) +
                         " stopped sending before micro-batch " + std::to_string(microBatch) +
                         ", buffer %" + std::to_string(tag) + " (its run ended or failed)");
  std::vector<float> &data = mailbox_[key];
  if (int64_t(data.size()) != count)
    return Status::error("pipeline message from stage " + std::to_string(fromStage) +
                         " has " + std::to_string(data.size()) + " values, expected " +
                         std::to_string(count));
  std::copy(data.begin(), data.end(), static_cast<float *>(out));
  mailbox_.erase(key);
  receiveTime_ += std::chrono::steady_clock::now() - entered;
  return Status::ok();
}

Status HostPipelineChannels::flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return inFlight_ == 0 || !failure_; });
  return failure_;
}

} // namespace mt::exec
