// mt-fuse: rewrites op patterns of the training step into fused ops that
// compute the same values in fewer passes over memory (passes/Passes.td).
#include "passes/Passes.h"
#include "passes/fusion/BucketPacking.h"

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

/// The backward of sibling projections (linears of one input whose outputs
/// are packed in one GEMM) at one gradient: each projection's gradients, in
/// the projections' order, and the adds that sum their input gradients,
/// the sum last.
struct SiblingBackward {
  SmallVector<ProjectionGrads> grads;
  SmallVector<AddOp> adds;
  AddOp sum() { return adds.back(); }
};

/// The adds of the tree at `add` (read once each but for the root) and its
/// leaves, the values it sums.
void addTree(AddOp add, SmallVector<AddOp> &adds, SmallVector<Value> &leaves) {
  adds.push_back(add);
  for (Value v : add->getOperands()) {
    auto inner = v.getDefiningOp<AddOp>();
    if (inner && v.hasOneUse() && inner->getBlock() == add->getBlock())
      addTree(inner, adds, leaves);
    else
      leaves.push_back(v);
  }
}

/// The adds (the sum last) that sum exactly `terms`, each read once, or none.
std::optional<SmallVector<AddOp>> matchSum(ArrayRef<Value> terms) {
  if (llvm::any_of(terms, [](Value t) { return !t.hasOneUse(); }))
    return std::nullopt;
  Value v = terms.front();
  while (v.hasOneUse()) {
    auto add = dyn_cast<AddOp>(*v.getUsers().begin());
    if (!add)
      return std::nullopt;
    SmallVector<AddOp> adds;
    SmallVector<Value> leaves;
    addTree(add, adds, leaves);
    if (llvm::any_of(leaves, [&](Value l) { return !llvm::is_contained(terms, l); }))
      return std::nullopt;
    if (leaves.size() == terms.size() && adds.size() + 1 == terms.size()) {
      std::reverse(adds.begin(), adds.end()); // the sum last
      return adds;
    }
    v = add.getResult();
  }
  return std::nullopt;
}

bool isWeight(Value v) { return v && v.getDefiningOp<WeightOp>(); }

/// The later of two ops of one block.
Operation *later(Operation *a, Operation *b) { return a->isBeforeInBlock(b) ? b : a; }

/// No reader of `v` lies before `at` in its block (a value moved down to `at`).
bool noReaderBefore(Value v, Operation *at) {
  return llvm::none_of(v.getUsers(), [&](Operation *u) {
    return u->getBlock() == at->getBlock() && u->isBeforeInBlock(at);
  });
}

/// Where a fused backward puts its GEMMs: the input gradient at the sum, the
/// weight (and bias) gradient at the last of the ops it replaces.
struct BackwardPoints {
  Operation *dx, *dweight, *dbias;
  /// The first of them: the packed output gradient must be made before it.
  Operation *first() const {
    Operation *f = dx->isBeforeInBlock(dweight) ? dx : dweight;
    return dbias && dbias->isBeforeInBlock(f) ? dbias : f;
  }
};

BackwardPoints backwardPoints(SiblingBackward &bw) {
  BackwardPoints p{bw.sum(), bw.grads.front().weight, bw.grads.front().bias};
  for (ProjectionGrads g : bw.grads) {
    p.dweight = later(p.dweight, g.weight);
    if (g.bias)
      p.dbias = later(p.dbias, g.bias);
  }
  return p;
}

