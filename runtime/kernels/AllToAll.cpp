// all_to_all's pack and unpack copies (runtime/kernels/AllToAll.h).
#include "runtime/kernels/AllToAll.h"

#include "runtime/kernels/ContextParallel.h"
#include "runtime/plan/OpRegistry.h"

#include <string>

namespace mt::kernels {
namespace {

/// Rank `part`'s ranges along a dimension of `size` cut into `parts`: one
/// block, or with load balancing chunks part and 2·parts-1-part (the
/// places of contextParallelPosition). Each: {start in the whole dimension,
/// start in the piece, length}.
struct Range {
  int64_t whole, piece, length;
};
std::vector<Range> rangesOf(int64_t part, int64_t size, int64_t parts, bool balanced) {
  const int64_t local = size / parts;
  if (!balanced)
    return {{part * local, 0, local}};
  const int64_t chunk = local / 2;
  return {{contextParallelPosition(0, local, part, parts), 0, chunk},
          {contextParallelPosition(chunk, local, part, parts), chunk, chunk}};
}

} // namespace

Expected<AllToAllLayout> allToAllLayoutOf(const plan::Attrs &a) {
  AllToAllLayout l{a.i("parts"),       a.i("split_outer"),  a.i("split_size"), a.i("split_inner"),
                   a.i("concat_outer"), a.i("concat_size"), a.i("concat_inner")};
  const std::string balanced = a.s("load_balanced");
  if (balanced != "" && balanced != "none" && balanced != "split" && balanced != "concat")
    return Status::error("all_to_all: load_balanced '" + balanced +
                         "' is not none, split or concat");
  l.balancedSplit = balanced == "split", l.balancedConcat = balanced == "concat";
  if (l.parts < 1)
    return Status::error("all_to_all: parts is " + std::to_string(l.parts) + ", expected >= 1");
  auto divides = [&](const char *name, int64_t size, bool chunked) -> Status {
    const int64_t by = chunked ? 2 * l.parts : l.parts;
    if (size % by != 0)
      return Status::error("all_to_all: " + std::string(name) + " (" + std::to_string(size) +
                           ") is not divisible by " + (chunked ? "2 x " : "") + "parts (" +
                           std::to_string(l.parts) + ")");
    return Status::ok();
  };
  if (Status s = divides("split_size", l.splitSize, l.balancedSplit); !s)
    return s;
  if (Status s = divides("concat_size", l.concatSize, l.balancedConcat); !s)
    return s;
  if (l.pieceElements() != l.concatOuter * (l.concatSize / l.parts) * l.concatInner)
    return Status::error("all_to_all: a piece of the input (" + std::to_string(l.pieceElements()) +
                         " elements) and of the result (" +
                         std::to_string(l.concatOuter * (l.concatSize / l.parts) * l.concatInner) +
                         ") differ");
  return l;
}

std::vector<StridedCopy> allToAllPack(const AllToAllLayout &l) {
  std::vector<StridedCopy> copies;
  const int64_t local = l.splitSize / l.parts;
  for (int64_t q = 0; q < l.parts; ++q)
    for (Range r : rangesOf(q, l.splitSize, l.parts, l.balancedSplit))
      copies.push_back({r.whole * l.splitInner, l.splitSize * l.splitInner,
                        q * l.pieceElements() + r.piece * l.splitInner, local * l.splitInner,
                        r.length * l.splitInner, l.splitOuter});
  return copies;
}

std::vector<StridedCopy> allToAllUnpack(const AllToAllLayout &l) {
  std::vector<StridedCopy> copies;
  const int64_t local = l.concatSize / l.parts;
  for (int64_t p = 0; p < l.parts; ++p)
    for (Range r : rangesOf(p, l.concatSize, l.parts, l.balancedConcat))
      copies.push_back({p * l.pieceElements() + r.piece * l.concatInner, local * l.concatInner,
                        r.whole * l.concatInner, l.concatSize * l.concatInner,
                        r.length * l.concatInner, l.concatOuter});
  return copies;
}

Expected<std::vector<StridedCopy>> allGatherUnpack(int64_t outer, int64_t run, int64_t parts,
                                                   bool loadBalanced) {
  if (parts < 1)
    return Status::error("all_gather: parts is " + std::to_string(parts) + ", expected >= 1");
  if (loadBalanced && run % 2 != 0)
    return Status::error("all_gather load_balanced: run (" + std::to_string(run) +
                         ") is not even (two chunks per rank)");
  const AllToAllLayout gathered{parts, outer, run * parts, 1, outer, run * parts, 1, false,
                                loadBalanced};
  return allToAllUnpack(gathered);
}

} // namespace mt::kernels
