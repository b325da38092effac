// Verifiers of the `mt` ops: every shape rule, with the offending values quoted.
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtMesh.h"
#include "dialects/mt/MtVerify.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace mt;
using namespace mt::verify;


//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  auto type = getTensorType();
  if (type.getNumElements() == 0)
    return emitOpError() << "expects a non-empty shape, got " << shapeStr(type);
  if (getInit() == InitKind::normal) {
    if (!getStd())
      return emitOpError() << "expects 'std' with init(normal)";
    if (!(getStd()->convertToDouble() > 0.0))
      return emitOpError() << "expects std > 0, got "
                           << getStd()->convertToDouble();
  } else if (getStd()) {
    return emitOpError() << "expects no 'std' with init("
                         << stringifyInitKind(getInit()) << ")";
  }
  bool wildcard = llvm::is_contained(llvm::split(getSymName(), '.'), "*");
  if (getGroupedExperts() != wildcard)
    return emitOpError()
           << (wildcard ? "has '*' in its name but no 'grouped_experts'"
                        : "is 'grouped_experts' but its name has no '*' "
                          "component standing for the expert index");
  // I64Attr getters return uint64_t: read the attribute as signed.
  if (IntegerAttr rows = getHfRowsAttr();
      rows && (rows.getInt() < 1 || rows.getInt() > type.getDimSize(0)))
    return emitOpError() << "expects 1 <= hf_rows <= " << type.getDimSize(0) << ", got "
                         << rows.getInt();
  if (getGroupedExperts() && type.getRank() < 2)
    return emitOpError() << "expects a grouped expert weight of rank >= 2 "
                            "([experts, ...]), got "
                         << shapeStr(type);
  return success();
}

LogicalResult ParamOp::verifySymbolUses(SymbolTableCollection &symbols) {
  ShardingAttr sharding = getShardingAttr();
  if (!sharding)
    return success();
  return verifySharding([&] { return emitOpError(); }, sharding, getTensorType(),
                        lookupGrid(*this, sharding.getGrid(), &symbols));
}

RankedTensorType ParamOp::getLocalType() {
  ShardingAttr sharding = getShardingAttr();
  if (!sharding)
    return getTensorType();
  return localType(getTensorType(), sharding, lookupGrid(*this, sharding.getGrid()));
}

LogicalResult WeightOp::verifySymbolUses(SymbolTableCollection &symbols) {
  auto param = symbols.lookupNearestSymbolFrom<ParamOp>(*this, getParamAttr());
  if (!param)
    return emitOpError() << "refers to " << getParamAttr()
                         << ", which is not an 'mt.param'";
  if (param.getLocalType() != getType())
    return emitOpError() << "expects type " << param.getLocalType()
                         << " of parameter " << getParamAttr()
                         << (param.getSharding() ? " (its local shard)" : "")
                         << ", got " << getType();
  return success();
}

//===----------------------------------------------------------------------===//
// Dense layers
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  auto ids = tensorOf(getIds()), table = tensorOf(getTable());
  if (failed(expectRank(*this, "ids", ids, 2)) ||
      failed(expectRank(*this, "table", table, 2)))
    return failure();
  auto result = tensorOf(getResult());
  if (result.getElementType() != table.getElementType())
    return emitOpError() << "expects result element type "
                         << table.getElementType() << " (the table's), got "
                         << result.getElementType();
  return expectShape(*this, "result", result,
                     {ids.getDimSize(0), ids.getDimSize(1), table.getDimSize(1)});
}

LogicalResult LinearOp::verify() {
  auto in = tensorOf(getInput()), w = tensorOf(getWeight());
  if (in.getRank() < 1)
    return emitOpError() << "expects input of rank >= 1";
  if (failed(expectRank(*this, "weight", w, 2)) ||
      failed(expectSameElementType(*this, "input", in, "weight", w)))
    return failure();
  int64_t inFeatures = in.getShape().back();
  if (w.getDimSize(1) != inFeatures)
    return emitOpError() << "expects weight [out, in] with in = " << inFeatures
                         << " (the last axis of input " << shapeStr(in)
                         << "), got " << shapeStr(w);
  int64_t out = w.getDimSize(0);
  if (getBias()) {
    auto b = tensorOf(getBias());
    if (failed(expectShape(*this, "bias", b, {out})) ||
        failed(expectSameElementType(*this, "input", in, "bias", b)))
      return failure();
  }
  SmallVector<int64_t> shape(in.getShape());
  shape.back() = out;
  auto result = tensorOf(getResult());
  if (failed(expectSameElementType(*this, "input", in, "result", result)))
    return failure();
  return expectShape(*this, "result", result, shape);
}