/// The gradients of `linears` at one backward whose output gradients are
/// `dys` (in the projections' order): each exactly a projection's gradients
/// (ProjectionGrads), the weight gradients reading one input, the input
/// gradients summed by adds alone, all in the place of `anchor`, and no
/// reader of a moved gradient before its new place. None otherwise.
std::optional<SiblingBackward> matchSiblingBackward(ArrayRef<LinearOp> linears, ValueRange dys,
                                                    Operation *anchor) {
  SiblingBackward b;
  SmallVector<Value> dxs;
  SmallVector<Operation *> ops;
  for (auto [linear, dy] : llvm::zip(linears, dys)) {
    std::optional<ProjectionGrads> g = projectionGrads(dy, linear);
    // One weight-gradient GEMM reads one input for all.
    if (!g || (!b.grads.empty() && g->weight.getInput() != b.grads.front().weight.getInput()))
      return std::nullopt;
    b.grads.push_back(*g);
    dxs.push_back(g->input.getDx());
    ops.append({g->input, g->weight});
    if (g->bias)
      ops.push_back(g->bias);
  }
  std::optional<SmallVector<AddOp>> adds = matchSum(dxs);
  if (!adds)
    return std::nullopt;
  b.adds = std::move(*adds);
  ops.append(b.adds.begin(), b.adds.end());
  if (llvm::any_of(ops, [&](Operation *op) { return !samePlace(op, anchor); }))
    return std::nullopt;
  BackwardPoints at = backwardPoints(b);
  for (ProjectionGrads g : b.grads)
    if (!noReaderBefore(g.weight.getDweight(), at.dweight) ||
        (g.bias && !noReaderBefore(g.bias.getDbias(), at.dbias)))
      return std::nullopt;
  return b;
}

