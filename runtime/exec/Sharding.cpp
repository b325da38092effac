// Segments of a parameter's slice within its full tensor.
#include "runtime/exec/Sharding.h"

#include <cstring>

namespace mt::exec {

uint64_t fullElements(const plan::Parameter &param) {
  uint64_t n = 1;
  for (int64_t d : param.shape())
    n *= uint64_t(d);
  return n;
}

void forEachSegment(const plan::Parameter &param, int64_t shard,
                    const std::function<void(uint64_t, uint64_t, uint64_t)> &segment) {
  if (!param.sharded()) {
    segment(0, 0, fullElements(param));
    return;
  }
  int dim = param.shard_dim();
  uint64_t outer = 1, inner = 1;
  for (int i = 0; i < param.shape_size(); ++i) {
    if (i < dim)
      outer *= uint64_t(param.shape(i));
    else if (i > dim)
      inner *= uint64_t(param.shape(i));
  }
  uint64_t full = uint64_t(param.shape(dim)), local = full / uint64_t(param.shards());
  uint64_t run = local * inner;
  for (uint64_t o = 0; o < outer; ++o)
    segment(o * run, (o * full + uint64_t(shard) * local) * inner, run);
}

void sliceFull(const plan::Parameter &param, int64_t shard, const float *full, float *local) {
  forEachSegment(param, shard, [&](uint64_t l, uint64_t g, uint64_t n) {
    std::memcpy(local + l, full + g, n * sizeof(float));
  });
}

void placeSlice(const plan::Parameter &param, int64_t shard, const float *local, float *full) {
  forEachSegment(param, shard, [&](uint64_t l, uint64_t g, uint64_t n) {
    std::memcpy(full + g, local + l, n * sizeof(float));
  });
}

} // namespace mt::exec
