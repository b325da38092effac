// Verifiers of the gradient ops: each gradient has the type of what it is
// the gradient of, and the operands fit together as in the forward op.
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtVerify.h"

#include <tuple>

using namespace mlir;
using namespace mt;
using namespace mt::verify;

LogicalResult EmbeddingGradOp::verify() {
  auto ids = tensorOf(getIds()), dy = tensorOf(getDy()), dt = tensorOf(getDtable());
  if (failed(expectRank(*this, "ids", ids, 2)) ||
      failed(expectRank(*this, "dtable", dt, 2)) ||
      failed(expectSameElementType(*this, "dy", dy, "dtable", dt)))
    return failure();
  return expectShape(*this, "dy", dy,
                     {ids.getDimSize(0), ids.getDimSize(1), dt.getDimSize(1)});
}

LogicalResult LinearGradInputOp::verify() {
  auto dy = tensorOf(getDy()), w = tensorOf(getWeight());
  if (failed(expectRank(*this, "weight", w, 2)))
    return failure();
  if (dy.getRank() < 1 || dy.getShape().back() != w.getDimSize(0))
    return emitOpError() << "expects dy [..., " << w.getDimSize(0)
                         << "] for weight " << shapeStr(w) << ", got "
                         << shapeStr(dy);
  SmallVector<int64_t> shape(dy.getShape());
  shape.back() = w.getDimSize(1);
  return expectShape(*this, "dx", tensorOf(getDx()), shape);
}

LogicalResult LinearGradWeightOp::verify() {
  auto x = tensorOf(getInput()), dy = tensorOf(getDy());
  if (x.getRank() < 1 || x.getRank() != dy.getRank() ||
      x.getShape().drop_back() != dy.getShape().drop_back())
    return emitOpError() << "expects input and dy with the same leading "
                            "dimensions, got "
                         << shapeStr(x) << " and " << shapeStr(dy);
  return expectShape(*this, "dweight", tensorOf(getDweight()),
                     {dy.getShape().back(), x.getShape().back()});
}

LogicalResult BiasGradOp::verify() {
  auto dy = tensorOf(getDy());
  if (dy.getRank() < 1)
    return emitOpError() << "expects dy of rank >= 1";
  return expectShape(*this, "dbias", tensorOf(getDbias()), {dy.getShape().back()});
}

LogicalResult RMSNormGradOp::verify() {
  if (failed(expectType(*this, "dy", getDy(), getInput().getType())) ||
      failed(expectType(*this, "dx", getDx(), getInput().getType())) ||
      failed(expectType(*this, "dweight", getDweight(), getWeight().getType())))
    return failure();
  return verifyNormWeight(*this, "weight", tensorOf(getInput()), tensorOf(getWeight()));
}

LogicalResult AddRMSNormGradOp::verify() {
  if (failed(expectType(*this, "dy", getDy(), getInput().getType())) ||
      failed(expectType(*this, "dresidual", getDresidual(), getInput().getType())) ||
      failed(expectType(*this, "dx", getDx(), getInput().getType())) ||
      failed(expectType(*this, "dweight", getDweight(), getWeight().getType())))
    return failure();
  if (!(getEps().convertToDouble() > 0.0))
    return emitOpError() << "expects eps > 0, got " << getEps().convertToDouble();
  return verifyNormWeight(*this, "weight", tensorOf(getInput()), tensorOf(getWeight()));
}

LogicalResult LayerNormGradOp::verify() {
  if (failed(expectType(*this, "dy", getDy(), getInput().getType())) ||
      failed(expectType(*this, "dx", getDx(), getInput().getType())) ||
      failed(expectType(*this, "dweight", getDweight(), getWeight().getType())) ||
      failed(expectType(*this, "dbias", getDbias(), getWeight().getType())))
    return failure();
  return verifyNormWeight(*this, "weight", tensorOf(getInput()), tensorOf(getWeight()));
}

LogicalResult RotaryGradOp::verify() {
  if (failed(expectRank(*this, "dy", tensorOf(getDy()), 4)) ||
      failed(expectPositionIds(*this, getPositionIds(), getDy())))
    return failure();
  return expectType(*this, "dx", getDx(), getDy().getType());
}

