// mt-fuse: rewrites op patterns of the training step into fused ops that
// compute the same values in fewer passes over memory (passes/Passes.td).
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mt {
#define GEN_PASS_DEF_FUSE
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

/// Whether `a` and `b` run in the same place of the step: the same virtual
/// pipeline stage, both forward or both backward, both recomputed or not.
/// A fusion across these lines would move work between programs or undo a
/// recompute decision.
bool samePlace(Operation *a, Operation *b) {
  for (StringRef name : {MtDialect::kVirtualStageAttrName, MtDialect::kBackwardAttrName,
                         MtDialect::kRecomputeAttrName})
    if (a->getAttr(name) != b->getAttr(name))
      return false;
  return a->getBlock() == b->getBlock();
}

/// Whether a user of `v` other than `except` lies strictly between `from`
/// and `to` in their block (a fused op at `to` would then be read before it
/// is made).
bool usedBetween(Value v, Operation *from, Operation *to, Operation *except) {
  return llvm::any_of(v.getUsers(), [&](Operation *user) {
    return user != except && user->getBlock() == to->getBlock() &&
           from->isBeforeInBlock(user) && user->isBeforeInBlock(to);
  });
}

/// `%h = mt.add %x, %r; %y = mt.rmsnorm %h, %w` -> `%h, %y = mt.add_rmsnorm
/// %x, %r, %w`, at the norm.
bool fuseAddRMSNorm(RMSNormOp norm) {
  auto add = norm.getInput().getDefiningOp<AddOp>();
  if (!add || !samePlace(add, norm) || usedBetween(add.getResult(), add, norm, norm))
    return false;
  OpBuilder b(norm);
  auto fused = AddRMSNormOp::create(b, norm.getLoc(),
                                    TypeRange{add.getType(), norm.getType()}, add.getLhs(),
                                    add.getRhs(), norm.getWeight(), norm.getEpsAttr());
  fused->setDiscardableAttrs(norm->getDiscardableAttrDictionary());
  norm.getResult().replaceAllUsesWith(fused.getResult());
  norm.erase();
  add.getResult().replaceAllUsesWith(fused.getSum());
  add.erase();
  return true;
}

/// `%dx, %dw = mt.rmsnorm_grad %h, %w, %dy; %s = mt.add %g, %dx` (either
/// order) -> `%s, %dw = mt.add_rmsnorm_grad %h, %w, %dy, %g`, at the add.
bool fuseAddRMSNormGrad(AddOp add) {
  for (int k = 0; k < 2; ++k) {
    Value dx = add->getOperand(k), other = add->getOperand(1 - k);
    auto grad = dx.getDefiningOp<RMSNormGradOp>();
    // A one-use `other` is accumulated into in place by the plan already.
    if (!grad || grad.getDx() != dx || dx == other || !dx.hasOneUse() || other.hasOneUse() ||
        !samePlace(grad, add))
      continue;
    // %dw moves down to the add: none of its readers may come before it.
    if (llvm::any_of(grad.getDweight().getUsers(),
                     [&](Operation *u) { return u->getBlock() == add->getBlock() &&
                                                u->isBeforeInBlock(add); }))
      continue;
    OpBuilder b(add);
    auto fused = AddRMSNormGradOp::create(
        b, grad.getLoc(), TypeRange{add.getType(), grad.getDweight().getType()},
        grad.getInput(), grad.getWeight(), grad.getDy(), other, grad.getEpsAttr());
    fused->setDiscardableAttrs(grad->getDiscardableAttrDictionary());
    add.getResult().replaceAllUsesWith(fused.getDx());
    add.erase();
    grad.getDweight().replaceAllUsesWith(fused.getDweight());
    grad.erase();
    return true;
  }
  return false;
}

/// The readers of one projection's output gradient `d` (of `linear`): its
/// input gradient, its weight gradient and, with a bias, its bias gradient.
struct ProjectionGrads {
  LinearGradInputOp input;
  LinearGradWeightOp weight;
  BiasGradOp bias;
};

/// `d`'s readers as ProjectionGrads, if they are exactly those. The weight
/// gradient may read the linear's input or a recomputed copy of it
/// (mt-recompute's clone of the norm before it).
std::optional<ProjectionGrads> projectionGrads(Value d, LinearOp linear) {
  ProjectionGrads g;
  for (Operation *user : d.getUsers()) {
    auto input = dyn_cast<LinearGradInputOp>(user);
    auto weight = dyn_cast<LinearGradWeightOp>(user);
    auto bias = dyn_cast<BiasGradOp>(user);
    if (input && !g.input && input.getDy() == d && input.getWeight() == linear.getWeight())
      g.input = input;
    else if (weight && !g.weight && weight.getDy() == d &&
             weight.getInput().getType() == linear.getInput().getType())
      g.weight = weight;
    else if (bias && !g.bias && linear.getBias())
      g.bias = bias;
    else
      return std::nullopt;
  }
  if (!g.input || !g.weight || bool(g.bias) != bool(linear.getBias()))
    return std::nullopt;
  return g;
}

/// The backward of a gate/up pair at one `mt.swiglu_grad`: each
/// projection's gradients, and the add of their input gradients.
struct Fc1Backward {
  SwiGLUGradOp swiglu;
  ProjectionGrads gate, up;
  AddOp sum;
};

/// The gate and up projections of one MLP (two linears of one input, both
/// with or without a bias, of mt.weight parameters) whose results only
/// SwiGLUs and their gradients read, as (gate, up); with the backward at
/// each gradient. None when anything differs (then nothing is fused).
struct Fc1 {
  LinearOp gate, up;
  SmallVector<SwiGLUOp> swiglus;
  SmallVector<Fc1Backward> backwards;
};

bool isWeight(Value v) { return v && v.getDefiningOp<WeightOp>(); }

/// The later of two ops of one block.
Operation *later(Operation *a, Operation *b) { return a->isBeforeInBlock(b) ? b : a; }

/// No reader of `v` lies before `at` in its block (a value moved down to `at`).
bool noReaderBefore(Value v, Operation *at) {
  return llvm::none_of(v.getUsers(), [&](Operation *u) {
    return u->getBlock() == at->getBlock() && u->isBeforeInBlock(at);
  });
}

std::optional<Fc1Backward> matchFc1Backward(SwiGLUGradOp grad, LinearOp gate, LinearOp up) {
  Fc1Backward b{grad, {}, {}, {}};
  auto g = projectionGrads(grad.getDgate(), gate), u = projectionGrads(grad.getDup(), up);
  if (!g || !u)
    return std::nullopt;
  b.gate = *g;
  b.up = *u;
  // One weight-gradient GEMM reads one input for both.
  if (g->weight.getInput() != u->weight.getInput())
    return std::nullopt;
  Value dxGate = g->input.getDx(), dxUp = u->input.getDx();
  if (!dxGate.hasOneUse() || !dxUp.hasOneUse())
    return std::nullopt;
  b.sum = dyn_cast<AddOp>(*dxGate.getUsers().begin());
  if (!b.sum || *dxUp.getUsers().begin() != b.sum.getOperation())
    return std::nullopt;
  SmallVector<Operation *> ops = {g->input, g->weight, u->input, u->weight, b.sum};
  if (g->bias)
    ops.append({g->bias, u->bias});
  if (llvm::any_of(ops, [&](Operation *op) { return !samePlace(op, grad); }))
    return std::nullopt;
  // The gradients move down to the later of their two ops.
  Operation *weightAt = later(g->weight, u->weight);
  if (!noReaderBefore(g->weight.getDweight(), weightAt) ||
      !noReaderBefore(u->weight.getDweight(), weightAt))
    return std::nullopt;
  if (g->bias) {
    Operation *biasAt = later(g->bias, u->bias);
    if (!noReaderBefore(g->bias.getDbias(), biasAt) ||
        !noReaderBefore(u->bias.getDbias(), biasAt))
      return std::nullopt;
  }
  return b;
}

std::optional<Fc1> matchFc1(LinearOp gate, LinearOp up) {
  if (!gate || !up || gate == up || gate.getInput() != up.getInput() ||
      !samePlace(gate, up) || !isWeight(gate.getWeight()) || !isWeight(up.getWeight()) ||
      bool(gate.getBias()) != bool(up.getBias()) ||
      (gate.getBias() && (!isWeight(gate.getBias()) || !isWeight(up.getBias()))))
    return std::nullopt;
  Fc1 fc1{gate, up, {}, {}};
  Value g = gate.getResult(), u = up.getResult();
  for (Operation *user : llvm::concat<Operation *>(
           llvm::to_vector(g.getUsers()), llvm::to_vector(u.getUsers()))) {
    if (auto s = dyn_cast<SwiGLUOp>(user); s && s.getGate() == g && s.getUp() == u) {
      if (!llvm::is_contained(fc1.swiglus, s))
        fc1.swiglus.push_back(s);
    } else if (auto s = dyn_cast<SwiGLUGradOp>(user); s && s.getGate() == g && s.getUp() == u) {
      if (llvm::any_of(fc1.backwards, [&](const Fc1Backward &b) { return b.swiglu == s; }))
        continue;
      std::optional<Fc1Backward> b = matchFc1Backward(s, gate, up);
      if (!b)
        return std::nullopt;
      fc1.backwards.push_back(*b);
    } else {
      return std::nullopt;
    }
  }
  return fc1;
}

/// `%x` split into `parts` like `whole`'s rows: mt.split_rows at `at`.
SmallVector<Value> splitRows(OpBuilder &b, Operation *at, Value whole, ValueRange parts) {
  b.setInsertionPoint(at);
  auto split = SplitRowsOp::create(b, at->getLoc(), parts.getTypes(), whole);
  split->setDiscardableAttrs(at->getDiscardableAttrDictionary());
  return SmallVector<Value>(split.getResults());
}

/// The packed type [..., a + b] of `a` [..., A] and `b` [..., B].
RankedTensorType packedType(Value a, Value b) {
  auto ta = cast<RankedTensorType>(a.getType()), tb = cast<RankedTensorType>(b.getType());
  SmallVector<int64_t> shape(ta.getShape());
  shape.back() += tb.getShape().back();
  return ta.clone(shape);
}

/// Rows of `a` then `b`: [A + B, ...].
RankedTensorType stackedType(Value a, Value b) {
  auto ta = cast<RankedTensorType>(a.getType()), tb = cast<RankedTensorType>(b.getType());
  SmallVector<int64_t> shape(ta.getShape());
  shape.front() += tb.getShape().front();
  return ta.clone(shape);
}

/// One backward of a fused fc1: the packed SwiGLU gradient, one input
/// gradient over the packed weight, one weight (and bias) gradient split
/// into the parameters' gradients.
void rewriteFc1Backward(Fc1Backward bw, Value packed, Value weight) {
  OpBuilder b(bw.swiglu);
  auto dgu = ChunkedSwiGLUGradOp::create(b, bw.swiglu.getLoc(), packed.getType(), packed,
                                         bw.swiglu.getDy());
  dgu->setDiscardableAttrs(bw.swiglu->getDiscardableAttrDictionary());

  b.setInsertionPoint(bw.sum);
  auto dx = LinearGradInputOp::create(b, bw.sum.getLoc(), bw.sum.getType(), dgu, weight);
  dx->setDiscardableAttrs(bw.up.input->getDiscardableAttrDictionary());
  bw.sum.getResult().replaceAllUsesWith(dx.getResult());

  Operation *weightAt = later(bw.gate.weight, bw.up.weight);
  b.setInsertionPoint(weightAt);
  Value dwGate = bw.gate.weight.getDweight(), dwUp = bw.up.weight.getDweight();
  auto dw = LinearGradWeightOp::create(b, weightAt->getLoc(), stackedType(dwGate, dwUp),
                                       bw.gate.weight.getInput(), dgu);
  dw->setDiscardableAttrs(weightAt->getDiscardableAttrDictionary());
  SmallVector<Value> dws = splitRows(b, weightAt, dw, {dwGate, dwUp});
  dwGate.replaceAllUsesWith(dws[0]);
  dwUp.replaceAllUsesWith(dws[1]);

  SmallVector<Operation *> dead = {bw.sum, bw.gate.input, bw.up.input, bw.gate.weight,
                                   bw.up.weight};
  if (bw.gate.bias) {
    Operation *biasAt = later(bw.gate.bias, bw.up.bias);
    Value dbGate = bw.gate.bias.getDbias(), dbUp = bw.up.bias.getDbias();
    b.setInsertionPoint(biasAt);
    auto db = BiasGradOp::create(b, biasAt->getLoc(), stackedType(dbGate, dbUp), dgu);
    db->setDiscardableAttrs(biasAt->getDiscardableAttrDictionary());
    SmallVector<Value> dbs = splitRows(b, biasAt, db, {dbGate, dbUp});
    dbGate.replaceAllUsesWith(dbs[0]);
    dbUp.replaceAllUsesWith(dbs[1]);
    dead.append({bw.gate.bias, bw.up.bias});
  }
  dead.push_back(bw.swiglu);
  for (Operation *op : dead)
    op->erase();
}

/// `%g = mt.linear %x, %wg; %u = mt.linear %x, %wu; mt.swiglu %g, %u` and
/// the gradients of its mt.swiglu_grad -> one linear over
/// `mt.concat_rows %wg, %wu` (Megatron-Core's linear_fc1), mt.chunked_swiglu
/// and, backward, mt.chunked_swiglu_grad and one GEMM per gradient.
void fuseLinearFc1(Fc1 fc1) {
  LinearOp gate = fc1.gate, up = fc1.up;
  Operation *at = later(gate, up);
  OpBuilder b(at);
  Location loc = at->getLoc();
  auto concat = [&](Value x, Value y) {
    auto c = ConcatRowsOp::create(b, loc, stackedType(x, y), ValueRange{x, y});
    c->setDiscardableAttrs(at->getDiscardableAttrDictionary());
    return c.getResult();
  };
  Value weight = concat(gate.getWeight(), up.getWeight());
  Value bias = gate.getBias() ? concat(gate.getBias(), up.getBias()) : Value();
  auto linear = LinearOp::create(b, loc, packedType(gate.getResult(), up.getResult()),
                                 gate.getInput(), weight, bias);
  linear->setDiscardableAttrs(at->getDiscardableAttrDictionary());
  Value packed = linear.getResult();
  for (SwiGLUOp s : fc1.swiglus) {
    b.setInsertionPoint(s);
    auto fused = ChunkedSwiGLUOp::create(b, s.getLoc(), s.getType(), packed);
    fused->setDiscardableAttrs(s->getDiscardableAttrDictionary());
    s.getResult().replaceAllUsesWith(fused.getResult());
    s.erase();
  }
  for (Fc1Backward &bw : fc1.backwards)
    rewriteFc1Backward(bw, packed, weight);
  up.erase();
  gate.erase();
}

/// Whether the distributed optimizer lays the parameters out in buckets
/// (mt-build-optimizer): their order there is not the fused weight's.
bool hasBuckets(ModuleOp module) {
  auto optimizer = module.lookupSymbol<func::FuncOp>("optimizer_step");
  return optimizer && optimizer->hasAttr(MtDialect::kBucketsAttrName);
}

struct FusePass : public mt::impl::FuseBase<FusePass> {
  using FuseBase::FuseBase;

  void runOnOperation() override {
    // The backward pattern first: the forward one erases adds.
    if (addRMSNormGrad) {
      SmallVector<AddOp> adds;
      getOperation().walk([&](AddOp add) { adds.push_back(add); });
      for (AddOp add : adds)
        fuseAddRMSNormGrad(add);
    }
    if (linearFc1 && !hasBuckets(getOperation())) {
      SmallVector<std::pair<LinearOp, LinearOp>> pairs;
      getOperation().walk([&](Operation *op) {
        Value g, u;
        if (auto s = dyn_cast<SwiGLUOp>(op))
          g = s.getGate(), u = s.getUp();
        else if (auto s = dyn_cast<SwiGLUGradOp>(op))
          g = s.getGate(), u = s.getUp();
        std::pair<LinearOp, LinearOp> pair = {g ? g.getDefiningOp<LinearOp>() : LinearOp(),
                                              u ? u.getDefiningOp<LinearOp>() : LinearOp()};
        if (pair.first && pair.second && !llvm::is_contained(pairs, pair))
          pairs.push_back(pair);
      });
      for (auto [gate, up] : pairs)
        if (std::optional<Fc1> fc1 = matchFc1(gate, up))
          fuseLinearFc1(*fc1);
    }
    if (addRMSNorm) {
      SmallVector<RMSNormOp> norms;
      getOperation().walk([&](RMSNormOp norm) { norms.push_back(norm); });
      for (RMSNormOp norm : norms)
        fuseAddRMSNorm(norm);
    }
  }
};

} // namespace
