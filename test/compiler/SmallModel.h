// The model the parallel-layout tests resolve against: 8 layers, 8 heads
// over 4 kv heads, vocabulary 256, micro-batch 2 x seq 64.
#ifndef MT_TEST_COMPILER_SMALLMODEL_H
#define MT_TEST_COMPILER_SMALLMODEL_H

#include "compiler/config/ParallelConfig.h"

namespace mt::test {

inline ModelDims smallModel() {
  ModelDims m;
  m.numLayers = 8, m.numHeads = 8, m.numKvHeads = 4, m.vocabSize = 256;
  m.microBatch = 2, m.seq = 64;
  return m;
}

} // namespace mt::test

#endif // MT_TEST_COMPILER_SMALLMODEL_H