/// The backward of a gate/up pair at one `mt.swiglu_grad`.
struct Fc1Backward {
  SwiGLUGradOp swiglu;
  SiblingBackward grads;
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

/// Sibling linears: distinct, of one input, in one place, of mt.weight
/// weights, all with mt.weight biases or none.
bool areSiblings(ArrayRef<LinearOp> linears) {
  if (llvm::is_contained(linears, LinearOp()))
    return false;
  LinearOp first = linears.front();
  for (size_t i = 0; i < linears.size(); ++i)
    if (LinearOp l = linears[i]; !isWeight(l.getWeight()) || l.getInput() != first.getInput() ||
        !samePlace(l, first) || bool(l.getBias()) != bool(first.getBias()) ||
        (l.getBias() && !isWeight(l.getBias())) ||
        llvm::is_contained(linears.take_front(i), l))
      return false;
  return true;
}

std::optional<Fc1> matchFc1(LinearOp gate, LinearOp up) {
  if (!areSiblings({gate, up}))
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
      std::optional<SiblingBackward> b =
          matchSiblingBackward({gate, up}, {s.getDgate(), s.getDup()}, s);
      if (!b)
        return std::nullopt;
      fc1.backwards.push_back({s, std::move(*b)});
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

/// `t` with its axis `axis` the sum of `values`' (of type `t` but for it).
RankedTensorType joinedType(ValueRange values, int64_t axis) {
  auto t = cast<RankedTensorType>(values.front().getType());
  SmallVector<int64_t> shape(t.getShape());
  int64_t at = axis < 0 ? t.getRank() + axis : axis;
  shape[at] = 0;
  for (Value v : values)
    shape[at] += cast<RankedTensorType>(v.getType()).getDimSize(at);
  return t.clone(shape);
}

/// `mt.concat_rows` of `values` where `b` inserts, with the location and
/// attributes of `like`.
Value concatRows(OpBuilder &b, Operation *like, ValueRange values) {
  auto c = ConcatRowsOp::create(b, like->getLoc(), joinedType(values, 0), values);
  c->setDiscardableAttrs(like->getDiscardableAttrDictionary());
  return c.getResult();
}

/// One backward of fused sibling projections whose packed output gradient
/// is `dy` (made before backwardPoints(bw).first()): one input gradient
/// over the packed `weight`, one weight (and bias) gradient split into the
/// parameters' gradients. Erases the ops they replace.
void rewriteSiblingBackward(SiblingBackward &bw, Value dy, Value weight) {
  BackwardPoints at = backwardPoints(bw);
  OpBuilder b(at.dweight);
  SmallVector<Operation *> dead;
  SmallVector<Value> dws, dbs;
  for (ProjectionGrads g : bw.grads) {
    dws.push_back(g.weight.getDweight());
    dead.append({g.input, g.weight});
    if (g.bias) {
      dbs.push_back(g.bias.getDbias());
      dead.push_back(g.bias);
    }
  }
  auto dw = LinearGradWeightOp::create(b, at.dweight->getLoc(), joinedType(dws, 0),
                                       bw.grads.front().weight.getInput(), dy);
  dw->setDiscardableAttrs(at.dweight->getDiscardableAttrDictionary());
  for (auto [old, part] : llvm::zip(dws, splitRows(b, at.dweight, dw, dws)))
    old.replaceAllUsesWith(part);
  if (!dbs.empty()) {
    b.setInsertionPoint(at.dbias);
    auto db = BiasGradOp::create(b, at.dbias->getLoc(), joinedType(dbs, 0), dy);
    db->setDiscardableAttrs(at.dbias->getDiscardableAttrDictionary());
    for (auto [old, part] : llvm::zip(dbs, splitRows(b, at.dbias, db, dbs)))
      old.replaceAllUsesWith(part);
  }
  AddOp sum = bw.sum();
  b.setInsertionPoint(sum);
  auto dx = LinearGradInputOp::create(b, sum.getLoc(), sum.getType(), dy, weight);
  dx->setDiscardableAttrs(bw.grads.back().input->getDiscardableAttrDictionary());
  sum.getResult().replaceAllUsesWith(dx.getResult());
  for (AddOp add : llvm::reverse(bw.adds)) // the sum first: each reads the next
    add.erase();
  for (Operation *op : dead)
    op->erase();
}

/// One linear over the packed weights (and biases) of sibling `linears`,
/// at the first of them (their weights moved up to it, as readers of the
/// first may precede the others), with the attributes of the last; returns
/// it and the packed weight. Its result is [..., ΣN_i].
std::pair<LinearOp, Value> packedLinear(ArrayRef<LinearOp> linears) {
  Operation *at = linears.front(), *last = linears.front();
  for (LinearOp l : linears) {
    if (l->isBeforeInBlock(at))
      at = l;
    last = later(last, l);
  }
  SmallVector<Value> weights, biases, results;
  for (LinearOp l : linears) {
    weights.push_back(l.getWeight());
    if (l.getBias())
      biases.push_back(l.getBias());
    results.push_back(l.getResult());
  }
  for (Value v : llvm::concat<Value>(weights, biases))
    if (Operation *def = v.getDefiningOp();
        def->getBlock() == at->getBlock() && at->isBeforeInBlock(def))
      def->moveBefore(at);
  OpBuilder b(at);
  Value weight = concatRows(b, last, weights);
  Value bias = biases.empty() ? Value() : concatRows(b, last, biases);
  LinearOp first = linears.front();
  auto linear = LinearOp::create(b, last->getLoc(), joinedType(results, -1), first.getInput(),
                                 weight, bias);
  linear->setDiscardableAttrs(last->getDiscardableAttrDictionary());
  return {linear, weight};
}

/// `%g = mt.linear %x, %wg; %u = mt.linear %x, %wu; mt.swiglu %g, %u` and
/// the gradients of its mt.swiglu_grad -> one linear over
/// `mt.concat_rows %wg, %wu` (Megatron-Core's linear_fc1), mt.chunked_swiglu
/// and, backward, mt.chunked_swiglu_grad and one GEMM per gradient.
void fuseLinearFc1(Fc1 fc1) {
  auto [linear, weight] = packedLinear({fc1.gate, fc1.up});
  Value packed = linear.getResult();
  OpBuilder b(linear);
  for (SwiGLUOp s : fc1.swiglus) {
    b.setInsertionPoint(s);
    auto fused = ChunkedSwiGLUOp::create(b, s.getLoc(), s.getType(), packed);
    fused->setDiscardableAttrs(s->getDiscardableAttrDictionary());
    s.getResult().replaceAllUsesWith(fused.getResult());
    s.erase();
  }
  for (Fc1Backward &bw : fc1.backwards) {
    b.setInsertionPoint(bw.swiglu);
    auto dgu = ChunkedSwiGLUGradOp::create(b, bw.swiglu.getLoc(), packed.getType(), packed,
                                           bw.swiglu.getDy());
    dgu->setDiscardableAttrs(bw.swiglu->getDiscardableAttrDictionary());
    rewriteSiblingBackward(bw.grads, dgu, weight);
    bw.swiglu.erase();
  }
  fc1.up.erase();
  fc1.gate.erase();
}

/// `%a = mt.chunked_swiglu %gu`, read backward only by the down projection's
/// `mt.linear_grad_weight %a, %dy`, and `%dgu = mt.chunked_swiglu_grad %gu,
/// %da` -> `%dgu, %a2 = mt.chunked_swiglu_recompute_grad %gu, %da` at the
/// gradient, the weight gradient moved after it to read %a2: %a dies with
/// the forward's down projection instead of living until the backward.
bool fuseSwigluRecompute(ChunkedSwiGLUOp forward) {
  if (forward->hasAttr(MtDialect::kRecomputeAttrName) ||
      forward->hasAttr(MtDialect::kBackwardAttrName))
    return false;
  ChunkedSwiGLUGradOp grad;
  for (Operation *user : forward.getInput().getUsers())
    if (auto g = dyn_cast<ChunkedSwiGLUGradOp>(user); g && g.getInput() == forward.getInput()) {
      if (grad)
        return false;
      grad = g;
    }
  LinearGradWeightOp weightGrad;
  for (Operation *user : forward.getResult().getUsers()) {
    auto w = dyn_cast<LinearGradWeightOp>(user);
    if (w && !weightGrad && w.getInput() == forward.getResult())
      weightGrad = w;
    else if (user->hasAttr(MtDialect::kBackwardAttrName))
      return false; // another backward reader keeps %a anyway
  }
  if (!grad || !weightGrad || !samePlace(weightGrad, grad) || grad->getBlock() != forward->getBlock() ||
      grad->getAttr(MtDialect::kVirtualStageAttrName) !=
          forward->getAttr(MtDialect::kVirtualStageAttrName))
    return false;
  // A weight gradient before the gradient moves down to it: none of its
  // readers may come before that.
  const bool moves = weightGrad->isBeforeInBlock(grad);
  if (moves && llvm::any_of(weightGrad.getResult().getUsers(), [&](Operation *u) {
        return u->getBlock() == grad->getBlock() && !grad->isBeforeInBlock(u);
      }))
    return false;
  OpBuilder b(grad);
  auto fused = ChunkedSwiGLURecomputeGradOp::create(
      b, grad.getLoc(), TypeRange{grad.getType(), forward.getType()}, grad.getInput(),
      grad.getDy());
  fused->setDiscardableAttrs(grad->getDiscardableAttrDictionary());
  grad.getResult().replaceAllUsesWith(fused.getDx());
  grad.erase();
  if (moves)
    weightGrad->moveAfter(fused);
  weightGrad.getInputMutable().assign(fused.getOutput());
  return true;
}

/// The query, key and value projections of one attention (sibling linears,
/// SiblingBackward), with the backward at each input gradient of the query
/// projection. None when anything differs (then nothing is fused).
struct Qkv {
  SmallVector<LinearOp, 3> linears; // q, k, v
  SmallVector<SiblingBackward> backwards;
};

/// The linear that `v` is a view or per-position transform of: through
/// reshapes, rotary embeddings, per-head norms and all-gathers (of context
/// parallelism's keys and values).
LinearOp projectionOf(Value v) {
  while (Operation *op = v.getDefiningOp()) {
    if (auto linear = dyn_cast<LinearOp>(op))
      return linear;
    if (!isa<ReshapeOp, RotaryOp, RMSNormOp, AllGatherOp>(op))
      return {};
    v = op->getOperand(0);
  }
  return {};
}

/// The output gradients of `linears` (in their order) at the backward where
/// `input`, the input gradient of one of them, is summed with the others'
/// by adds; none when the sum reads anything else.
std::optional<SmallVector<Value>> siblingOutputGrads(LinearGradInputOp input,
                                                     ArrayRef<LinearOp> linears) {
  Value v = input.getDx();
  while (v.hasOneUse()) {
    auto add = dyn_cast<AddOp>(*v.getUsers().begin());
    if (!add)
      return std::nullopt;
    SmallVector<AddOp> adds;
    SmallVector<Value> leaves, dys(linears.size());
    addTree(add, adds, leaves);
    for (Value leaf : leaves) {
      auto grad = leaf.getDefiningOp<LinearGradInputOp>();
      auto it = llvm::find_if(linears, [&](LinearOp l) {
        return grad && l.getWeight() == grad.getWeight();
      });
      if (it == linears.end() || dys[it - linears.begin()])
        return std::nullopt;
      dys[it - linears.begin()] = grad.getDy();
    }
    if (leaves.size() == linears.size())
      return dys;
    v = add.getResult();
  }
  return std::nullopt;
}

/// The projections of the attention (or ring attention's block) `op` reads.
std::optional<Qkv> matchQkv(Operation *op) {
  Qkv qkv{{projectionOf(op->getOperand(0)), projectionOf(op->getOperand(1)),
           projectionOf(op->getOperand(2))},
          {}};
  if (!areSiblings(qkv.linears))
    return std::nullopt;
  for (Operation *user : qkv.linears[0].getWeight().getUsers()) {
    auto input = dyn_cast<LinearGradInputOp>(user);
    if (!input)
      continue;
    std::optional<SmallVector<Value>> dys = siblingOutputGrads(input, qkv.linears);
    std::optional<SiblingBackward> b =
        dys ? matchSiblingBackward(qkv.linears, *dys, input) : std::nullopt;
    if (!b)
      return std::nullopt;
    // The packed gradient is made before the first GEMM: every part must be.
    Operation *first = backwardPoints(*b).first();
    if (llvm::any_of(*dys, [&](Value dy) {
          Operation *def = dy.getDefiningOp();
          return def && def->getBlock() == first->getBlock() && !def->isBeforeInBlock(first);
        }))
      return std::nullopt;
    qkv.backwards.push_back(std::move(*b));
  }
  return qkv;
}

/// `%q = mt.linear %x, %wq; %k = ...; %v = ...` feeding one attention, and
/// the gradients of each backward -> one linear over `mt.concat_rows %wq,
/// %wk, %wv` (Megatron-Core's linear_qkv) split by mt.split_qkv and,
/// backward, mt.concat_qkv of the three output gradients and one GEMM per
/// gradient.
void fuseLinearQkv(Qkv qkv) {
  auto [linear, weight] = packedLinear(qkv.linears);
  OpBuilder b(linear);
  b.setInsertionPointAfter(linear);
  SmallVector<Type> types;
  for (LinearOp l : qkv.linears)
    types.push_back(l.getType());
  auto split = SplitQKVOp::create(b, linear.getLoc(), types, linear.getResult());
  split->setDiscardableAttrs(linear->getDiscardableAttrDictionary());
  for (auto [l, part] : llvm::zip(qkv.linears, split.getResults()))
    l.getResult().replaceAllUsesWith(part);
  for (SiblingBackward &bw : qkv.backwards) {
    Operation *first = backwardPoints(bw).first();
    b.setInsertionPoint(first);
    SmallVector<Value> dys;
    for (ProjectionGrads g : bw.grads)
      dys.push_back(g.input.getDy());
    auto dqkv = ConcatQKVOp::create(b, first->getLoc(), joinedType(dys, -1), dys);
    dqkv->setDiscardableAttrs(first->getDiscardableAttrDictionary());
    rewriteSiblingBackward(bw, dqkv, weight);
  }
  for (LinearOp l : qkv.linears)
    l.erase();
}

/// Whether two rotaries (mt.rotary, mt.rotary_grad) rotate alike: the same
/// attributes and position ids, and neither is context-parallel.
template <typename RotaryLike> bool sameRotary(RotaryLike a, RotaryLike b) {
  return a.getThetaAttr() == b.getThetaAttr() &&
         a.getScalingFactorAttr() == b.getScalingFactorAttr() &&
         a.getLowFreqFactorAttr() == b.getLowFreqFactorAttr() &&
         a.getHighFreqFactorAttr() == b.getHighFreqFactorAttr() &&
         a.getOriginalMaxPositionAttr() == b.getOriginalMaxPositionAttr() &&
         a.getPositionIds() == b.getPositionIds() && !a.getContextParallelAxis() &&
         !b.getContextParallelAxis();
}

/// The only reader of `v`, if it is an `OpT`.
template <typename OpT> OpT onlyUser(Value v) {
  return v.hasOneUse() ? dyn_cast<OpT>(*v.getUsers().begin()) : OpT();
}

/// The mt.rotary that rotates a part of a split (through its reshape to
/// [B, S, heads, D]) and is its only reader, or null.
RotaryOp rotaryOfPart(Value part) {
  auto reshape = onlyUser<ReshapeOp>(part);
  return reshape ? onlyUser<RotaryOp>(reshape.getResult()) : RotaryOp();
}

/// `%q, %k, %v = mt.split_qkv %qkv` whose q and k are read only through
/// reshapes by two alike mt.rotary and v only by a reshape ->
/// `mt.split_qkv_rotary %qkv`, at the split.
bool fuseSplitQkvRotary(SplitQKVOp split) {
  RotaryOp rq = rotaryOfPart(split.getQ()), rk = rotaryOfPart(split.getK());
  auto rv = onlyUser<ReshapeOp>(split.getV());
  auto packed = cast<RankedTensorType>(split.getInput().getType());
  if (!rq || !rk || !rv || !sameRotary(rq, rk) || packed.getRank() != 3 ||
      rv.getType() != rk.getType() ||
      rq.getType().getShape().take_front(2) != packed.getShape().take_front(2))
    return false;
  for (Operation *op : {rq.getOperation(), rk.getOperation(), rv.getOperation()})
    if (!samePlace(split, op))
      return false;
  // The fused op sits at the split: the position ids must be made by then.
  if (Value pos = rq.getPositionIds())
    if (Operation *def = pos.getDefiningOp();
        def && (def->getBlock() != split->getBlock() || !def->isBeforeInBlock(split)))
      return false;
  OpBuilder b(split);
  auto fused = SplitQKVRotaryOp::create(
      b, split.getLoc(), TypeRange{rq.getType(), rk.getType(), rv.getType()}, split.getInput(),
      rq.getPositionIds(), rq.getThetaAttr(), rq.getScalingFactorAttr(),
      rq.getLowFreqFactorAttr(), rq.getHighFreqFactorAttr(), rq.getOriginalMaxPositionAttr());
  fused->setDiscardableAttrs(split->getDiscardableAttrDictionary());
  rq.getResult().replaceAllUsesWith(fused.getQ());
  rk.getResult().replaceAllUsesWith(fused.getK());
  rv.getResult().replaceAllUsesWith(fused.getV());
  for (RotaryOp rope : {rq, rk}) {
    Operation *reshape = rope.getInput().getDefiningOp();
    rope.erase();
    reshape->erase();
  }
  rv.erase();
  split.erase();
  return true;
}

/// The mt.rotary_grad whose result reaches `part` of a concat through a
/// reshape, read by nothing else, or null.
RotaryGradOp rotaryGradOfPart(Value part) {
  auto reshape = part.getDefiningOp<ReshapeOp>();
  if (!reshape || !part.hasOneUse())
    return {};
  auto grad = reshape.getInput().getDefiningOp<RotaryGradOp>();
  return grad && grad.getDx().hasOneUse() ? grad : RotaryGradOp();
}

/// `mt.concat_qkv` of two alike mt.rotary_grad (through reshapes) and a
/// reshaped dv, each read by nothing else -> `mt.rotary_concat_qkv` of the
/// rotaries' dy and dv, at the concat.
bool fuseRotaryConcatQkv(ConcatQKVOp concat) {
  RotaryGradOp gq = rotaryGradOfPart(concat.getDq()), gk = rotaryGradOfPart(concat.getDk());
  auto rv = concat.getDv().getDefiningOp<ReshapeOp>();
  if (!gq || !gk || !rv || !concat.getDv().hasOneUse() || !sameRotary(gq, gk) ||
      rv.getInput().getType() != gk.getDy().getType() ||
      cast<RankedTensorType>(concat.getType()).getRank() != 3)
    return false;
  for (Operation *op : {gq.getOperation(), gk.getOperation(), rv.getOperation()})
    if (!samePlace(concat, op))
      return false;
  OpBuilder b(concat);
  auto fused = RotaryConcatQKVOp::create(
      b, concat.getLoc(), concat.getType(), gq.getDy(), gk.getDy(), rv.getInput(),
      gq.getPositionIds(), gq.getThetaAttr(), gq.getScalingFactorAttr(),
      gq.getLowFreqFactorAttr(), gq.getHighFreqFactorAttr(), gq.getOriginalMaxPositionAttr());
  fused->setDiscardableAttrs(concat->getDiscardableAttrDictionary());
  concat.getResult().replaceAllUsesWith(fused.getResult());
  Operation *reshapes[] = {concat.getDq().getDefiningOp(), concat.getDk().getDefiningOp()};
  concat.erase();
  rv.erase();
  for (Operation *reshape : reshapes)
    reshape->erase();
  gq.erase();
  gk.erase();
  return true;
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
    // Under the distributed optimizer the packed weights must lie back to
    // back in their bucket too (packInBuckets), else the pair stays apart.
    if (linearFc1) {
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
        if (std::optional<Fc1> fc1 = matchFc1(gate, up);
            fc1 && packInBuckets(getOperation(), {fc1->gate, fc1->up}))
          fuseLinearFc1(*fc1);
    }
    if (swigluRecompute) {
      SmallVector<ChunkedSwiGLUOp> swiglus;
      getOperation().walk([&](ChunkedSwiGLUOp s) { swiglus.push_back(s); });
      for (ChunkedSwiGLUOp s : swiglus)
        fuseSwigluRecompute(s);
    }
    if (linearQkv) {
      SmallVector<Operation *> attentions; // query, key, value first
      getOperation().walk([&](Operation *op) {
        if (isa<AttentionOp, AttentionBlockOp>(op))
          attentions.push_back(op);
      });
      for (Operation *a : attentions)
        if (std::optional<Qkv> qkv = matchQkv(a); qkv && packInBuckets(getOperation(), qkv->linears))
          fuseLinearQkv(std::move(*qkv));
    }
    if (rotaryQkv) {
      SmallVector<SplitQKVOp> splits;
      SmallVector<ConcatQKVOp> concats;
      getOperation().walk([&](SplitQKVOp s) { splits.push_back(s); });
      getOperation().walk([&](ConcatQKVOp c) { concats.push_back(c); });
      for (SplitQKVOp split : splits)
        fuseSplitQkvRotary(split);
      for (ConcatQKVOp concat : concats)
        fuseRotaryConcatQkv(concat);
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
