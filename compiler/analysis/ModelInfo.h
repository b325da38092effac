// What a model module says about itself: its dimensions (for validating a
// parallel layout) and its size and FLOPs (as docs/FLOPS.md defines them).
#ifndef MT_COMPILER_ANALYSIS_MODELINFO_H
#define MT_COMPILER_ANALYSIS_MODELINFO_H

#include "compiler/config/ParallelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mt {

/// The training entry point `func.func @forward`, or an error on the module.
mlir::FailureOr<mlir::func::FuncOp> forwardFunction(mlir::ModuleOp module);

/// Refuses (at the op) a tensor of more than 2^60 elements: its byte size
/// or the offsets after it would overflow int64. readModelDims and
/// computeModelStats check this first; every later size is a sum or a
/// fraction of these.
mlir::LogicalResult checkTensorSizes(mlir::ModuleOp module);

/// Layers, heads, experts and input shape, read from the ops; inconsistent
/// ops (two attention ops with different head counts, a gap in `mt.layer`)
/// are diagnosed at their location.
mlir::FailureOr<ModelDims> readModelDims(mlir::ModuleOp module);

struct ModelStats {
  int64_t parameters = 0;
  int64_t tokensPerMicroBatch = 0;
  /// Model FLOPs per token: matmuls of linears, router, experts (top-k of
  /// them) and causal attention; training = 3 x forward.
  double forwardFlopsPerToken = 0;
  double trainingFlopsPerToken() const { return 3 * forwardFlopsPerToken; }
};

mlir::FailureOr<ModelStats> computeModelStats(mlir::ModuleOp module);

/// Model FLOPs of one forward op over its (local) shapes, as
/// computeModelStats counts them (docs/FLOPS.md): matmuls of linears, the
/// router, the top-k experts and causal attention; 0 for any other op.
double forwardFlops(mlir::Operation *op);

} // namespace mt

#endif // MT_COMPILER_ANALYSIS_MODELINFO_H
