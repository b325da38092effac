// NcclWatchdog: the thread that stops a rank whose NCCL communication fails
// or makes no progress within --comm-timeout (a peer died, hangs, or waits
// elsewhere), instead of letting it wait forever in a kernel.
#ifndef MT_RUNTIME_CUDA_NCCLWATCHDOG_H
#define MT_RUNTIME_CUDA_NCCLWATCHDOG_H

#include "runtime/support/Status.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mt::cuda {

/// Watches the NCCL communicators of one rank, as PyTorch's ProcessGroupNCCL
/// watchdog does: each enqueued call is followed by a CUDA event on its
/// stream; a thread polls the events and ncclCommGetAsyncError. When an
/// asynchronous error shows, or a call has not completed `timeout` after
/// the last progress, it records a failure naming that call (the caller's
/// error context: rank, program, instruction; the group) and aborts every
/// communicator (ncclCommAbort), which ends the kernels the rank waits in.
/// From then on every call of every communicator returns that failure.
/// The communicators are aborted all at once (see abortAll); should NCCL
/// not finish aborting within `timeout` either, the watchdog prints the
/// failure and ends the process (exit status 1) rather than let it hang.
///
/// Communicators stay blocking (NCCL's default): the enqueue calls hold
/// hold(), and the watchdog aborts under it, so no handle is used while or
/// after it is freed; a thread stuck inside an NCCL call for more than a
/// second past the failure is aborted without it (that is how NCCL's
/// documentation ends a blocked call). Calls enqueued during CUDA graph
/// capture are not watched (their events would fire on each replay).
class NcclWatchdog {
public:
  /// Watches with `timeout` (> 0) on the current thread's GPU.
  explicit NcclWatchdog(std::chrono::milliseconds timeout);
  ~NcclWatchdog();
  NcclWatchdog(const NcclWatchdog &) = delete;
  NcclWatchdog &operator=(const NcclWatchdog &) = delete;

  std::chrono::milliseconds timeout() const { return timeout_; }
  /// Held by the thread that makes NCCL calls, around each (recursive).
  std::unique_lock<std::recursive_timed_mutex> hold() {
    return std::unique_lock<std::recursive_timed_mutex>(calls_);
  }

  /// Starts and ends watching a communicator. remove() is false when the
  /// watchdog aborted it (its handle is gone: neither destroy nor abort it).
  void add(ncclComm_t comm);
  bool remove(ncclComm_t comm);

  /// A call of `comm` enqueued on `stream`, described by `what` for the
  /// message. Inside ncclGroupStart/End (beginGroup/endGroup) the event is
  /// recorded at the end of the group, after the kernels NCCL launches then.
  Status enqueued(ncclComm_t comm, cudaStream_t stream, std::string what);
  void beginGroup() { ++groupDepth_; }
  Status endGroup();

  /// The failure, once there is one.
  std::optional<std::string> failure() const;

private:
  struct Pending {
    cudaEvent_t done;
    std::string what;
    std::chrono::steady_clock::time_point since;
  };
  struct Call {
    ncclComm_t comm;
    cudaStream_t stream;
    std::string what;
  };
  Status record(const Call &call);
  void run();
  /// One look at the events and the communicators; the failure, if any.
  std::optional<std::string> inspect();
  void abortAll(const std::string &failure);

  std::chrono::milliseconds timeout_;
  int device_ = 0;
  std::recursive_timed_mutex calls_;
  int groupDepth_ = 0;             // the calling thread's open groups
  std::vector<Call> inGroup_;      // calls waiting for the group's end
  mutable std::mutex state_;       // what follows
  std::condition_variable stop_;
  bool stopping_ = false;
  std::vector<ncclComm_t> comms_;
  std::vector<ncclComm_t> aborted_;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> spare_;
  std::chrono::steady_clock::time_point progress_; // the last call seen completing
  std::optional<std::string> failure_;
  std::thread thread_;
};

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_NCCLWATCHDOG_H
