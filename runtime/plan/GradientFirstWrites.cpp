#include "runtime/plan/GradientFirstWrites.h"

#include <algorithm>

namespace mt::plan {

bool GradientFirstWrites::untouched(ByteRange r) const {
  return std::none_of(touched_.begin(), touched_.end(), [&](const ByteRange &o) {
    return o.first < r.second && r.first < o.second;
  });
}

std::vector<ByteRange> GradientFirstWrites::unwritten(uint64_t size) const {
  std::vector<ByteRange> written = written_, zero;
  std::sort(written.begin(), written.end());
  uint64_t at = 0;
  for (const auto &[begin, end] : written) {
    if (begin > at)
      zero.push_back({at, std::min(begin, size)});
    at = std::max(at, end);
    if (at >= size)
      break;
  }
  if (size > at)
    zero.push_back({at, size});
  return zero;
}

} // namespace mt::plan
