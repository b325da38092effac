// The distributed optimizer's buckets (mt.buckets of @optimizer_step, made
// by mt-build-optimizer) laid out for mt-fuse's packed weights.
#ifndef MT_PASSES_FUSION_BUCKETPACKING_H
#define MT_PASSES_FUSION_BUCKETPACKING_H

#include "dialects/mt/MtDialect.h"

#include "mlir/IR/BuiltinOps.h"

namespace mt {

/// Places the weights of sibling `linears` (and, apart, their biases) back
/// to back, in the linears' order, in the bucket of @optimizer_step's
/// mt.buckets that holds each group, so that mt.concat_rows of them is a
/// view of the bucket as it is of the PARAMETERS arena without buckets
/// (Megatron-Core's linear_qkv and linear_fc1 are one weight each). The
/// group moves as one to where its earliest member was; the other members
/// keep their order, offsets follow (kBucketMemberAlignment), and the
/// bucket arguments' mt.param names its new first member. True when there
/// are no buckets or when each group is placed; false, changing nothing,
/// when a group spans two buckets, a member but the last is not a multiple
/// of the alignment (padding would part them), or the new layout would not
/// fit the bucket's size.
bool packInBuckets(mlir::ModuleOp module, llvm::ArrayRef<LinearOp> linears);

} // namespace mt

#endif // MT_PASSES_FUSION_BUCKETPACKING_H
