// Verifiers of the optimizer ops.
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtVerify.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace mt;
using namespace mt::verify;

/// Megatron-Core's decay styles, then transformers' schedules (hf_*).
static constexpr llvm::StringLiteral kLRScheduleStyles[] = {
    "cosine", "linear", "constant", "hf_constant", "hf_constant_with_warmup",
    "hf_linear", "hf_cosine", "hf_cosine_with_min_lr"};

LogicalResult LRScheduleOp::verify() {
  StringRef style = getStyle();
  if (!llvm::is_contained(kLRScheduleStyles, style))
    return emitOpError() << "expects style " << llvm::join(llvm::ArrayRef(kLRScheduleStyles), ", ")
                         << ", got '" << style << "'";
  double maxLr = getMaxLr().convertToDouble(), minLr = getMinLr().convertToDouble();
  if (!(maxLr >= 0.0) || !(minLr >= 0.0) || minLr > maxLr)
    return emitOpError() << "expects 0 <= min_lr (" << minLr << ") <= max_lr ("
                         << maxLr << ")";
  // I64Attr getters return uint64_t: read the attributes as signed.
  int64_t warmup = getWarmupStepsAttr().getInt(), decay = getDecayStepsAttr().getInt();
  // transformers' schedules (hf_*) take a warm-up longer than the run.
  if (style.starts_with("hf_")) {
    if (warmup < 0 || decay < 0)
      return emitOpError() << "expects warmup_steps (" << warmup << ") and decay_steps ("
                           << decay << ") >= 0";
    return success();
  }
  if (warmup < 0 || decay < warmup)
    return emitOpError() << "expects 0 <= warmup_steps (" << warmup
                         << ") <= decay_steps (" << decay << ")";
  return success();
}

LogicalResult AdamWOp::verify() {
  Type t = getParam().getType();
  if (failed(expectType(*this, "grad", getGrad(), t)) ||
      failed(expectType(*this, "exp_avg", getExpAvg(), t)) ||
      failed(expectType(*this, "exp_avg_sq", getExpAvgSq(), t)) ||
      failed(expectType(*this, "new_param", getNewParam(), t)) ||
      failed(expectType(*this, "new_exp_avg", getNewExpAvg(), t)) ||
      failed(expectType(*this, "new_exp_avg_sq", getNewExpAvgSq(), t)))
    return failure();
  double b1 = getBeta1().convertToDouble(), b2 = getBeta2().convertToDouble();
  if (!(b1 >= 0.0 && b1 < 1.0) || !(b2 >= 0.0 && b2 < 1.0))
    return emitOpError() << "expects betas in [0, 1), got beta1 = " << b1
                         << ", beta2 = " << b2;
  if (!(getEps().convertToDouble() > 0.0) ||
      getWeightDecay().convertToDouble() < 0.0)
    return emitOpError() << "expects eps > 0 and weight_decay >= 0, got eps = "
                         << getEps().convertToDouble() << ", weight_decay = "
                         << getWeightDecay().convertToDouble();
  return success();
}

LogicalResult SumSquaresOp::verify() {
  int64_t replicas = getReplicasAttr().getInt();
  if (replicas < 1)
    return emitOpError() << "expects replicas >= 1, got " << replicas;
  if (auto flags = getReplicated(); flags && flags->size() != getGrads().size())
    return emitOpError() << "expects one replicated flag per operand (" << getGrads().size()
                         << "), got " << flags->size();
  if (auto stages = getStages()) {
    if (stages->size() != getGrads().size())
      return emitOpError() << "expects one stage per operand (" << getGrads().size() << "), got "
                           << stages->size();
    for (int64_t s : *stages)
      if (s < 0)
        return emitOpError() << "expects non-negative stages, got " << s;
  }
  return success();
}
