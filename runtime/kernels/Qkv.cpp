// The split_qkv / concat_qkv shape from a plan instruction.
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

} // namespace mt::kernels
