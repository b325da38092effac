// ExpertLanes: the experts' weight gradients side by side on a few streams,
// each issued by its own host thread.
#include "runtime/cuda/ExpertLanes.h"

#include "runtime/cuda/Check.h"

namespace mt::cuda {

Expected<std::unique_ptr<ExpertLanes>> ExpertLanes::create(int lanes, GemmRunner::Choice choice,
                                                           size_t workspaceBytes) {
  std::unique_ptr<ExpertLanes> made(new ExpertLanes());
  MT_CUDA_CHECK(cudaGetDevice(&made->device_));
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&made->forked_, cudaEventDisableTiming));
  made->lanes_.resize(size_t(std::max(lanes, 1)));
  for (Lane &lane : made->lanes_) {
    MT_CUDA_CHECK(cudaStreamCreateWithFlags(&lane.stream, cudaStreamNonBlocking));
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&lane.done, cudaEventDisableTiming));
    auto runner = GemmRunner::create(workspaceBytes);
    if (!runner)
      return runner.status();
    lane.runner = std::make_unique<GemmRunner>(std::move(*runner));
    lane.runner->setChoice(choice);
  }
  for (size_t i = 0; i < made->lanes_.size(); ++i)
    made->lanes_[i].thread = std::thread(&ExpertLanes::serve, made.get(), i);
  return made;
}

// A destructor cannot report: failures while releasing are dropped.
ExpertLanes::~ExpertLanes() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_.notify_all();
  for (Lane &lane : lanes_) {
    if (lane.thread.joinable())
      lane.thread.join();
    lane.runner.reset();
    if (lane.stream)
      (void)cudaStreamDestroy(lane.stream);
    if (lane.done)
      (void)cudaEventDestroy(lane.done);
  }
  if (forked_)
    (void)cudaEventDestroy(forked_);
}

void ExpertLanes::serve(size_t index) {
  Lane &lane = lanes_[index];
  uint64_t seen = 0;
  const bool onDevice = cudaSetDevice(device_) == cudaSuccess; // a thread starts on device 0
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    work_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_)
      return;
    seen = generation_;
    lock.unlock(); // products_ stays unchanged until every lane is done
    Status s = onDevice ? Status::ok()
                        : Status::error("an expert lane could not select device " +
                                        std::to_string(device_));
    if (s && cudaStreamWaitEvent(lane.stream, forked_, 0) != cudaSuccess)
      s = Status::error("an expert lane could not wait for the fork's event");
    for (size_t i = index; s && i < products_.size(); i += lanes_.size()) {
      const WeightGradient &p = products_[i];
      s = lane.runner->linearBackwardWeight(p.x, p.dy, p.dw, p.tokens, p.in, p.out, lane.stream);
    }
    if (s && cudaEventRecord(lane.done, lane.stream) != cudaSuccess)
      s = Status::error("an expert lane could not record its event");
    lock.lock();
    if (!s && error_)
      error_ = std::move(s);
    if (--issuing_ == 0)
      finished_.notify_all();
  }
}

Status ExpertLanes::fork(const std::vector<WeightGradient> &products, cudaStream_t stream) {
  {
    // A fork whose join was skipped (its caller failed in between) must
    // be issued before the lanes take new work.
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return issuing_ == 0; });
  }
  MT_CUDA_CHECK(cudaEventRecord(forked_, stream));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    products_ = products;
    issuing_ = lanes_.size();
    error_ = Status::ok();
    ++generation_;
  }
  work_.notify_all();
  return Status::ok();
}

Status ExpertLanes::join(cudaStream_t stream) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return issuing_ == 0; });
    if (!error_)
      return error_;
  }
  for (const Lane &lane : lanes_)
    MT_CUDA_CHECK(cudaStreamWaitEvent(stream, lane.done, 0));
  return Status::ok();
}

} // namespace mt::cuda
