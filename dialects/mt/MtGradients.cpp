// Reverse-mode derivative of each differentiable mt op
// (DifferentiableOpInterface), used by the mt-autodiff pass.
#include "dialects/mt/MtDialect.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mt;

namespace {

/// The gradient of a result, or zeros of its type when none flows back.
Value gradOrZeros(OpBuilder &b, Location loc, Value result, Value grad) {
  return grad ? grad : Value(ZerosOp::create(b, loc, result.getType()));
}

void resize(SmallVectorImpl<Value> &grads, Operation *op) {
  grads.assign(op->getNumOperands(), Value());
}

} // namespace

LogicalResult EmbeddingOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (needed[1])
    grads[1] = EmbeddingGradOp::create(b, getLoc(), getTable().getType(),
                                       getIds(), dys[0], getVocabParallelAxisAttr());
  return success();
}

LogicalResult LinearOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                       ArrayRef<bool> needed,
                                       SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  Location loc = getLoc();
  if (needed[0])
    grads[0] = LinearGradInputOp::create(b, loc, getInput().getType(), dys[0],
                                         getWeight());
  if (needed[1])
    grads[1] = LinearGradWeightOp::create(b, loc, getWeight().getType(),
                                          getInput(), dys[0]);
  if (getBias() && needed[2])
    grads[2] = BiasGradOp::create(b, loc, getBias().getType(), dys[0]);
  return success();
}

LogicalResult BiasAddOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                        ArrayRef<bool> needed,
                                        SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (needed[0])
    grads[0] = dys[0];
  if (needed[1])
    grads[1] = BiasGradOp::create(b, getLoc(), getBias().getType(), dys[0]);
  return success();
}

LogicalResult ReshapeOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                        ArrayRef<bool> needed,
                                        SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (needed[0])
    grads[0] = ReshapeOp::create(b, getLoc(), getInput().getType(), dys[0]);
  return success();
}

LogicalResult AddOp::buildGradients(OpBuilder &, ArrayRef<Value> dys,
                                    ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  for (int i = 0; i < 2; ++i)
    if (needed[i])
      grads[i] = dys[0];
  return success();
}

LogicalResult RMSNormOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                        ArrayRef<bool> needed,
                                        SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  auto g = RMSNormGradOp::create(b, getLoc(), getInput().getType(),
                                 getWeight().getType(), getInput(), getWeight(),
                                 dys[0], getEpsAttr());
  if (needed[0])
    grads[0] = g.getDx();
  if (needed[1])
    grads[1] = g.getDweight();
  return success();
}

LogicalResult LayerNormOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  Type wt = getWeight().getType();
  auto g = LayerNormGradOp::create(b, getLoc(), getInput().getType(), wt, wt,
                                   getInput(), getWeight(), dys[0], getEpsAttr());
  Value results[] = {g.getDx(), g.getDweight(), g.getDbias()};
  for (int i = 0; i < 3; ++i)
    if (needed[i])
      grads[i] = results[i];
  return success();
}

LogicalResult RotaryOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                       ArrayRef<bool> needed,
                                       SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (needed[0])
    grads[0] = RotaryGradOp::create(
        b, getLoc(), getType(), dys[0], getPositionIds(), getThetaAttr(),
        getScalingFactorAttr(),
        getLowFreqFactorAttr(), getHighFreqFactorAttr(),
        getOriginalMaxPositionAttr(), getContextParallelAxisAttr());
  return success();
}

LogicalResult AttentionOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  auto g = AttentionGradOp::create(
      b, getLoc(), getQuery().getType(), getKey().getType(),
      getValue().getType(), getQuery(), getKey(), getValue(), getResult(),
      dys[0], getPositionIds(), getNumHeadsAttr(), getNumKvHeadsAttr(), getHeadDimAttr(),
      getScaleAttr(), getContextParallelAxisAttr());
  Value results[] = {g.getDquery(), g.getDkey(), g.getDvalue()};
  for (int i = 0; i < 3; ++i)
    if (needed[i])
      grads[i] = results[i];
  return success();
}

