// mt-partition-tp: tensor parallelism by sharding propagation through
// @forward; each op's rule (PartitionableOpInterface) lives with the op in
// dialects/mt/MtPartitionRules.cpp.
#include "passes/Passes.h"

#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtPartition.h"

namespace mt {
#define GEN_PASS_DEF_PARTITIONTENSORPARALLEL
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

struct PartitionTensorParallelPass
    : public mt::impl::PartitionTensorParallelBase<PartitionTensorParallelPass> {
  using PartitionTensorParallelBase::PartitionTensorParallelBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto mesh = module.lookupSymbol<shard::GridOp>(kMeshName);
    std::optional<int64_t> tp = mesh ? axisSize(mesh, kTensorParallelAxis) : std::nullopt;
    if (!tp) {
      module.emitError() << "mt-partition-tp expects a mesh 'shard.grid @" << kMeshName
                         << "' with axis '" << kTensorParallelAxis << "' in '"
                         << MtDialect::kAxesAttrName << "'";
      return signalPassFailure();
    }
    if (*tp == 1)
      return;
    auto fn = module.lookupSymbol<func::FuncOp>("forward");
    if (!fn) {
      module.emitError() << "mt-partition-tp expects 'func.func @forward'";
      return signalPassFailure();
    }
    if (failed(Partitioner(module, *tp, sequenceParallel).run(fn)))
      return signalPassFailure();
  }
};

} // namespace
