// Element-wise and gather/scatter kernels on bf16 activations: SwiGLU,
// rotary position embedding, token embedding, fp32<->bf16 casts and a
// counter-based uniform fill. CPU references: runtime/cpu/Dense.h and
// runtime/cpu/Attention.h.
//
// Gradients: bf16 activation gradients are WRITTEN (each has one producer
// in the step; sums of several are fused into the producer, e.g. the
// dresidual input of rmsnormBackward); fp32 parameter gradients are ADDED.
#ifndef MT_RUNTIME_CUDA_ELEMENTWISE_H
#define MT_RUNTIME_CUDA_ELEMENTWISE_H

#include "runtime/kernels/Rotary.h"
#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mt::cuda {

using bf16 = __nv_bfloat16;

/// y = silu(gate) * up over n elements.
Status swigluForward(const bf16 *gate, const bf16 *up, bf16 *y, int64_t n,
                     cudaStream_t stream);
/// dgate = dy * up * silu'(gate), dup = dy * silu(gate) (written).
Status swigluBackward(const bf16 *gate, const bf16 *up, const bf16 *dy,
                      bf16 *dgate, bf16 *dup, int64_t n, cudaStream_t stream);
/// The same over a packed x [rows, 2 dim], gate in the first dim columns of
/// each row and up in the last (the fused linear_fc1's output): y [rows,
/// dim]; backward writes dx [rows, 2 dim] = (dgate | dup) and, when `y` is
/// given, the forward's y again, the same bits (chunked_swiglu_recompute_grad).
Status chunkedSwigluForward(const bf16 *x, bf16 *y, int64_t rows, int64_t dim,
                            cudaStream_t stream);
Status chunkedSwigluBackward(const bf16 *x, const bf16 *dy, bf16 *dx, int64_t rows,
                             int64_t dim, cudaStream_t stream, bf16 *y = nullptr);

/// Megatron-Core's split of the linear_qkv output, as cpu::splitQkv: x
/// [rows, qDim + 2 kvDim] -> q [rows, qDim], k, v [rows, kvDim] (written);
/// concatQkv writes x from dq, dk, dv. Exact copies.
Status splitQkv(const bf16 *x, bf16 *q, bf16 *k, bf16 *v, int64_t rows, int64_t qDim,
                int64_t kvDim, cudaStream_t stream);
Status concatQkv(const bf16 *dq, const bf16 *dk, const bf16 *dv, bf16 *x, int64_t rows,
                 int64_t qDim, int64_t kvDim, cudaStream_t stream);

/// cos and sin of every (position, frequency) pair for positions
/// [0, maxSeq), computed on the host exactly as runtime/cpu/Attention.cpp
/// does (HF's fp32 inverse frequencies from kernels::rotaryInverseFrequencies,
/// the fp32 angle, cos/sin in fp64 rounded to fp32) and kept on the device:
/// the GPU and CPU rotate by bit-identical factors.
class RotaryTable {
public:
  static Expected<RotaryTable> create(const kernels::RotaryParams &params,
                                      int64_t maxSeq, int64_t headDim);
  RotaryTable(RotaryTable &&other) noexcept;
  RotaryTable &operator=(RotaryTable &&other) noexcept;
  RotaryTable(const RotaryTable &) = delete;
  RotaryTable &operator=(const RotaryTable &) = delete;
  ~RotaryTable();

  int64_t maxSeq() const { return maxSeq_; }
  int64_t headDim() const { return headDim_; }
  /// [maxSeq, headDim / 2] pairs (cos, sin) on the device.
  const float2 *cosSin() const { return cosSin_; }

private:
  RotaryTable() = default;
  float2 *cosSin_ = nullptr;
  int64_t maxSeq_ = 0, headDim_ = 0;
};

/// Where each token's row of a [batch, seq, width] operand lies: at
/// element token * stride + offset of its buffer. The default, stride 0,
/// is a dense operand (stride = width); the q part of a packed [q | k | v]
/// row of Q + 2K columns is {Q + 2K, 0}, its k part {Q + 2K, Q}.
struct RowSpan {
  int64_t stride = 0, offset = 0;
};

/// x, y [batch, seq, heads, headDim] (headDim of the table, seq <= its
/// maxSeq), each laid out as its RowSpan says; position of (b, s) is s, or
/// positionIds[b * seq + s] when given ([batch, seq] i32 on the device:
/// documents packed in a row, or the places of a context-parallel slice;
/// clamped to [0, maxSeq)). Rotate-half, as cpu::rotaryForward. y may
/// alias x (with the same span).
Status rotaryForward(const bf16 *x, bf16 *y, int64_t batch, int64_t seq,
                     int64_t heads, const RotaryTable &table,
                     cudaStream_t stream, const int32_t *positionIds = nullptr,
                     RowSpan xSpan = {}, RowSpan ySpan = {});
