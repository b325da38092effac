// mt-recompute: activation recompute (Megatron-Core's recompute_granularity,
// recompute_method and recompute_modules) as a rewrite of @forward_backward.
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <map>

namespace mt {
#define GEN_PASS_DEF_RECOMPUTE
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

bool isBackward(Operation *op) { return op->hasAttr(MtDialect::kBackwardAttrName); }

int64_t layerOf(Operation *op) {
  auto layer = op->getAttrOfType<IntegerAttr>(MtDialect::kLayerAttrName);
  return layer ? layer.getInt() : -1;
}

/// Ops that only view or copy their one input for their readers (reshapes,
/// tp_copy, the sequence-parallel all-gather): they go with the region of
/// the value they read.
bool isView(Operation *op) { return isa<ReshapeOp, TPCopyOp, AllGatherOp>(op); }

/// A norm on the residual stream (Megatron's input_layernorm and
/// pre_mlp_layernorm): its input is also a term of a residual add; q/k
/// norms read per-head values that no add reads.
bool isResidualNorm(Operation *op) {
  if (!isa<RMSNormOp, LayerNormOp>(op))
    return false;
  return llvm::any_of(op->getOperand(0).getUsers(),
                      [](Operation *u) { return isa<AddOp>(u) && !isBackward(u); });
}

/// A set of forward ops recomputed as one unit.
struct Region {
  SmallVector<Operation *> ops;
  /// Megatron's CheckpointWithoutOutput (layernorm, moe_act): the outputs
  /// are recomputed too, even where ops outside the region read them.
  bool discardOutputs = false;
};

/// Sorts `ops` in block order and drops duplicates.
void sortInBlock(SmallVectorImpl<Operation *> &ops) {
  llvm::sort(ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  ops.erase(std::unique(ops.begin(), ops.end()), ops.end());
}

/// Adds to `region` the forward views of its values, transitively.
void addViews(Region &region) {
  for (size_t i = 0; i < region.ops.size(); ++i)
    for (Operation *user : region.ops[i]->getUsers())
      if (isView(user) && !isBackward(user) && !llvm::is_contained(region.ops, user))
        region.ops.push_back(user);
  sortInBlock(region.ops);
}

/// Redirects the backward's reads of `region`'s values to clones of the
/// ops that make them, inserted before the first such read. Values that
/// ops outside the region read in the forward are kept (unless the region
/// discards its outputs): those readers' backward needs them anyway.
void recompute(const Region &region, OpBuilder &b) {
  DenseSet<Operation *> inRegion(region.ops.begin(), region.ops.end());
  SmallVector<OpOperand *> reads;
  for (Operation *op : region.ops)
    for (Value v : op->getResults()) {
      bool kept = !region.discardOutputs && llvm::any_of(v.getUsers(), [&](Operation *u) {
                    return !isBackward(u) && !inRegion.contains(u);
                  });
      if (kept)
        continue;
      for (OpOperand &use : v.getUses())
        if (isBackward(use.getOwner()))
          reads.push_back(&use);
    }
  if (reads.empty())
    return;
  // The region's ops those values depend on.
  DenseSet<Operation *> needed;
  SmallVector<Operation *> work;
  for (OpOperand *read : reads)
    work.push_back(read->get().getDefiningOp());
  while (!work.empty()) {
    Operation *op = work.pop_back_val();
    if (!needed.insert(op).second)
      continue;
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp(); def && inRegion.contains(def))
        work.push_back(def);
  }
  Operation *first = reads.front()->getOwner();
  for (OpOperand *read : reads)
    if (read->getOwner()->isBeforeInBlock(first))
      first = read->getOwner();
  b.setInsertionPoint(first);
  IRMapping clones;
  for (Operation *op : region.ops)
    if (needed.contains(op)) {
      Operation *clone = b.clone(*op, clones);
      clone->setAttr(MtDialect::kBackwardAttrName, b.getUnitAttr());
      clone->setAttr(MtDialect::kRecomputeAttrName, b.getUnitAttr());
    }
  for (OpOperand *read : reads)
    read->set(clones.lookup(read->get()));
}

struct RecomputePass : public mt::impl::RecomputeBase<RecomputePass> {
  using RecomputeBase::RecomputeBase;
  void runOnOperation() override;

private:
  FailureOr<SmallVector<Region>> fullRegions(func::FuncOp fn);
  FailureOr<SmallVector<Region>> selectiveRegions(func::FuncOp fn);

