// Causal grouped-query flash attention on bf16 activations (fp32 softmax
// and accumulation, tensor cores through mma.sync), or through cuDNN's
// fused attention where chosen (AttentionBackend). CPU reference:
// runtime/cpu/Attention.h (attentionForward, attentionBackward).
//
// Gradients dq, dk, dv are WRITTEN in bf16 (the runtime's convention for
// activation gradients, see runtime/cuda/Elementwise.h), not added as the
// CPU reference does. The backward is deterministic: every output element
// is summed in one fixed order by one thread, without atomics.
#ifndef MT_RUNTIME_CUDA_ATTENTION_H
#define MT_RUNTIME_CUDA_ATTENTION_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// As cpu::AttentionShape. headDim must be 64 or 128, heads a multiple of
/// kvHeads; scale multiplies q.k (usually 1/sqrt(headDim)).
struct AttentionShape {
  int64_t batch, seq, heads, kvHeads, headDim;
  float scale;
  /// Context parallelism, with cpSize > 1 (the mtc kernels alone): the
  /// queries are the [seq] slice (seq even) of the cp rank cpRank in the
  /// load-balanced layout (runtime/kernels/ContextParallel.h); the keys and
  /// values the all-gather of every rank's slice, [seq · cpSize] rank-major
  /// (kvSource < 0: cp_comm_type all_gather, cpu::attentionForward), or the
  /// slice of the rank kvSource (one block of ring attention, p2p:
  /// cpu::attentionBlockForward). Query i sees key j when j's place in the
  /// whole sequence is at most i's and, with positionIds (the queries'
  /// [batch, seq], documents packed in a row), at least i's place minus its
  /// position id (its document's start); a query that sees no key gets out
  /// 0 and lse -inf.
  int64_t cpRank = 0, cpSize = 1, kvSource = -1;
  bool contextParallel() const { return cpSize > 1; }
  /// Key and value rows per batch.
  int64_t kvSeq() const { return contextParallel() && kvSource < 0 ? seq * cpSize : seq; }
};

/// What ring attention's block backward (cpu::attentionBlockBackward) adds
/// to the plain backward: the gradient of the block's lse ([batch, heads,
/// seq] fp32; null: zero), and which gradients are added into (the plan sums
/// a query's gradient over the ring's steps) rather than written.
struct AttentionGradExtras {
  const float *dlse = nullptr;
  bool addDq = false, addDk = false, addDv = false;
};

/// Which implementation runs attention: the mma.sync kernels below (mtc),
/// cuDNN's fused flash attention (cudnn, runtime/cuda/CudnnAttention.h), or
/// auto: cuDNN where no position ids are given, it builds a plan for the
/// shape and that plan's workspace fits (AttentionOptions::deterministic),
/// else mtc; one log line per shape says which runs and why.
enum class AttentionBackend { Auto, Cudnn, Mtc };

/// "auto", "cudnn" or "mtc"; an error names `option` and the valid values.
Expected<AttentionBackend> parseAttentionBackend(std::string_view text, std::string_view option);
const char *attentionBackendName(AttentionBackend backend);

/// How attention is chosen and run.
struct AttentionOptions {
  AttentionBackend backend = AttentionBackend::Mtc;
  /// Backward summed in one fixed order. cuDNN's deterministic backward
  /// keeps dP in its workspace (2 bytes per query-key pair: 1 GiB at
  /// 4 x 2048 with 32 heads), so auto takes it only while that workspace is
  /// at most 1/16 of the device's memory; false lets cuDNN accumulate dQ
  /// with fp32 atomics instead (faster, small workspace, run-to-run bits
  /// may differ). The mtc kernels are deterministic either way.
  bool deterministic = true;
};

/// What attention runs on for one shape: a resolved backend (never Auto)
/// and the workspace bytes its forward and its backward need.
struct AttentionPlan {
  AttentionBackend backend = AttentionBackend::Mtc;
  size_t forwardBytes = 0, backwardBytes = 0;
  /// One workspace for both passes.
  size_t workspaceBytes() const { return std::max(forwardBytes, backwardBytes); }
};

/// Resolves options.backend for `shape` (documents: position ids are
/// given), building cuDNN's plans when they may be used; call outside CUDA
/// graph capture. `mtc compile --explain` predicts auto's choice and its
/// workspace by the same rule (plan::attentionWorkspace). Errors: cudnn
/// requested with documents, or cudnn requested and no plan builds (the
/// cuDNN call and status named).
Expected<AttentionPlan> planAttention(const AttentionShape &shape, bool documents,
                                      const AttentionOptions &options);

/// q, out [batch, seq, heads, headDim]; k, v [batch, kvSeq, kvHeads,
/// headDim]; all 16-byte aligned. Query head h uses kv head
/// h / (heads / kvHeads); position i attends to j <= i, and with
/// positionIds ([batch, seq] i32, device; documents packed in a row) to
/// j >= i - positionIds[i] as well (cpu::documentStart). lse [batch, heads,
/// seq] (fp32) receives the natural log-sum-exp of each query's scaled
/// scores, for the backward. `options` as planAttention resolves them; with
/// cudnn, `workspace` holds planAttention(...).forwardBytes.
Status attentionForward(const bf16 *q, const bf16 *k, const bf16 *v,
                        bf16 *out, float *lse, const AttentionShape &shape,
                        cudaStream_t stream, const int32_t *positionIds = nullptr,
                        const AttentionOptions &options = {}, void *workspace = nullptr);

/// Bytes of the workspace the mtc attentionBackward needs: fp32
/// rowsum(dout * out) of every query, [batch, heads, seq].
size_t attentionBackwardWorkspaceBytes(const AttentionShape &shape);

/// dq [batch, seq, heads, headDim], dk, dv [batch, seq, kvHeads, headDim]
/// are WRITTEN with the gradients of sum(dout * out), given the forward's
/// out and lse (and positionIds as the forward's); `workspace` holds
/// attentionBackwardWorkspaceBytes (mtc) or planAttention's bytes (cudnn).
/// mtc: two passes besides a small row-dot kernel: one owns a key block of
/// a kv head (dk, dv summed over the group's query heads), the other a query
/// block of a head (dq), so no output is shared by blocks.
Status attentionBackward(const bf16 *q, const bf16 *k, const bf16 *v,
                         const bf16 *out, const float *lse, const bf16 *dout,
                         bf16 *dq, bf16 *dk, bf16 *dv, void *workspace,
                         const AttentionShape &shape, cudaStream_t stream,
                         const int32_t *positionIds = nullptr,
                         const AttentionOptions &options = {});

/// Shape rules (heads a multiple of kvHeads, headDim 64 or 128, a positive
/// finite scale, sizes within the grid) and 16-byte alignment of
/// `pointers`; the error names `who` and the offending values.
Status validateAttention(const char *who, const AttentionShape &shape,
                         std::initializer_list<const void *> pointers);

/// The mtc kernels alone (attentionForward/Backward with backend mtc); the
/// backward with `extras` as AttentionGradExtras says.
Status mtcAttentionForward(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out, float *lse,
                           const AttentionShape &shape, cudaStream_t stream,
                           const int32_t *positionIds);
Status mtcAttentionBackward(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *out,
                            const float *lse, const bf16 *dout, bf16 *dq, bf16 *dk, bf16 *dv,
                            void *workspace, const AttentionShape &shape, cudaStream_t stream,
                            const int32_t *positionIds, const AttentionGradExtras &extras = {});

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_ATTENTION_H