LogicalResult AttentionGradOp::verify() {
  if (failed(expectType(*this, "out", getOut(), getQuery().getType())) ||
      failed(expectType(*this, "dout", getDout(), getQuery().getType())) ||
      failed(expectType(*this, "dquery", getDquery(), getQuery().getType())) ||
      failed(expectType(*this, "dkey", getDkey(), getKey().getType())) ||
      failed(expectType(*this, "dvalue", getDvalue(), getValue().getType())))
    return failure();
  auto q = tensorOf(getQuery());
  if (q.getRank() != 4 || q.getDimSize(2) != getNumHeads() ||
      q.getDimSize(3) != getHeadDim())
    return emitOpError() << "expects query [B, S, " << getNumHeads() << ", "
                         << getHeadDim() << "], got " << shapeStr(q);
  return expectPositionIds(*this, getPositionIds(), getQuery());
}

LogicalResult SwiGLUGradOp::verify() {
  Type t = getGate().getType();
  if (failed(expectType(*this, "up", getUp(), t)) ||
      failed(expectType(*this, "dy", getDy(), t)) ||
      failed(expectType(*this, "dgate", getDgate(), t)))
    return failure();
  return expectType(*this, "dup", getDup(), t);
}

LogicalResult GELUGradOp::verify() {
  if (failed(expectType(*this, "dy", getDy(), getInput().getType())))
    return failure();
  return expectType(*this, "dx", getDx(), getInput().getType());
}

LogicalResult SigmoidGateGradOp::verify() {
  if (failed(expectType(*this, "dy", getDy(), getInput().getType())) ||
      failed(expectType(*this, "dinput", getDinput(), getInput().getType())))
    return failure();
  return expectType(*this, "dgate", getDgate(), getGate().getType());
}

LogicalResult MoERouterGradOp::verify() {
  if (failed(expectType(*this, "dx", getDx(), getInput().getType())) ||
      failed(expectType(*this, "dweight", getDweight(), getWeight().getType())))
    return failure();
  auto x = tensorOf(getInput());
  if (failed(expectRank(*this, "input", x, 3)) ||
      failed(expectShape(*this, "dweights", tensorOf(getDweights()),
                         {x.getDimSize(0), x.getDimSize(1), int64_t(getTopK())})))
    return failure();
  return verifyRouterCounts(*this, getTokenCounts(), x, tensorOf(getWeight()).getDimSize(0),
                            getLoadBalancingType(), getTokenShards());
}

LogicalResult VocabParallelCrossEntropyGradOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())) || failed(expectValidVocab(*this, getValidVocab())) ||
      failed(expectType(*this, "dlogits", getDlogits(), getLogits().getType())))
    return failure();
  return verifyVocabRows(*this, getLogits(),
                         {{"labels", getLabels()}, {"mask", getMask()}, {"row_max", getRowMax()},
                          {"sum_exp_logits", getSumExpLogits()}});
}

LogicalResult CrossEntropyGradOp::verify() {
  auto logits = tensorOf(getLogits());
  if (failed(expectRank(*this, "logits", logits, 3)) ||
      failed(expectType(*this, "dlogits", getDlogits(), logits)))
    return failure();
  SmallVector<int64_t> tokens = {logits.getDimSize(0), logits.getDimSize(1)};
  if (failed(expectShape(*this, "labels", tensorOf(getLabels()), tokens)))
    return failure();
  return expectShape(*this, "mask", tensorOf(getMask()), tokens);
}

LogicalResult AttentionBlockGradOp::verify() {
  if (failed(expectType(*this, "out", getOut(), getQuery().getType())) ||
      failed(expectType(*this, "dout", getDout(), getQuery().getType())) ||
      failed(expectType(*this, "dlse", getDlse(), getLse().getType())) ||
      failed(expectType(*this, "dquery", getDquery(), getQuery().getType())) ||
      failed(expectType(*this, "dkey", getDkey(), getKey().getType())) ||
      failed(expectType(*this, "dvalue", getDvalue(), getValue().getType())))
    return failure();
  return expectPositionIds(*this, getPositionIds(), getQuery());
}

LogicalResult AttentionMergeGradOp::verify() {
  Type o = getOutA().getType(), l = getLseA().getType();
  const std::tuple<const char *, Value, Type> checks[] = {
      {"out_b", getOutB(), o},   {"out", getOut(), o},       {"dout", getDout(), o},
      {"dout_a", getDoutA(), o}, {"dout_b", getDoutB(), o},  {"lse_b", getLseB(), l},
      {"lse", getLse(), l},      {"dlse", getDlse(), l},     {"dlse_a", getDlseA(), l},
      {"dlse_b", getDlseB(), l}};
  for (auto [name, v, t] : checks)
    if (failed(expectType(*this, name, v, t)))
      return failure();
  return success();
}