  /// The forward ops of each decoder layer, in block order (parameter
  /// reads compute nothing and stay out).
  std::map<int64_t, SmallVector<Operation *>> layers_;
};

FailureOr<SmallVector<Region>> RecomputePass::fullRegions(func::FuncOp fn) {
  if (method != "uniform" && method != "block") {
    fn.emitError() << "mt-recompute: method '" << method << "' is not uniform or block";
    return failure();
  }
  int64_t total = layers_.empty() ? 0 : layers_.rbegin()->first + 1;
  SmallVector<int64_t> blocks(blockLayers.begin(), blockLayers.end());
  if (blocks.empty())
    blocks.push_back(total);
  int64_t sum = 0;
  for (int64_t n : blocks)
    sum += n;
  if (sum != total || llvm::any_of(blocks, [](int64_t n) { return n < 1; })) {
    fn.emitError() << "mt-recompute: block-layers must split the " << total
                   << " layers into chunks of at least one layer, got a sum of " << sum;
    return failure();
  }
  // Megatron-Core's recompute.py: uniform checkpoints every run of
  // num_layers layers of a chunk (the last run may be shorter), block each
  // of the chunk's first num_layers layers on its own.
  SmallVector<Region> regions;
  auto add = [&](int64_t first, int64_t end) {
    Region r;
    for (int64_t l = first; l < end; ++l)
      llvm::append_range(r.ops, layers_[l]);
    regions.push_back(std::move(r));
  };
  int64_t start = 0;
  for (int64_t n : blocks) {
    int64_t end = start + n;
    if (method == "uniform")
      for (int64_t l = start; l < end; l += numLayers)
        add(l, std::min(l + numLayers, end));
    else
      for (int64_t l = start; l < std::min(start + numLayers, end); ++l)
        add(l, l + 1);
    start = end;
  }
  return regions;
}

FailureOr<SmallVector<Region>> RecomputePass::selectiveRegions(func::FuncOp fn) {
  static constexpr StringLiteral kModules[] = {"core_attn", "mlp", "layernorm", "moe_act",
                                               "moe"};
  for (const std::string &m : modules)
    if (!llvm::is_contained(kModules, m)) {
      fn.emitError() << "mt-recompute: unknown module '" << m
                     << "' (known: core_attn, mlp, layernorm, moe_act, moe)";
      return failure();
    }
  auto wants = [&](StringRef m) { return llvm::is_contained(modules, m); };
  SmallVector<Region> regions;
  for (auto &[layer, ops] : layers_) {
    // Norms first: the views of their outputs are theirs, not the MLP's.
    DenseSet<Operation *> claimed;
    Operation *preMlpNorm = nullptr;
    for (Operation *op : ops)
      if (isResidualNorm(op)) {
        preMlpNorm = op;
        if (!wants("layernorm"))
          continue;
        Region r{{op}, /*discardOutputs=*/true};
        addViews(r);
        claimed.insert(r.ops.begin(), r.ops.end());
        regions.push_back(std::move(r));
      }
    if (wants("core_attn"))
      for (Operation *op : ops)
        if (isa<AttentionOp>(op)) {
          Region r{{op}};
          addViews(r);
          regions.push_back(std::move(r));
        }
    if (!preMlpNorm)
      continue;
    // The MLP: what the pre-MLP norm feeds within the layer, up to the
    // residual add that takes the norm's input.
    Region mlp;
    Value residual = preMlpNorm->getOperand(0);
    SmallVector<Operation *> work(preMlpNorm->getUsers().begin(), preMlpNorm->getUsers().end());
    DenseSet<Operation *> seen;
    while (!work.empty()) {
      Operation *op = work.pop_back_val();
      if (!seen.insert(op).second || isBackward(op) || layerOf(op) != layer ||
          (isa<AddOp>(op) && llvm::is_contained(op->getOperands(), residual)))
        continue;
      if (!claimed.contains(op))
        mlp.ops.push_back(op);
      work.append(op->getUsers().begin(), op->getUsers().end());
    }
    sortInBlock(mlp.ops);
    bool experts = llvm::any_of(mlp.ops, [](Operation *op) {
      return isa<MoERouterOp, MoEGroupedMLPOp>(op);
    });
    if (wants(experts ? "moe" : "mlp")) {
      regions.push_back(std::move(mlp));
    } else if (experts && wants("moe_act")) {
      for (Operation *op : mlp.ops)
        if (isa<SwiGLUOp, GELUOp>(op))
          regions.push_back(Region{{op}, /*discardOutputs=*/true});
    }
  }
  return regions;
}

void RecomputePass::runOnOperation() {
  if (granularity.empty())
    return;
  ModuleOp module = getOperation();
  auto fn = module.lookupSymbol<func::FuncOp>("forward_backward");
  if (!fn || fn.isExternal()) {
    module.emitError() << "mt-recompute expects @forward_backward (run mt-autodiff first)";
    return signalPassFailure();
  }
  if (numLayers < 1) {
    fn.emitError() << "mt-recompute: num-layers must be >= 1, got " << int64_t(numLayers);
    return signalPassFailure();
  }
  for (Operation &op : fn.getBody().front().without_terminator())
    if (int64_t layer = layerOf(&op); layer >= 0 && !isBackward(&op) && !isa<WeightOp>(op))
      layers_[layer].push_back(&op);
  FailureOr<SmallVector<Region>> regions = failure();
  if (granularity == "full")
    regions = fullRegions(fn);
  else if (granularity == "selective")
    regions = selectiveRegions(fn);
  else
    fn.emitError() << "mt-recompute: granularity '" << granularity
                   << "' is not full or selective";
  if (failed(regions))
    return signalPassFailure();
  // Last region first: a region's clones read the values of the regions
  // before it (an MLP the norm's output), which those then redirect too.
  llvm::erase_if(*regions, [](const Region &r) { return r.ops.empty(); });
  llvm::sort(*regions, [](const Region &a, const Region &b) {
    return b.ops.front()->isBeforeInBlock(a.ops.front());
  });
  OpBuilder b(fn.getContext());
  for (const Region &region : *regions)
    recompute(region, b);
}

} // namespace