/// dx = rotation of dy by -angle (written); dx may alias dy.
Status rotaryBackward(const bf16 *dy, bf16 *dx, int64_t batch, int64_t seq,
                      int64_t heads, const RotaryTable &table,
                      cudaStream_t stream, const int32_t *positionIds = nullptr,
                      RowSpan dySpan = {}, RowSpan dxSpan = {});

/// The q, k and v parts of split_qkv_rotary or rotary_concat_qkv: each
/// part's source and destination with their rows' spans (q [tokens, heads,
/// headDim], k and v [tokens, kvHeads, headDim]; a default span is dense).
struct QkvRotaryParts {
  const bf16 *from[3];
  bf16 *to[3];
  RowSpan fromSpan[3], toSpan[3];
};

/// q and k rotated (backward: by -angle) from `from` into `to`, v copied,
/// as rotaryForward/rotaryBackward of q and k and copyRows of v compute
/// them (the same bits), in one launch where headDim is 16 x 1, 2, 4 or 8
/// and every operand allows 16-byte accesses, else in those three.
/// Positions as rotaryForward's.
Status rotaryQkv(QkvRotaryParts parts, int64_t batch, int64_t seq, int64_t heads,
                 int64_t kvHeads, const RotaryTable &table, bool backward,
                 cudaStream_t stream, const int32_t *positionIds = nullptr);

/// y's rows of `width` columns = x's (rows tokens), each laid out as its
/// RowSpan says: the v part of a packed qkv row out of it or into it.
Status copyRows(const bf16 *x, RowSpan xSpan, bf16 *y, RowSpan ySpan, int64_t rows,
                int64_t width, cudaStream_t stream);

/// y[t, :] = table[ids[t], :]; ids in [0, vocab) (validated by the loader).
/// Vocab-parallel: `table` holds rows [vocabStart, vocabStart + localVocab)
/// of the vocabulary, and tokens whose id is outside them get zero rows
/// (the sum over the ranks is the lookup).
Status embeddingForward(const int32_t *ids, const bf16 *table, bf16 *y,
                        int64_t tokens, int64_t hidden, cudaStream_t stream,
                        int64_t vocabStart = 0, int64_t localVocab = INT64_MAX);

/// Bytes of the workspace embeddingBackward needs (one int32 per row).
size_t embeddingBackwardWorkspaceBytes(int64_t vocab);
/// dtable[ids[t], :] += dy[t, :] into the fp32 main gradient.
/// Deterministic and sort-free: the first token of each id (found with an
/// order-independent atomicMin) owns the row and adds every occurrence's
/// dy in token order, exactly the CPU kernel's order, so the result is
/// bit-identical to cpu::embeddingBackward. Cost: one scan of the later ids
/// per distinct id (L2-resident), and an id's occurrences are summed by one
/// block, so a batch dominated by one id (e.g. padding) serializes on it.
/// Vocab-parallel: dtable holds rows [vocabStart, vocabStart + vocab); ids
/// outside them are another rank's and skipped. With `scale`, each dy row
/// is multiplied by it in fp32 before it is added (1: exactly as without):
/// the dp ranks' gathered rows added after a mean reduction
/// (runtime/cuda/NcclOverlap.cpp, the sparse embedding gradient).
Status embeddingBackward(const int32_t *ids, const bf16 *dy, float *dtable,
                         void *workspace, int64_t tokens, int64_t vocab,
                         int64_t hidden, cudaStream_t stream, int64_t vocabStart = 0,
                         float scale = 1.0f);

/// Round-to-nearest-even fp32 -> bf16 (NaN stays NaN, overflow -> inf).
Status castFloatToBf16(const float *in, bf16 *out, int64_t n,
                       cudaStream_t stream);
/// Exact bf16 -> fp32.
Status castBf16ToFloat(const bf16 *in, float *out, int64_t n,
                       cudaStream_t stream);

/// x[i] = lo + (hi - lo) * u(seed, i) with u a counter-based hash in [0, 1):
/// the same values on any launch shape (initialization, tests, benchmarks).
Status fillUniform(float *x, int64_t n, uint64_t seed, float lo, float hi,
                   cudaStream_t stream);
Status fillUniform(bf16 *x, int64_t n, uint64_t seed, float lo, float hi,
                   cudaStream_t stream);

} // namespace mt::cuda

#endif // MT_RUNTIME_CUDA_ELEMENTWISE_H
