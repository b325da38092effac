// The data movement of an equal-block all_to_all (cp_comm_type a2a), as
// both backends do it: the input's pieces packed into rank-major send
// blocks, and the received blocks unpacked into the result, each as a few
// strided row copies (memcpy loops on the CPU, cudaMemcpy2DAsync on CUDA).
#ifndef MT_RUNTIME_KERNELS_ALLTOALL_H
#define MT_RUNTIME_KERNELS_ALLTOALL_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <vector>

namespace mt::plan {
class Attrs;
}

namespace mt::kernels {

/// An all_to_all instruction's layout: the input viewed as [splitOuter,
/// splitSize, splitInner] around its split dimension, the result as
/// [concatOuter, concatSize, concatInner] around its concat dimension, over
/// `parts` ranks; the load-balanced side (mt.all_to_all's
/// load_balanced_dim) in context parallelism's chunk order.
struct AllToAllLayout {
  int64_t parts, splitOuter, splitSize, splitInner, concatOuter, concatSize, concatInner;
  bool balancedSplit = false, balancedConcat = false;
  /// Elements of one rank's piece (of every send and receive block).
  int64_t pieceElements() const { return splitOuter * (splitSize / parts) * splitInner; }
};

/// The layout of an all_to_all instruction (attributes parts, split_outer,
/// split_size, split_inner, concat_outer, concat_size, concat_inner,
/// load_balanced). Errors, naming the attribute: parts < 1, a split or
/// concat size that parts (2 x parts where load-balanced) does not divide,
/// pieces of the two views that differ in size, load_balanced other than
/// none, split or concat.
Expected<AllToAllLayout> allToAllLayoutOf(const plan::Attrs &a);

/// `rows` rows of `width` elements from src + row·srcPitch to
/// dst + row·dstPitch (offsets in elements).
struct StridedCopy {
  int64_t src, srcPitch, dst, dstPitch, width, rows;
};

/// The copies that fill the send buffer (parts blocks of pieceElements(),
/// block q for rank q) from the input.
std::vector<StridedCopy> allToAllPack(const AllToAllLayout &l);
/// The copies that fill the result from the receive buffer (block r from
/// rank r).
std::vector<StridedCopy> allToAllUnpack(const AllToAllLayout &l);

/// The copies that put an all_gather's received blocks (rank-major [parts,
/// outer, run], block r from rank r) into its result [outer, parts·run]:
/// block r at columns [r·run, (r+1)·run), or with `loadBalanced` (packed
/// documents' position ids under cp_comm_type a2a) its halves at chunks r
/// and 2·parts-1-r of run / 2: allToAllUnpack of a concat dimension whose
/// every piece is a rank's whole block. Errors: loadBalanced with an odd
/// run, parts < 1.
Expected<std::vector<StridedCopy>> allGatherUnpack(int64_t outer, int64_t run, int64_t parts,
                                                   bool loadBalanced);

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_ALLTOALL_H
