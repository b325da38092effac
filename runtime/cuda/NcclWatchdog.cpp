// NcclWatchdog: events after each NCCL call, a thread that polls them and
// the communicators' asynchronous errors, and aborts on a failure.
#include "runtime/cuda/NcclWatchdog.h"

#include "runtime/comm/Store.h"
#include "runtime/cuda/Check.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

namespace mt::cuda {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

NcclWatchdog::NcclWatchdog(milliseconds timeout) : timeout_(timeout), progress_(Clock::now()) {
  (void)cudaGetDevice(&device_);
  thread_ = std::thread([this] { run(); });
}

NcclWatchdog::~NcclWatchdog() {
  {
    std::lock_guard<std::mutex> lock(state_);
    stopping_ = true;
  }
  stop_.notify_all();
  thread_.join();
  for (const Pending &p : pending_)
    (void)cudaEventDestroy(p.done);
  for (cudaEvent_t e : spare_)
    (void)cudaEventDestroy(e);
}

void NcclWatchdog::add(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(state_);
  comms_.push_back(comm);
}

bool NcclWatchdog::remove(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(state_);
  if (auto it = std::find(aborted_.begin(), aborted_.end(), comm); it != aborted_.end()) {
    aborted_.erase(it);
    return false;
  }
  comms_.erase(std::remove(comms_.begin(), comms_.end(), comm), comms_.end());
  return true;
}

std::optional<std::string> NcclWatchdog::failure() const {
  std::lock_guard<std::mutex> lock(state_);
  return failure_;
}

Status NcclWatchdog::enqueued(ncclComm_t comm, cudaStream_t stream, std::string what) {
  Call call{comm, stream, std::move(what)};
  if (groupDepth_ > 0) {
    inGroup_.push_back(std::move(call));
    return Status::ok();
  }
  return record(call);
}

// One event per stream of the group: its calls' kernels complete together.
Status NcclWatchdog::endGroup() {
  if (--groupDepth_ > 0)
    return Status::ok();
  std::map<cudaStream_t, std::pair<Call, int>> byStream;
  for (Call &call : inGroup_) {
    auto [it, first] = byStream.try_emplace(call.stream, std::move(call), 0);
    it->second.second += 1;
  }
  inGroup_.clear();
  Status status = Status::ok();
  for (auto &[stream, entry] : byStream) {
    auto &[call, count] = entry;
    if (count > 1)
      call.what += " (and " + std::to_string(count - 1) + " more calls of its NCCL group)";
    if (Status s = record(call); !s && status)
      status = s;
  }
  return status;
}

Status NcclWatchdog::record(const Call &call) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  MT_CUDA_CHECK(cudaStreamIsCapturing(call.stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    return Status::ok();
  cudaEvent_t event = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_);
    if (!spare_.empty()) {
      event = spare_.back();
      spare_.pop_back();
    }
  }
  if (!event)
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  if (cudaError_t e = cudaEventRecord(event, call.stream); e != cudaSuccess) {
    (void)cudaEventDestroy(event);
    MT_CUDA_CHECK(e);
  }
  std::lock_guard<std::mutex> lock(state_);
  pending_.push_back({event, call.what, Clock::now()});
  return Status::ok();
}

std::optional<std::string> NcclWatchdog::inspect() {
  std::lock_guard<std::mutex> lock(state_);
  const auto now = Clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    cudaError_t done = cudaEventQuery(it->done);
    if (done == cudaErrorNotReady) {
      ++it;
      continue;
    }
    if (done != cudaSuccess)
      return it->what + ": " + cudaGetErrorName(done) + " (" + cudaGetErrorString(done) +
             ") while this rank waited for it";
    progress_ = now;
    spare_.push_back(it->done);
    it = pending_.erase(it);
  }
  const std::string what =
      pending_.empty() ? std::string("an NCCL call") : pending_.front().what;
  for (ncclComm_t comm : comms_) {
    ncclResult_t error = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &error) == ncclSuccess && error != ncclSuccess &&
        error != ncclInProgress) {
      std::string last = ncclGetLastError(comm);
      return what + ": NCCL reported " + ncclGetErrorString(error) +
             (last.empty() ? "" : " (" + last + ")") + "; aborted this rank's NCCL communicators";
    }
  }
  if (!pending_.empty() && now - std::max(pending_.front().since, progress_) > timeout_)
    return what + ": no progress within " + comm::formatDuration(timeout_) +
           " (--comm-timeout): a peer rank died, hangs, or waits in another call; aborted "
           "this rank's NCCL communicators";
  return std::nullopt;
}

void NcclWatchdog::abortAll(const std::string &failure) {
  {
    std::lock_guard<std::mutex> lock(state_);
    failure_ = failure;
  }
  // Between calls: abort under the calling thread's hold. Stuck inside a
  // call (it never returns the hold): abort all the same, which ends it.
  std::unique_lock<std::recursive_timed_mutex> calls(calls_, std::defer_lock);
  (void)calls.try_lock_for(std::chrono::seconds(1));
  std::vector<ncclComm_t> comms;
  {
    std::lock_guard<std::mutex> lock(state_);
    comms.swap(comms_);
    aborted_ = comms;
  }
  // All at once, one thread each: an abort frees device memory, which may
  // wait for every kernel of the device, and a kernel of another
  // communicator of this rank spins until that one is aborted too. (On two
  // H200s, dp2 with the peer stopped, aborting 'world' and then 'dp' one
  // after the other did not return within 90 s; this is the likely cause.)
  auto left = std::make_shared<std::atomic<int>>(int(comms.size()));
  for (ncclComm_t comm : comms)
    std::thread([comm, left, device = device_] {
      (void)cudaSetDevice(device);
      (void)ncclCommAbort(comm);
      --*left;
    }).detach();
  const auto deadline = Clock::now() + timeout_;
  while (*left > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(10));
  if (*left > 0) {
    // The last resort (PyTorch's watchdog does the same): NCCL itself is
    // stuck, so no call of this rank can return the failure; a rank that
    // waited forever would hang its job.
    std::fprintf(stderr, "error: %s; NCCL did not finish aborting within %s: exiting\n",
                 failure.c_str(), comm::formatDuration(timeout_).c_str());
    std::_Exit(1);
  }
}

void NcclWatchdog::run() {
  (void)cudaSetDevice(device_);
  const milliseconds interval = std::clamp(timeout_ / 20, milliseconds(10), milliseconds(200));
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(state_);
      if (stop_.wait_for(lock, interval, [&] { return stopping_; }))
        return;
    }
    if (auto failure = inspect()) {
      abortAll(*failure);
      return;
    }
  }
}

} // namespace mt::cuda
