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

void forEachSegment(const plan::Parameter &param, const SplitCoordinates &coordinates,
                    const std::function<void(uint64_t, uint64_t, uint64_t)> &segment) {
  const int rank = param.shape_size();
  // Per dimension: the number of slices and this slice's index among them.
  std::vector<uint64_t> parts(rank, 1), index(rank, 0);
  for (int s = 0; s < param.splits_size(); ++s) {
    const plan::Split &split = param.splits(s);
    index[split.dim()] = index[split.dim()] * uint64_t(split.parts()) + uint64_t(coordinates[s]);
    parts[split.dim()] *= uint64_t(split.parts());
  }
  int last = -1; // the innermost split dimension: those after it are whole
  for (int d = 0; d < rank; ++d)
    if (parts[d] > 1)
      last = d;
  if (last < 0) {
    segment(0, 0, fullElements(param));
    return;
  }
  std::vector<uint64_t> full(rank), local(rank);
  for (int d = 0; d < rank; ++d) {
    full[d] = uint64_t(param.shape(d));
    local[d] = full[d] / parts[d];
  }
  uint64_t inner = 1, outer = 1;
  for (int d = last + 1; d < rank; ++d)
    inner *= full[d];
  for (int d = 0; d < last; ++d)
    outer *= local[d];
  const uint64_t run = local[last] * inner;
  for (uint64_t o = 0; o < outer; ++o) {
    // The global row-major index of local element (o's digits, 0, ..., 0).
    uint64_t global = 0, rest = o;
    std::vector<uint64_t> digit(last);
    for (int d = last - 1; d >= 0; --d) {
      digit[d] = rest % local[d];
      rest /= local[d];
    }
    for (int d = 0; d < last; ++d)
      global = global * full[d] + index[d] * local[d] + digit[d];
    global = global * full[last] + index[last] * local[last];
    segment(o * run, global * inner, run);
  }
}

SplitCoordinates coordinatesOfSlice(const plan::Parameter &param, int64_t index) {
  SplitCoordinates coordinates;
  for (const plan::Split &split : param.splits()) {
    coordinates.push_back(index % split.parts());
    index /= split.parts();
  }
  return coordinates;
}

void sliceFull(const plan::Parameter &param, const SplitCoordinates &coordinates,
               const float *full, float *local) {
  forEachSegment(param, coordinates, [&](uint64_t l, uint64_t g, uint64_t n) {
    std::memcpy(local + l, full + g, n * sizeof(float));
  });
}

void placeSlice(const plan::Parameter &param, const SplitCoordinates &coordinates,
                const float *local, float *full) {
  forEachSegment(param, coordinates, [&](uint64_t l, uint64_t g, uint64_t n) {
    std::memcpy(full + g, local + l, n * sizeof(float));
  });
}

} // namespace mt::exec
