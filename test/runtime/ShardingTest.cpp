// A rank's slice of a parameter split over one or several mesh axes, against
// an element-by-element reference of where each element lives.
#include "runtime/exec/Sharding.h"

#include <gtest/gtest.h>

#include <numeric>
#include <utility>
#include <vector>

namespace mt::exec {
namespace {

plan::Parameter param(std::vector<int64_t> shape,
                      std::vector<std::tuple<int, const char *, int64_t>> splits) {
  plan::Parameter p;
  p.set_name("w");
  for (int64_t d : shape)
    p.add_shape(d);
  for (auto [dim, axis, parts] : splits) {
    plan::Split *s = p.add_splits();
    s->set_dim(dim);
    s->set_axis(axis);
    s->set_parts(parts);
  }
  return p;
}

/// The slice that `coordinates` hold, element by element: element (i_0..)
/// belongs to it when along each dimension i_d / local_d is the slice index
/// the coordinates of that dimension's splits give (major to minor).
std::vector<float> referenceSlice(const plan::Parameter &p, const SplitCoordinates &c,
                                  const std::vector<float> &full) {
  int rank = p.shape_size();
  std::vector<int64_t> parts(rank, 1), index(rank, 0);
  for (int s = 0; s < p.splits_size(); ++s) {
    index[p.splits(s).dim()] = index[p.splits(s).dim()] * p.splits(s).parts() + c[s];
    parts[p.splits(s).dim()] *= p.splits(s).parts();
  }
  std::vector<float> out;
  for (size_t e = 0; e < full.size(); ++e) {
    size_t rest = e;
    std::vector<int64_t> at(rank);
    for (int d = rank - 1; d >= 0; --d) {
      at[d] = int64_t(rest % size_t(p.shape(d)));
      rest /= size_t(p.shape(d));
    }
    bool mine = true;
    for (int d = 0; d < rank; ++d)
      mine = mine && at[d] / (p.shape(d) / parts[d]) == index[d];
    if (mine) // row-major order of the full tensor is row-major in the slice
      out.push_back(full[e]);
  }
  return out;
}

void expectSlicesTile(const plan::Parameter &p) {
  std::vector<float> full(fullElements(p));
  std::iota(full.begin(), full.end(), 0.0f);
  int64_t slices = 1;
  for (const plan::Split &s : p.splits())
    slices *= s.parts();
  std::vector<float> rebuilt(full.size(), -1.0f);
  for (int64_t i = 0; i < slices; ++i) {
    SplitCoordinates c = coordinatesOfSlice(p, i);
    std::vector<float> expected = referenceSlice(p, c, full);
    ASSERT_EQ(expected.size() * size_t(slices), full.size()) << "slice " << i;
    std::vector<float> local(expected.size());
    sliceFull(p, c, full.data(), local.data());
    EXPECT_EQ(local, expected) << "slice " << i;
    placeSlice(p, c, local.data(), rebuilt.data());
  }
  EXPECT_EQ(rebuilt, full);
}

TEST(Sharding, UnsplitIsTheWholeTensor) { expectSlicesTile(param({4, 6}, {})); }

TEST(Sharding, RowAndColumnParallelOnOneAxis) {
  expectSlicesTile(param({4, 6}, {{0, "tp", 2}}));
  expectSlicesTile(param({4, 6}, {{1, "tp", 2}}));
}

TEST(Sharding, TwoDimensionsOnTwoAxes) {
  expectSlicesTile(param({4, 6, 3}, {{0, "ep", 2}, {1, "etp", 3}}));
  expectSlicesTile(param({2, 4, 6}, {{1, "dp", 2}, {2, "tp", 3}}));
}

TEST(Sharding, OneDimensionOnTwoAxesMajorToMinor) {
  plan::Parameter p = param({8, 3}, {{0, "ep", 2}, {0, "etp", 2}});
  expectSlicesTile(p);
  // (ep 1, etp 0) holds rows 4..5: slice index 1 x 2 + 0 = 2 of 4.
  std::vector<float> full(24), local(6);
  std::iota(full.begin(), full.end(), 0.0f);
  sliceFull(p, {1, 0}, full.data(), local.data());
  EXPECT_EQ(local, (std::vector<float>{12, 13, 14, 15, 16, 17}));
}

TEST(Sharding, SliceNumberingVariesTheFirstSplitFastest) {
  plan::Parameter p = param({4, 6}, {{0, "dp", 2}, {1, "tp", 3}});
  EXPECT_EQ(coordinatesOfSlice(p, 0), (SplitCoordinates{0, 0}));
  EXPECT_EQ(coordinatesOfSlice(p, 1), (SplitCoordinates{1, 0}));
  EXPECT_EQ(coordinatesOfSlice(p, 4), (SplitCoordinates{0, 2}));
}

} // namespace
} // namespace mt::exec
