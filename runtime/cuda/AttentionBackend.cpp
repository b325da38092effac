// Attention's choice between the mtc kernels (runtime/cuda/Attention.cu)
// and cuDNN's fused flash attention (runtime/cuda/CudnnAttention.h), per
// shape.
#include "runtime/cuda/Attention.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/CudnnAttention.h"
#include "runtime/plan/AttentionWorkspace.h"

#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <tuple>

namespace mt::cuda {

namespace {

std::string shapeText(const AttentionShape &s) {
  return "batch " + std::to_string(s.batch) + ", seq " + std::to_string(s.seq) + ", heads " +
         std::to_string(s.heads) + "/" + std::to_string(s.kvHeads) + ", head_dim " +
         std::to_string(s.headDim);
}

/// Says once per shape and choice what auto or cudnn runs and why
/// (stderr: the process's log), so neither a fallback nor cuDNN's
/// workspace is silent.
void logOnce(const AttentionShape &s, const std::string &what) {
  static std::mutex mutex;
  static std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, std::string>> said;
  std::lock_guard<std::mutex> lock(mutex);
  if (said.emplace(s.batch, s.seq, s.heads, s.kvHeads, s.headDim, what).second)
    std::fprintf(stderr, "mtc: attention (%s): %s\n", shapeText(s).c_str(), what.c_str());
}
void logFallback(const AttentionShape &s, const std::string &why) {
  logOnce(s, "using the mtc kernels: " + why);
}

Status documentsError() {
  return Status::error(errorContext() + "attention backend cudnn cannot mask documents "
                       "packed in a row (position ids): use auto or mtc");
}

Status contextParallelError() {
  return Status::error(errorContext() + "attention backend cudnn cannot mask a context-"
                       "parallel slice (cp > 1): use auto or mtc");
}

/// The backend a launch runs: Auto resolved by planAttention (plans built
/// on first use); a forced backend as it is, so a launch inside CUDA graph
/// capture queries nothing beyond cuDNN's plan cache.
Expected<AttentionBackend> resolve(const AttentionShape &shape, const int32_t *positionIds,
                                   const AttentionOptions &options) {
  if (shape.batch == 0 || shape.seq == 0)
    return AttentionBackend::Mtc; // nothing to compute: the mtc launchers return at once
  if (options.backend == AttentionBackend::Cudnn && positionIds)
    return documentsError();
  if (options.backend == AttentionBackend::Cudnn && shape.contextParallel())
    return contextParallelError();
  if (options.backend != AttentionBackend::Auto)
    return options.backend;
  auto plan = planAttention(shape, positionIds != nullptr, options);
  if (!plan)
    return plan.status();
  return plan->backend;
}

} // namespace

Expected<AttentionBackend> parseAttentionBackend(std::string_view text,
                                                 std::string_view option) {
  if (text == "auto")
    return AttentionBackend::Auto;
  if (text == "cudnn")
    return AttentionBackend::Cudnn;
  if (text == "mtc")
    return AttentionBackend::Mtc;
  return Status::error(std::string(option) + "='" + std::string(text) +
                       "' is not an attention backend: use auto, cudnn or mtc");
}

const char *attentionBackendName(AttentionBackend backend) {
  switch (backend) {
  case AttentionBackend::Auto:
    return "auto";
  case AttentionBackend::Cudnn:
    return "cudnn";
  case AttentionBackend::Mtc:
    return "mtc";
  }
  return "?";
}

Expected<AttentionPlan> planAttention(const AttentionShape &shape, bool documents,
                                      const AttentionOptions &options) {
  const AttentionBackend requested = options.backend;
  const AttentionPlan mtc{AttentionBackend::Mtc, 0, attentionBackwardWorkspaceBytes(shape)};
  if (requested == AttentionBackend::Mtc || shape.batch == 0 || shape.seq == 0)
    return mtc;
  if (documents) {
    if (requested == AttentionBackend::Cudnn)
      return documentsError();
    return mtc; // the packed form is the mtc kernels' alone, by design: no log
  }
  if (shape.contextParallel()) { // so is the load-balanced cp layout's mask
    if (requested == AttentionBackend::Cudnn)
      return contextParallelError();
    return mtc;
  }
  auto bytes = cudnnAttentionPrepare(shape, options.deterministic);
  if (!bytes) {
    if (requested == AttentionBackend::Cudnn)
      return bytes.status();
    logFallback(shape, "cuDNN built no plan: " + bytes.message());
    return mtc;
  }
  const size_t most = std::max(bytes->forward, bytes->backward);
  if (requested == AttentionBackend::Auto) {
    size_t freeBytes = 0, totalBytes = 0;
    MT_CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
    if (!plan::cudnnWorkspaceFits(most, totalBytes)) { // as mtc compile --explain predicts
      logFallback(shape, "cuDNN needs " + std::to_string(most >> 20) +
                             " MiB of workspace, over 1/16 of the device's memory (its "
                             "deterministic backward, deterministic_mode, keeps dP whole; "
                             "without it dQ is accumulated with atomics in a small one)");
      return mtc;
    }
  }
  logOnce(shape, std::string("using cuDNN's fused attention (") +
                    (options.deterministic ? "deterministic" : "atomic dQ") + " backward), " +
                    std::to_string(most >> 20) + " MiB of workspace");
  return AttentionPlan{AttentionBackend::Cudnn, bytes->forward, bytes->backward};
}

Status attentionForward(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out, float *lse,
                        const AttentionShape &shape, cudaStream_t stream,
                        const int32_t *positionIds, const AttentionOptions &options,
                        void *workspace) {
  if (options.backend == AttentionBackend::Mtc)
    return mtcAttentionForward(q, k, v, out, lse, shape, stream, positionIds);
  MT_CUDA_RETURN_IF_ERROR(validateAttention("attentionForward", shape, {q, k, v, out}));
  auto backend = resolve(shape, positionIds, options);
  if (!backend)
    return backend.status();
  if (*backend == AttentionBackend::Mtc)
    return mtcAttentionForward(q, k, v, out, lse, shape, stream, positionIds);
  return cudnnAttentionForward(q, k, v, out, lse, workspace, shape, stream);
}

Status attentionBackward(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *out,
                         const float *lse, const bf16 *dout, bf16 *dq, bf16 *dk, bf16 *dv,
                         void *workspace, const AttentionShape &shape, cudaStream_t stream,
                         const int32_t *positionIds, const AttentionOptions &options) {
  auto mtc = [&] {
    return mtcAttentionBackward(q, k, v, out, lse, dout, dq, dk, dv, workspace, shape, stream,
                                positionIds);
  };
  if (options.backend == AttentionBackend::Mtc)
    return mtc();
  MT_CUDA_RETURN_IF_ERROR(
      validateAttention("attentionBackward", shape, {q, k, v, out, dout, dq, dk, dv}));
  auto backend = resolve(shape, positionIds, options);
  if (!backend)
    return backend.status();
  if (*backend == AttentionBackend::Mtc)
    return mtc();
  return cudnnAttentionBackward(q, k, v, out, lse, dout, dq, dk, dv, workspace, shape, stream,
                                options.deterministic);
}

} // namespace mt::cuda
