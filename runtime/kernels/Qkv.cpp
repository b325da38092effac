// The split_qkv / concat_qkv shapes (and their rotary forms') from a plan
// instruction.
#include "runtime/kernels/Qkv.h"

#include "runtime/plan/OpRegistry.h"


namespace mt::kernels {

Expected<QkvShape> qkvShapeOf(const std::string &op, const plan::Attrs &a) {
  QkvShape shape{a.i("rows"), a.i("q_dim"), a.i("kv_dim")};
  if (a.i("dim") != shape.qDim + 2 * shape.kvDim)
    return Status::error(op + ": dim (" + std::to_string(a.i("dim")) + ") is not q_dim (" +
                         std::to_string(shape.qDim) + ") + 2 x kv_dim (" +
                         std::to_string(shape.kvDim) + ")");
  return shape;
}

Expected<RotaryQkvShape> rotaryQkvShapeOf(const std::string &op, const plan::Attrs &a) {
  RotaryQkvShape shape{a.i("batch"), a.i("seq"), a.i("heads"), a.i("kv_heads"),
                       a.i("head_dim")};
  const int64_t dim = (shape.heads + 2 * shape.kvHeads) * shape.headDim;
  if (a.i("dim") != dim)
    return Status::error(op + ": dim (" + std::to_string(a.i("dim")) + ") is not (heads (" +
                         std::to_string(shape.heads) + ") + 2 x kv_heads (" +
                         std::to_string(shape.kvHeads) + ")) x head_dim (" +
                         std::to_string(shape.headDim) + ")");
  return shape;
}

} // namespace mt::kernels
