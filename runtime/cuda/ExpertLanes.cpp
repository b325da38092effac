// ExpertLanes: the experts' weight gradients side by side on a few streams.
#include "runtime/cuda/ExpertLanes.h"

#include "runtime/cuda/Check.h"

namespace mt::cuda {

Expected<std::unique_ptr<ExpertLanes>> ExpertLanes::create(int lanes, GemmRunner::Choice choice,
                                                           size_t workspaceBytes) {
  std::unique_ptr<ExpertLanes> made(new ExpertLanes());
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&made->forked_, cudaEventDisableTiming));
  for (int i = 0; i < std::max(lanes, 1); ++i) {
    cudaStream_t s = nullptr;
    MT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    made->streams_.push_back(s);
    cudaEvent_t e = nullptr;
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    made->done_.push_back(e);
    auto runner = GemmRunner::create(workspaceBytes);
    if (!runner)
      return runner.status();
    made->runners_.push_back(std::make_unique<GemmRunner>(std::move(*runner)));
    made->runners_.back()->setChoice(choice);
  }
  return made;
}

// A destructor cannot report: failures while releasing are dropped.
ExpertLanes::~ExpertLanes() {
  for (cudaStream_t s : streams_)
    (void)cudaStreamDestroy(s);
  for (cudaEvent_t e : done_)
    (void)cudaEventDestroy(e);
  if (forked_)
    (void)cudaEventDestroy(forked_);
}

Status ExpertLanes::fork(const std::vector<WeightGradient> &products, cudaStream_t stream) {
  MT_CUDA_CHECK(cudaEventRecord(forked_, stream));
  for (cudaStream_t s : streams_)
    MT_CUDA_CHECK(cudaStreamWaitEvent(s, forked_, 0));
  for (size_t i = 0; i < products.size(); ++i) {
    const WeightGradient &p = products[i];
    const size_t lane = i % streams_.size();
    MT_CUDA_RETURN_IF_ERROR(runners_[lane]->linearBackwardWeight(p.x, p.dy, p.dw, p.tokens, p.in,
                                                                 p.out, streams_[lane]));
  }
  for (size_t lane = 0; lane < streams_.size(); ++lane)
    MT_CUDA_CHECK(cudaEventRecord(done_[lane], streams_[lane]));
  return Status::ok();
}

Status ExpertLanes::join(cudaStream_t stream) {
  for (cudaEvent_t e : done_)
    MT_CUDA_CHECK(cudaStreamWaitEvent(stream, e, 0));
  return Status::ok();
}

} // namespace mt::cuda
