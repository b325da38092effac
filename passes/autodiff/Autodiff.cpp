// mt-autodiff: reverse-mode differentiation of @forward into
// @forward_backward, through DifferentiableOpInterface.
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/MapVector.h"

namespace mt {
#define GEN_PASS_DEF_AUTODIFF
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

bool isFloatTensor(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && isa<FloatType>(t.getElementType());
}

/// Values on a path from a trainable parameter: only these get gradients.
DenseSet<Value> valuesRequiringGrad(Block &body, SymbolTable &symbols) {
  DenseSet<Value> needsGrad;
  for (Operation &op : body) {
    bool any = false;
    if (auto weight = dyn_cast<WeightOp>(op)) {
      auto param = symbols.lookup<ParamOp>(weight.getParam());
      any = param && !param.getFrozen();
    } else {
      any = llvm::any_of(op.getOperands(),
                         [&](Value v) { return needsGrad.contains(v); });
    }
    if (any)
      for (Value r : op.getResults())
        if (isFloatTensor(r))
          needsGrad.insert(r);
  }
  return needsGrad;
}

/// Marks the ops that compute gradients as the backward pass and gives them
/// the `mt.layer` of the forward op they differentiate, so that pipeline
/// stages own their backward too.
class LayerPropagator : public OpBuilder::Listener {
public:
  void notifyOperationInserted(Operation *op, OpBuilder::InsertPoint) override {
    op->setAttr(MtDialect::kBackwardAttrName, UnitAttr::get(op->getContext()));
    if (layer)
      op->setAttr(MtDialect::kLayerAttrName, layer);
  }
  Attribute layer;
};

class Differentiator {
public:
  Differentiator(OpBuilder &b, const DenseSet<Value> &needsGrad)
      : b_(b), needsGrad_(needsGrad) {
    b_.setListener(&layers_);
  }
  ~Differentiator() { b_.setListener(nullptr); }

  void addGrad(Value v, Value g) {
    auto [it, inserted] = grads_.try_emplace(v, g);
    if (!inserted)
      it->second = AddOp::create(b_, v.getLoc(), it->second, g);
  }

  /// Walks the forward ops backwards; parameter gradients are summed per
  /// parameter (a parameter may be read more than once).
  LogicalResult run(Block &body) {
    // The forward ops, listed before any gradient op is appended to the block
    // (a reverse iterator over the live block would revisit them).
    SmallVector<Operation *> forwardOps;
    for (Operation &op : body.without_terminator())
      forwardOps.push_back(&op);
    for (Operation *opPtr : llvm::reverse(forwardOps)) {
      Operation &op = *opPtr;
      layers_.layer = op.getAttr(MtDialect::kLayerAttrName);
      SmallVector<Value> dys;
      bool anyGrad = false;
      for (Value r : op.getResults()) {
        dys.push_back(grads_.lookup(r));
        anyGrad |= bool(dys.back());
      }
      if (!anyGrad)
        continue;
      if (auto weight = dyn_cast<WeightOp>(op)) {
        auto [it, inserted] = paramGrads_.try_emplace(weight.getParam(), dys[0]);
        if (!inserted)
          it->second = AddOp::create(b_, op.getLoc(), it->second, dys[0]);
        continue;
      }
      auto diff = dyn_cast<DifferentiableOpInterface>(op);
      if (!diff)
        return op.emitOpError() << "is on the path from a parameter to the "
                                   "loss but has no gradient";
      SmallVector<bool> needed;
      for (Value operand : op.getOperands())
        needed.push_back(needsGrad_.contains(operand));
      SmallVector<Value> operandGrads;
      if (failed(diff.buildGradients(b_, dys, needed, operandGrads)))
        return failure();
      for (auto [operand, grad] : llvm::zip(op.getOperands(), operandGrads))
        if (grad)
          addGrad(operand, grad);
    }
    layers_.layer = nullptr;
    return success();
  }

  const llvm::MapVector<StringRef, Value> &paramGrads() const { return paramGrads_; }

private:
  OpBuilder &b_;
  const DenseSet<Value> &needsGrad_;
  LayerPropagator layers_;
  DenseMap<Value, Value> grads_;
  llvm::MapVector<StringRef, Value> paramGrads_;
};

struct AutodiffPass : public mt::impl::AutodiffBase<AutodiffPass> {
  void runOnOperation() override;
};

void AutodiffPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward || forward.isExternal() || forward.getNumResults() != 1 ||
      (forward.getNumArguments() != 3 && forward.getNumArguments() != 4)) {
    module.emitError() << "mt-autodiff expects 'func.func @forward(input_ids, "
                          "labels, loss_mask[, position_ids]) -> loss'";
    return signalPassFailure();
  }
  OpBuilder b(forward);
  auto fb = cast<func::FuncOp>(b.clone(*forward));
  fb.setSymName("forward_backward");
  Block &body = fb.getBody().front();
  auto f32Scalar = RankedTensorType::get({}, b.getF32Type());
  const unsigned inputs = forward.getNumArguments();
  if (failed(fb.insertArgument(inputs, f32Scalar,
                               b.getDictionaryAttr(b.getNamedAttr(
                                   "mt.input", b.getStringAttr("loss_scale"))),
                               fb.getLoc())))
    return signalPassFailure();
  Value lossScale = body.getArgument(inputs);
  // The arguments' roles are fixed by @forward's contract.
  static constexpr StringLiteral kRoles[] = {"input_ids", "labels", "loss_mask",
                                             "position_ids"};
  for (unsigned i = 0; i < inputs; ++i)
    fb.setArgAttr(i, "mt.input", b.getStringAttr(kRoles[i]));

  auto ret = cast<func::ReturnOp>(body.getTerminator());
  Value loss = ret.getOperand(0);
  SymbolTable symbols(module);
  DenseSet<Value> needsGrad = valuesRequiringGrad(body, symbols);
  b.setInsertionPoint(ret);
  llvm::MapVector<StringRef, Value> paramGrads;
  {
    Differentiator diff(b, needsGrad); // marks what it creates as backward
    diff.addGrad(loss, lossScale);
    if (failed(diff.run(body)))
      return signalPassFailure();
    paramGrads = diff.paramGrads();
  }

  // Results: the loss, then one gradient per trainable parameter read, in
  // the order the module declares them.
  SmallVector<Value> results = {loss};
  SmallVector<DictionaryAttr> resultAttrs = {b.getDictionaryAttr({})};
  for (auto param : module.getOps<ParamOp>()) {
    if (param.getFrozen())
      continue;
    Value grad = paramGrads.lookup(param.getSymName());
    if (!grad) // read nowhere on the path to the loss: a zero gradient
      grad = ZerosOp::create(b, param.getLoc(), param.getLocalType());
    results.push_back(grad);
    resultAttrs.push_back(b.getDictionaryAttr(b.getNamedAttr(
        "mt.grad_of", FlatSymbolRefAttr::get(param.getSymNameAttr()))));
  }
  func::ReturnOp::create(b, ret.getLoc(), results);
  ret.erase();

  SmallVector<Type> resultTypes;
  for (Value v : results)
    resultTypes.push_back(v.getType());
  fb.setFunctionType(b.getFunctionType(body.getArgumentTypes(), resultTypes));
  fb.setAllResultAttrs(resultAttrs);
  forward.erase();
}

} // namespace