LogicalResult SwiGLUOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                       ArrayRef<bool> needed,
                                       SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  auto g = SwiGLUGradOp::create(b, getLoc(), getType(), getType(), getGate(),
                                getUp(), dys[0]);
  if (needed[0])
    grads[0] = g.getDgate();
  if (needed[1])
    grads[1] = g.getDup();
  return success();
}

LogicalResult GELUOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                     ArrayRef<bool> needed,
                                     SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (needed[0])
    grads[0] = GELUGradOp::create(b, getLoc(), getType(), getInput(), dys[0],
                                  getApproximateTanhAttr());
  return success();
}

LogicalResult MoERouterOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                          ArrayRef<bool> needed,
                                          SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  Location loc = getLoc();
  Value dweights = gradOrZeros(b, loc, getWeights(), dys[0]);
  Value daux = gradOrZeros(b, loc, getAuxLoss(), dys[2]);
  Value dz = gradOrZeros(b, loc, getZLoss(), dys[3]);
  auto g = MoERouterGradOp::create(
      b, loc, getInput().getType(), getWeight().getType(), getInput(), getWeight(), dweights,
      daux, dz, getTokenCounts(), getTopKAttr(), getNormTopkProbAttr(), getAuxLossCoeffAttr(),
      getLoadBalancingTypeAttr(), getZLossCoeffAttr(), getTokenShardsAttr());
  if (needed[0])
    grads[0] = g.getDx();
  if (needed[1])
    grads[1] = g.getDweight();
  return success();
}

LogicalResult SigmoidGateOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                            ArrayRef<bool> needed,
                                            SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  auto g = SigmoidGateGradOp::create(b, getLoc(), getGate().getType(), getType(),
                                     getGate(), getInput(), dys[0]);
  if (needed[0])
    grads[0] = g.getDgate();
  if (needed[1])
    grads[1] = g.getDinput();
  return success();
}

LogicalResult CrossEntropyOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                             ArrayRef<bool> needed,
                                             SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (needed[0])
    grads[0] = CrossEntropyGradOp::create(b, getLoc(), getLogits().getType(),
                                          getLogits(), getLabels(), getMask(),
                                          dys[0], getVocabParallelAxisAttr(),
                                          getValidVocabAttr());
  return success();
}

LogicalResult AttentionBlockOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                               ArrayRef<bool> needed,
                                               SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  Location loc = getLoc();
  auto g = AttentionBlockGradOp::create(
      b, loc, getQuery().getType(), getKey().getType(), getValue().getType(), getQuery(),
      getKey(), getValue(), getResult(), getLse(), gradOrZeros(b, loc, getResult(), dys[0]),
      gradOrZeros(b, loc, getLse(), dys[1]), getPositionIds(), getNumHeadsAttr(),
      getNumKvHeadsAttr(), getHeadDimAttr(), getScaleAttr(), getContextParallelAxisAttr(),
      getStepAttr());
  Value results[] = {g.getDquery(), g.getDkey(), g.getDvalue()};
  for (int i = 0; i < 3; ++i)
    if (needed[i])
      grads[i] = results[i];
  return success();
}

LogicalResult AttentionMergeOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                               ArrayRef<bool> needed,
                                               SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  Location loc = getLoc();
  auto g = AttentionMergeGradOp::create(
      b, loc, getOutA().getType(), getLseA().getType(), getOutB().getType(),
      getLseB().getType(), getOutA(), getLseA(), getOutB(), getLseB(), getResult(), getLse(),
      gradOrZeros(b, loc, getResult(), dys[0]), gradOrZeros(b, loc, getLse(), dys[1]));
  Value results[] = {g.getDoutA(), g.getDlseA(), g.getDoutB(), g.getDlseB()};
  for (int i = 0; i < 4; ++i)
    if (needed[i])
      grads[i] = results[i];
  return success();
}

LogicalResult ScaleByOp::buildGradients(OpBuilder &b, ArrayRef<Value> dys,
                                        ArrayRef<bool> needed,
                                        SmallVectorImpl<Value> &grads) {
  resize(grads, *this);
  if (needed[1])
    return emitOpError() << "is differentiable in its input only, but its factor is on the "
                            "path from a parameter to the loss";
  if (needed[0])
    grads[0] = ScaleByOp::create(b, getLoc(), getInput().getType(), dys[0], getFactor(),
                                 getInverseAttr());
  return success();
}
