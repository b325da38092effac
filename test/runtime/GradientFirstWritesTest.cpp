// plan::GradientFirstWrites: the main-gradient bytes a program's first
// micro-batch may write instead of adding to zeros, and what the backend
// must zero-fill before it.
#include "runtime/plan/GradientFirstWrites.h"

#include <gtest/gtest.h>

namespace mt::plan {
namespace {

using Ranges = std::vector<ByteRange>;

// The weight-gradient GEMMs of fresh gradients write them; the norm
// weights' gradients (added into), and bytes nobody writes, are zero-filled.
TEST(GradientFirstWrites, FreshGradientsAreWrittenTheRestZeroFilled) {
  GradientFirstWrites w;
  for (ByteRange r : {ByteRange{0, 100}, ByteRange{200, 300}}) {
    ASSERT_TRUE(w.untouched(r));
    w.wrote(r);
    w.touch(r);
  }
  w.touch({100, 108}); // a norm weight's gradient, added into
  EXPECT_EQ(w.unwritten(400), (Ranges{{100, 200}, {300, 400}}));
}

// Tied embeddings: the lm_head GEMM writes the table's gradient first; the
// embedding's scatter-add after it adds, and the range stays written.
// In the other order the scatter-add comes first: nothing writes the
// table, and all of it is zero-filled.
TEST(GradientFirstWrites, TheFirstAccessDecides) {
  GradientFirstWrites gemmFirst;
  gemmFirst.wrote({0, 64});
  gemmFirst.touch({0, 64});
  EXPECT_FALSE(gemmFirst.untouched({0, 64})); // the scatter-add must add
  gemmFirst.touch({0, 64});
  EXPECT_EQ(gemmFirst.unwritten(64), Ranges{});

  GradientFirstWrites addFirst;
  addFirst.touch({0, 64});
  EXPECT_FALSE(addFirst.untouched({0, 64})); // the GEMM must add
  EXPECT_EQ(addFirst.unwritten(64), (Ranges{{0, 64}}));
}

// A read before any write (an instruction that reads and writes the same
// gradient marks its input first) keeps the range out of the writes.
TEST(GradientFirstWrites, AReadFirstMeansAdd) {
  GradientFirstWrites w;
  w.touch({32, 48});
  EXPECT_FALSE(w.untouched({32, 48}));
  EXPECT_TRUE(w.untouched({48, 64}));
  EXPECT_TRUE(w.untouched({0, 32}));
}

// Views: the fused qkv weight's gradient spans the q, k and v gradients;
// one of its parts touched earlier makes the whole view add, and a view
// written first covers every part.
TEST(GradientFirstWrites, ViewsOverlapTheirParts) {
  GradientFirstWrites partFirst;
  partFirst.touch({40, 50}); // k's gradient, read
  EXPECT_FALSE(partFirst.untouched({0, 100})); // q | k | v
  EXPECT_EQ(partFirst.unwritten(100), (Ranges{{0, 100}}));

  GradientFirstWrites viewFirst;
  viewFirst.wrote({0, 100});
  viewFirst.touch({0, 100});
  EXPECT_FALSE(viewFirst.untouched({40, 50}));
  EXPECT_EQ(viewFirst.unwritten(100), Ranges{});
}

// Written ranges in any order, adjacent or not, leave the gaps between
// them and the arena's tail; clear() starts a program afresh.
TEST(GradientFirstWrites, UnwrittenIsTheSortedComplement) {
  GradientFirstWrites w;
  for (ByteRange r : {ByteRange{300, 400}, ByteRange{0, 50}, ByteRange{50, 120}})
    w.wrote(r);
  EXPECT_EQ(w.unwritten(500), (Ranges{{120, 300}, {400, 500}}));
  EXPECT_EQ(w.unwritten(400), (Ranges{{120, 300}}));
  w.clear();
  EXPECT_TRUE(w.untouched({0, 500}));
  EXPECT_EQ(w.unwritten(500), (Ranges{{0, 500}}));
  EXPECT_EQ(w.unwritten(0), Ranges{});
}

} // namespace
} // namespace mt::plan
