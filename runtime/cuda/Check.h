// MT_CUDA_CHECK / MT_CUBLAS_CHECK: turn a failed CUDA runtime or cuBLAS(Lt)
// call into an mt::Status that names the call, where it was made and why it
// failed, prefixed by the calling thread's error context.
//
// A failure reads
//   [rank 3/8] flash_attn_bwd (instr 412): runtime/cuda/Attention.cu:88:
//   cudaLaunchKernel(...): cudaErrorIllegalAddress (an illegal memory access
//   was encountered)
// where the leading context is whatever the caller set with
// ScopedErrorContext (empty by default). The context is thread-local, so an
// executor thread sets it once per instruction and every launcher below it
// reports it without passing it down.
#ifndef MT_RUNTIME_CUDA_CHECK_H
#define MT_RUNTIME_CUDA_CHECK_H

#include "runtime/support/Status.h"

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <string>
#include <utility>

namespace mt::cuda {

namespace detail {
inline std::string &errorContextSlot() {
  thread_local std::string context;
  return context;
}

/// Repository-relative path of a source file (__FILE__ is absolute in CMake
/// builds): the part from the last "runtime/" or "test/" on.
inline const char *relativeSource(const char *file) {
  const char *best = file;
  for (const char *root : {"/runtime/", "/test/", "/tools/"}) {
    const char *at = std::strstr(file, root);
    if (at && at + 1 > best)
      best = at + 1;
  }
  return best;
}

inline Status failure(const char *what, const char *name, const char *text,
                      const char *file, int line) {
  std::string message = errorContextSlot();
  message += relativeSource(file);
  message += ':' + std::to_string(line) + ": " + what + ": " + name;
  if (text && *text)
    message += std::string(" (") + text + ")";
  return Status::error(std::move(message));
}
} // namespace detail

/// The current thread's context, e.g. "[rank 3/8] rmsnorm_bwd (instr 12): ".
inline const std::string &errorContext() { return detail::errorContextSlot(); }

/// Sets the thread's error context for its lifetime and restores the previous
/// one after; contexts nest by replacement (the caller composes the text).
class ScopedErrorContext {
public:
  explicit ScopedErrorContext(std::string context)
      : saved_(std::exchange(detail::errorContextSlot(), std::move(context))) {}
  ~ScopedErrorContext() { detail::errorContextSlot() = std::move(saved_); }
  ScopedErrorContext(const ScopedErrorContext &) = delete;
  ScopedErrorContext &operator=(const ScopedErrorContext &) = delete;

private:
  std::string saved_;
};

inline Status cudaFailure(cudaError_t error, const char *call, const char *file,
                          int line) {
  return detail::failure(call, cudaGetErrorName(error),
                         cudaGetErrorString(error), file, line);
}

inline Status cublasFailure(cublasStatus_t status, const char *call,
                            const char *file, int line) {
  return detail::failure(call, cublasGetStatusName(status),
                         cublasGetStatusString(status), file, line);
}

} // namespace mt::cuda

/// Returns an error Status from the enclosing function when `call` (a
/// cudaError_t expression) fails.
#define MT_CUDA_CHECK(call)                                                    \
  do {                                                                         \
    const cudaError_t mtCudaError_ = (call);                                   \
    if (mtCudaError_ != cudaSuccess)                                           \
      return ::mt::cuda::cudaFailure(mtCudaError_, #call, __FILE__, __LINE__); \
  } while (0)

/// After a <<<...>>> launch: launch-configuration errors surface here;
/// faults during execution surface at the next synchronizing call.
#define MT_CUDA_CHECK_LAUNCH(kernelName)                                       \
  do {                                                                         \
    const cudaError_t mtCudaError_ = cudaGetLastError();                       \
    if (mtCudaError_ != cudaSuccess)                                           \
      return ::mt::cuda::cudaFailure(mtCudaError_, "launch " kernelName,       \
                                     __FILE__, __LINE__);                      \
  } while (0)

/// Same for a cublasStatus_t expression (cuBLAS and cuBLASLt).
#define MT_CUBLAS_CHECK(call)                                                  \
  do {                                                                         \
    const cublasStatus_t mtCublasStatus_ = (call);                             \
    if (mtCublasStatus_ != CUBLAS_STATUS_SUCCESS)                              \
      return ::mt::cuda::cublasFailure(mtCublasStatus_, #call, __FILE__,       \
                                       __LINE__);                              \
  } while (0)

/// Propagates a failed mt::Status from a helper.
#define MT_CUDA_RETURN_IF_ERROR(expr)                                          \
  do {                                                                         \
    ::mt::Status mtStatus_ = (expr);                                           \
    if (!mtStatus_.isOk())                                                     \
      return mtStatus_;                                                        \
  } while (0)

#endif // MT_RUNTIME_CUDA_CHECK_H
