// `mtc compile --explain --gpu-memory SIZE`: the recompute options of a
// layout from none to full, each planned, and the cheapest that fits.
#ifndef MT_COMPILER_DRIVER_RECOMPUTEADVICE_H
#define MT_COMPILER_DRIVER_RECOMPUTEADVICE_H

#include "compiler/driver/Commands.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

namespace mt {

/// The recompute options worth trying on `dims` (none; selective sets of
/// core_attn, layernorm, mlp and, with experts, moe; full block with 1 to
/// all but one layer of a chunk; full uniform 1), in that order.
std::vector<RecomputeConfig> recomputeCandidates(const ModelDims &dims,
                                                 const ParallelConfig &parallel);

/// Plans `module` (left unchanged) on `parallel` with each candidate and
/// prints, per option, one rank's CUDA memory (plan arenas, as --explain
/// prints them, plus kCudaContextBytes) and the forward FLOPs it adds; then
/// the option with the fewest extra FLOPs whose memory is at most
/// `gpuBytes`; when none fits (and `parallel` has no optimizer_offload),
/// each option planned again with Trinity's optimizer_offload (fp32 master
/// weights and AdamW state in host memory) and the cheapest of those that
/// fits, with the host memory and the copies per step it adds, or that none
/// does. Fails (diagnostics on the module's
/// context) when a candidate's plan cannot be built.
mlir::LogicalResult adviseRecompute(mlir::ModuleOp module, const ModelDims &dims,
                                    const ParallelConfig &parallel,
                                    const CompileOptions &options, uint64_t gpuBytes,
                                    llvm::raw_ostream &os);

} // namespace mt

#endif // MT_COMPILER_DRIVER_RECOMPUTEADVICE_H