LogicalResult BiasAddOp::verify() {
  auto in = tensorOf(getInput());
  if (in.getRank() < 1)
    return emitOpError() << "expects input of rank >= 1";
  if (failed(verifyNormWeight(*this, "bias", in, tensorOf(getBias()))))
    return failure();
  return expectType(*this, "result", getResult(), in);
}

LogicalResult ReshapeOp::verify() {
  auto in = tensorOf(getInput()), out = tensorOf(getResult());
  if (failed(expectSameElementType(*this, "input", in, "result", out)))
    return failure();
  if (in.getNumElements() != out.getNumElements())
    return emitOpError() << "expects the element count to be kept, got "
                         << shapeStr(in) << " (" << in.getNumElements()
                         << ") -> " << shapeStr(out) << " ("
                         << out.getNumElements() << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// Normalization
//===----------------------------------------------------------------------===//

LogicalResult RMSNormOp::verify() {
  return verifyNorm(*this, getInput(), getWeight(), getResult(),
                    getEps().convertToDouble());
}

LogicalResult AddRMSNormOp::verify() {
  if (failed(verifyNorm(*this, getInput(), getWeight(), getResult(),
                        getEps().convertToDouble())) ||
      failed(expectType(*this, "residual", getResidual(), getInput().getType())))
    return failure();
  return expectType(*this, "sum", getSum(), getInput().getType());
}

LogicalResult LayerNormOp::verify() {
  if (failed(verifyNorm(*this, getInput(), getWeight(), getResult(),
                        getEps().convertToDouble())))
    return failure();
  return verifyNormWeight(*this, "bias", tensorOf(getInput()),
                          tensorOf(getBias()));
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

LogicalResult RotaryOp::verify() {
  auto in = tensorOf(getInput());
  if (failed(expectRank(*this, "input [B, S, heads, head_dim]", in, 4)))
    return failure();
  int64_t headDim = in.getDimSize(3);
  if (failed(expectPositionIds(*this, getPositionIds(), getInput())))
    return failure();
  if (getContextParallelAxis() && (getPositionIds() || in.getDimSize(1) % 2 != 0))
    return emitOpError() << "expects an even sequence (" << in.getDimSize(1)
                         << ", two chunks) and no position_ids with context_parallel_axis '"
                         << *getContextParallelAxis() << "'";
  return verifyRotaryParams(*this, headDim);
}

LogicalResult AttentionOp::verify() {
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads(), dim = getHeadDim();
  if (heads <= 0 || kvHeads <= 0 || dim <= 0)
    return emitOpError() << "expects positive num_heads (" << heads
                         << "), num_kv_heads (" << kvHeads << ") and head_dim ("
                         << dim << ")";
  if (heads % kvHeads != 0)
    return emitOpError() << "expects num_heads (" << heads
                         << ") divisible by num_kv_heads (" << kvHeads << ")";
  auto q = tensorOf(getQuery()), k = tensorOf(getKey()), v = tensorOf(getValue());
  if (failed(expectRank(*this, "query", q, 4)))
    return failure();
  int64_t b = q.getDimSize(0), s = q.getDimSize(1);
  // Under context parallelism the keys and values are the gathered sequence.
  int64_t kvSeq = k.getRank() == 4 ? k.getDimSize(1) : s;
  if (getContextParallelAxis()) {
    if (s % 2 != 0 || kvSeq % s != 0)
      return emitOpError() << "expects the key sequence (" << kvSeq
                           << ") to be a multiple of the query sequence (" << s
                           << "), which is even (two chunks) under context_parallel_axis '"
                           << *getContextParallelAxis() << "'";
  } else {
    kvSeq = s;
  }
  if (failed(expectShape(*this, "query", q, {b, s, heads, dim})) ||
      failed(expectShape(*this, "key", k, {b, kvSeq, kvHeads, dim})) ||
      failed(expectShape(*this, "value", v, {b, kvSeq, kvHeads, dim})) ||
      failed(expectSameElementType(*this, "query", q, "key", k)) ||
      failed(expectSameElementType(*this, "query", q, "value", v)) ||
      failed(expectPositionIds(*this, getPositionIds(), getQuery())))
    return failure();
  if (!(getScale().convertToDouble() > 0.0))
    return emitOpError() << "expects scale > 0, got "
                         << getScale().convertToDouble();
  if (tensorOf(getResult()) != q)
    return emitOpError() << "expects result type " << q << ", got "
                         << getResult().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

LogicalResult MoERouterOp::verify() {
  auto in = tensorOf(getInput()), w = tensorOf(getWeight());
  if (failed(expectRank(*this, "input", in, 3)) ||
      failed(expectRank(*this, "weight", w, 2)) ||
      failed(expectSameElementType(*this, "input", in, "weight", w)))
    return failure();
  int64_t experts = w.getDimSize(0), topK = getTopK();
  if (w.getDimSize(1) != in.getDimSize(2))
    return emitOpError() << "expects weight [experts, hidden] with hidden = "
                         << in.getDimSize(2) << ", got " << shapeStr(w);
  if (topK < 1 || topK > experts)
    return emitOpError() << "expects 1 <= top_k <= experts (" << experts
                         << "), got " << topK;
  if (getAuxLossCoeff().convertToDouble() < 0.0)
    return emitOpError() << "expects aux_loss_coeff >= 0, got "
                         << getAuxLossCoeff().convertToDouble();
  if (auto type = getLoadBalancingType();
      type && *type != "aux_loss" && *type != "seq_aux_loss" && *type != "none")
    return emitOpError() << "expects load_balancing_type \"aux_loss\", \"seq_aux_loss\" or "
                            "\"none\", got \"" << *type << "\"";
  if (auto z = getZLossCoeff(); z && !(z->convertToDouble() >= 0.0))
    return emitOpError() << "expects z_loss_coeff >= 0, got " << z->convertToDouble();
  SmallVector<int64_t> routed = {in.getDimSize(0), in.getDimSize(1), topK};
  if (failed(expectShape(*this, "weights", tensorOf(getWeights()), routed)) ||
      failed(expectShape(*this, "indices", tensorOf(getIndices()), routed)))
    return failure();
  return verifyRouterCounts(*this, getTokenCounts(), in, experts, getLoadBalancingType(),
                            getTokenShards());
}

LogicalResult MoERouterCountsOp::verify() {
  auto in = tensorOf(getInput()), w = tensorOf(getWeight());
  if (failed(expectRank(*this, "input", in, 3)) || failed(expectRank(*this, "weight", w, 2)))
    return failure();
  const int64_t experts = w.getDimSize(0);
  if (w.getDimSize(1) != in.getDimSize(2))
    return emitOpError() << "expects weight [experts, hidden] with hidden = "
                         << in.getDimSize(2) << ", got " << shapeStr(w);
  if (getTopK() < 1 || int64_t(getTopK()) > experts)
    return emitOpError() << "expects 1 <= top_k <= experts (" << experts << "), got "
                         << getTopK();
  return expectShape(*this, "counts", tensorOf(getCounts()),
                     routerCountsShape(in, experts, getLoadBalancingType()));
}

LogicalResult SigmoidGateOp::verify() {
  auto gate = tensorOf(getGate()), in = tensorOf(getInput());
  if (in.getRank() < 1)
    return emitOpError() << "expects input of rank >= 1, got " << shapeStr(in);
  SmallVector<int64_t> gateShape(in.getShape());
  gateShape.back() = 1;
  if (failed(expectShape(*this, "gate", gate, gateShape)) ||
      failed(expectSameElementType(*this, "gate", gate, "input", in)))
    return failure();
  if (tensorOf(getResult()) != in)
    return emitOpError() << "expects result type " << in << ", got "
                         << getResult().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

LogicalResult CrossEntropyOp::verify() {
  auto logits = tensorOf(getLogits());
  if (failed(expectRank(*this, "logits", logits, 3)))
    return failure();
  SmallVector<int64_t> tokens = {logits.getDimSize(0), logits.getDimSize(1)};
  if (failed(expectShape(*this, "labels", tensorOf(getLabels()), tokens)))
    return failure();
  return expectShape(*this, "mask", tensorOf(getMask()), tokens);
}

LogicalResult VocabParallelLogitsMaxOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())) || failed(expectValidVocab(*this, getValidVocab())))
    return failure();
  return verifyVocabRows(*this, getLogits(), {{"row_max", getRowMax()}});
}

