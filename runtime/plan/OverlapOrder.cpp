// Weight-gradient GEMMs deferred past the collective that follows them.
#include "runtime/plan/OverlapOrder.h"

#include "runtime/plan/OpRegistry.h"

#include <numeric>

namespace mt::plan {
namespace {

template <typename A, typename B>
bool overlap(const A &a, const B &b, const std::function<ByteRange(uint32_t)> &range) {
  for (uint32_t x : a)
    for (uint32_t y : b) {
      const ByteRange rx = range(x), ry = range(y);
      if (rx.first < ry.second && ry.first < rx.second)
        return true;
    }
  return false;
}

} // namespace

std::vector<int> deferWeightGradients(const Program &program,
                                      const std::function<bool(int)> &overlapped,
                                      const std::function<ByteRange(uint32_t)> &range) {
  const int n = program.instructions_size();
  std::vector<int> order(size_t(n), 0);
  std::iota(order.begin(), order.end(), 0);
  bool any = false;
  for (int i = 0; i < n && !any; ++i)
    any = overlapped(i);
  if (!any)
    return order;
  order.clear();
  std::vector<int> deferred;
  // Whether instruction i must come after deferred weight gradient g.
  auto conflicts = [&](int g, int i) {
    const Instruction &G = program.instructions(g), &I = program.instructions(i);
    if (overlapped(i))
      return overlap(I.inputs(), G.outputs(), range);
    const std::vector<uint32_t> writes = buffersWritten(I); // its workspace too
    return overlap(writes, G.inputs(), range) || overlap(writes, G.outputs(), range) ||
           overlap(I.inputs(), G.outputs(), range);
  };
  for (int i = 0; i < n; ++i) {
    if (isOp(program.instructions(i), Op::linear_grad_weight)) {
      deferred.push_back(i);
      continue;
    }
    size_t first = 0; // the deferred ones up to the last that i conflicts with go first
    for (size_t k = 0; k < deferred.size(); ++k)
      if (conflicts(deferred[k], i))
        first = k + 1;
    order.insert(order.end(), deferred.begin(), deferred.begin() + std::ptrdiff_t(first));
    deferred.erase(deferred.begin(), deferred.begin() + std::ptrdiff_t(first));
    order.push_back(i);
    if (overlapped(i)) {
      order.insert(order.end(), deferred.begin(), deferred.end());
      deferred.clear();
    }
  }
  order.insert(order.end(), deferred.begin(), deferred.end());
  return order;
}

} // namespace mt::plan
