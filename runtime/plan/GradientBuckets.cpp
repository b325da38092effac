// The buckets of the overlapped data-parallel gradient reduction.
#include "runtime/plan/GradientBuckets.h"

#include <algorithm>
#include <numeric>

namespace mt {

size_t defaultBucketElements(int64_t dataParallel) {
  return std::max<size_t>(40'000'000, 1'000'000 * size_t(std::max<int64_t>(dataParallel, 1)));
}

std::vector<std::vector<size_t>> formGradientBuckets(const std::vector<GradientToReduce> &gradients,
                                                     size_t bucketElements) {
  bucketElements = std::max<size_t>(bucketElements, 1);
  std::vector<size_t> order(gradients.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return gradients[a].lastWriter < gradients[b].lastWriter;
  });
  std::vector<std::vector<size_t>> buckets;
  size_t inOpen = 0;
  bool open = false;
  for (size_t i : order) {
    const size_t n = gradients[i].elements;
    const bool alone = n >= bucketElements;
    if (!open || alone || inOpen >= bucketElements) {
      buckets.emplace_back();
      inOpen = 0;
    }
    buckets.back().push_back(i);
    inOpen += n;
    open = !alone; // a bucket of its own takes no more
  }
  return buckets;
}

} // namespace mt