LogicalResult VocabParallelPredictedLogitsOp::verify() {
  if (failed(expectMeshAxis(*this, getAxis())) || failed(expectValidVocab(*this, getValidVocab())))
    return failure();
  return verifyVocabRows(*this, getLogits(),
                         {{"row_max", getRowMax()}, {"labels", getLabels()},
                          {"predicted_logits", getPredictedLogits()},
                          {"sum_exp_logits", getSumExpLogits()}});
}

LogicalResult CrossEntropyLossOp::verify() {
  auto rows = tensorOf(getMask());
  if (failed(expectRank(*this, "mask", rows, 2)))
    return failure();
  for (auto [name, v] : {std::pair<StringRef, Value>{"row_max", getRowMax()},
                         {"predicted_logits", getPredictedLogits()},
                         {"sum_exp_logits", getSumExpLogits()}})
    if (failed(expectShape(*this, name, tensorOf(v), rows.getShape())))
      return failure();
  return success();
}

#define GET_OP_CLASSES
#include "dialects/mt/MtOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Ring attention (context parallelism, cp_comm_type p2p)
//===----------------------------------------------------------------------===//

LogicalResult AttentionBlockOp::verify() {
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads(), dim = getHeadDim();
  if (heads <= 0 || kvHeads <= 0 || dim <= 0 || heads % kvHeads != 0)
    return emitOpError() << "expects positive num_heads (" << heads << "), num_kv_heads ("
                         << kvHeads << ") and head_dim (" << dim
                         << "), num_heads divisible by num_kv_heads";
  auto q = tensorOf(getQuery());
  if (failed(expectRank(*this, "query", q, 4)))
    return failure();
  int64_t b = q.getDimSize(0), s = q.getDimSize(1);
  if (failed(expectShape(*this, "query", q, {b, s, heads, dim})) ||
      failed(expectShape(*this, "key", tensorOf(getKey()), {b, s, kvHeads, dim})) ||
      failed(expectShape(*this, "value", tensorOf(getValue()), {b, s, kvHeads, dim})) ||
      failed(expectType(*this, "result", getResult(), getQuery().getType())) ||
      failed(expectShape(*this, "lse", tensorOf(getLse()), {b, heads, s})) ||
      failed(expectPositionIds(*this, getPositionIds(), getQuery())))
    return failure();
  if (s % 2 != 0 || int64_t(getStep()) < 0)
    return emitOpError() << "expects an even sequence (" << s
                         << ", two chunks) and a step >= 0, got " << getStep();
  return success();
}

LogicalResult AttentionMergeOp::verify() {
  auto o = tensorOf(getOutA());
  if (failed(expectRank(*this, "out_a", o, 4)))
    return failure();
  Type lse = RankedTensorType::get({o.getDimSize(0), o.getDimSize(2), o.getDimSize(1)},
                                   Float32Type::get(getContext()));
  if (failed(expectType(*this, "out_b", getOutB(), o)) ||
      failed(expectType(*this, "result", getResult(), o)) ||
      failed(expectType(*this, "lse_a", getLseA(), lse)) ||
      failed(expectType(*this, "lse_b", getLseB(), lse)))
    return failure();
  return expectType(*this, "lse", getLse(), lse);
}
