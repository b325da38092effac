// A context-parallel rank's tokens of a micro-batch.
#include "runtime/exec/ContextParallelBatch.h"

#include "runtime/kernels/ContextParallel.h"

#include <string>
#include <vector>

namespace mt::exec {

Status fillContextParallelBatch(const io::Dataset &dataset, const io::BatchLayout &layout,
                                const io::BatchCoord &coord, int64_t seq, ContextParallelRank cp,
                                std::span<int32_t> inputIds, std::span<int32_t> labels,
                                std::span<float> lossMask, std::span<int32_t> positionIds) {
  if (cp.size < 1 || seq % (2 * cp.size) != 0)
    return Status::error("context parallelism over " + std::to_string(cp.size) +
                         " ranks needs a sequence length divisible by 2 x " +
                         std::to_string(cp.size) + ", got " + std::to_string(seq));
  if (dataset.hasPositionIds() != !positionIds.empty())
    return Status::error(dataset.hasPositionIds()
                             ? "the data packs documents with position ids (neat_packing) but "
                               "the plan takes none: import the model with --neat-packing"
                             : "the plan takes position ids (neat_packing) but the data has none");
  const size_t rows = size_t(layout.microBatch), whole = rows * size_t(seq);
  std::vector<int32_t> ids(whole), lab(whole), pos(positionIds.empty() ? 0 : whole);
  std::vector<float> mask(whole);
  if (Status s = dataset.fillBatch(layout, coord, ids, lab, mask, pos); !s)
    return s;
  const int64_t local = seq / cp.size;
  if (inputIds.size() != rows * size_t(local) || labels.size() != inputIds.size() ||
      lossMask.size() != inputIds.size() ||
      (!positionIds.empty() && positionIds.size() != inputIds.size()))
    return Status::error("context-parallel batch buffers hold " +
                         std::to_string(inputIds.size()) + " elements, expected " +
                         std::to_string(rows * size_t(local)) + " = micro batch x " +
                         std::to_string(seq) + " / cp " + std::to_string(cp.size));
  for (size_t row = 0; row < rows; ++row)
    for (int64_t s = 0; s < local; ++s) {
      size_t from = row * size_t(seq) +
                    size_t(kernels::contextParallelPosition(s, local, cp.rank, cp.size));
      size_t to = row * size_t(local) + size_t(s);
      inputIds[to] = ids[from];
      labels[to] = lab[from];
      lossMask[to] = mask[from];
      if (!positionIds.empty())
        positionIds[to] = pos[from];
    }
  return Status::ok();
}

} // namespace mt::exec
