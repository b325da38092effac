// The shape of split_qkv and concat_qkv instructions (Megatron-Core's
// linear_qkv output, [rows, q_dim + 2 kv_dim]) and of their rotary forms
// (split_qkv_rotary, rotary_concat_qkv), decoded once for both backends.
#ifndef MT_RUNTIME_KERNELS_QKV_H
#define MT_RUNTIME_KERNELS_QKV_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <string>

namespace mt::plan {
class Attrs;
}

namespace mt::kernels {

struct QkvShape {
  int64_t rows, qDim, kvDim;
};

/// Attributes rows, q_dim and kv_dim of the instruction `op`; an error
/// naming `op` and the values when the
/// packed width `dim` is not q_dim + 2 kv_dim (the buffers the plan loader
/// checks would then not be the ones the kernel reads).
Expected<QkvShape> qkvShapeOf(const std::string &op, const plan::Attrs &a);

/// split_qkv_rotary / rotary_concat_qkv: [batch, seq] rows of the packed
/// [q | k | v], q of `heads` and k, v of `kvHeads` heads of `headDim`.
struct RotaryQkvShape {
  int64_t batch, seq, heads, kvHeads, headDim;
  int64_t rows() const { return batch * seq; }
  QkvShape packed() const { return {rows(), heads * headDim, kvHeads * headDim}; }
};

/// Attributes batch, seq, heads, kv_heads, head_dim of the instruction
/// `op`; an error naming `op` and the values when the packed width `dim` is
/// not (heads + 2 kv_heads) x head_dim.
Expected<RotaryQkvShape> rotaryQkvShapeOf(const std::string &op, const plan::Attrs &a);

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_QKV_H
