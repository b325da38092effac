// Attention's choice between the mtc kernels (runtime/cuda/Attention.cu)
// and cuDNN's fused flash attention (runtime/cuda/CudnnAttention.h), per
// shape.
#include "runtime/cuda/Attention.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/CudnnAttention.h"

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

/// Says once per shape why auto runs the mtc kernels (stderr: the process's
/// log), so a fallback is never silent.
void logFallback(const AttentionShape &s, const std::string &why) {
  static std::mutex mutex;
  static std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>> said;
  std::lock_guard<std::mutex> lock(mutex);
  if (said.emplace(s.batch, s.seq, s.heads, s.kvHeads, s.headDim).second)
    std::fprintf(stderr, "mtc: attention (%s): using the mtc kernels: %s\n",
                 shapeText(s).c_str(), why.c_str());
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
                                      AttentionBackend requested) {
  const AttentionPlan mtc{AttentionBackend::Mtc, attentionBackwardWorkspaceBytes(shape)};
  if (requested == AttentionBackend::Mtc || shape.batch == 0 || shape.seq == 0)
    return mtc;
  if (documents) {
    if (requested == AttentionBackend::Cudnn)
      return Status::error(errorContext() + "attention backend cudnn cannot mask documents "
                           "packed in a row (position ids): use auto or mtc");
    return mtc; // the packed form is the mtc kernels' alone, by design: no log
  }
  auto bytes = cudnnAttentionPrepare(shape);
  if (bytes)
    return AttentionPlan{AttentionBackend::Cudnn, *bytes};
  if (requested == AttentionBackend::Cudnn)
    return bytes.status();
  logFallback(shape, "cuDNN built no plan: " + bytes.message());
  return mtc;
}

Status attentionForward(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out, float *lse,
                        const AttentionShape &shape, cudaStream_t stream,
                        const int32_t *positionIds, AttentionBackend backend,
                        void *workspace) {
  if (backend == AttentionBackend::Mtc)
    return mtcAttentionForward(q, k, v, out, lse, shape, stream, positionIds);
  MT_CUDA_RETURN_IF_ERROR(validateAttention("attentionForward", shape, {q, k, v, out}));
  auto plan = planAttention(shape, positionIds != nullptr, backend);
  if (!plan)
    return plan.status();
  if (plan->backend == AttentionBackend::Mtc)
    return mtcAttentionForward(q, k, v, out, lse, shape, stream, positionIds);
  return cudnnAttentionForward(q, k, v, out, lse, workspace, shape, stream);
}

Status attentionBackward(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *out,
                         const float *lse, const bf16 *dout, bf16 *dq, bf16 *dk, bf16 *dv,
                         void *workspace, const AttentionShape &shape, cudaStream_t stream,
                         const int32_t *positionIds, AttentionBackend backend) {
  auto mtc = [&] {
    return mtcAttentionBackward(q, k, v, out, lse, dout, dq, dk, dv, workspace, shape, stream,
                                positionIds);
  };
  if (backend == AttentionBackend::Mtc)
    return mtc();
  MT_CUDA_RETURN_IF_ERROR(
      validateAttention("attentionBackward", shape, {q, k, v, out, dout, dq, dk, dv}));
  auto plan = planAttention(shape, positionIds != nullptr, backend);
  if (!plan)
    return plan.status();
  if (plan->backend == AttentionBackend::Mtc)
    return mtc();
  return cudnnAttentionBackward(q, k, v, out, lse, dout, dq, dk, dv, workspace, shape, stream);
}

} // namespace mt::cuda
