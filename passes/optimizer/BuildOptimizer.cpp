// mt-build-optimizer: the optimizer half of a training step as IR, with
// replicated AdamW state (gradients all-reduced over dp) or Megatron-Core's
// distributed optimizer (gradient buckets reduce-scattered over dp, each rank
// updating its shard, parameters all-gathered).
#include "passes/Passes.h"

#include "dialects/mt/MtMesh.h"
#include "passes/optimizer/Buckets.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

#include <map>

namespace mt {
#define GEN_PASS_DEF_BUILDOPTIMIZER
#include "passes/Passes.h.inc"
} // namespace mt

using namespace mlir;
using namespace mt;

namespace {

/// The data-parallel axis dense gradients are averaged over and the
/// distributed optimizer shards over.
constexpr StringLiteral kDataParallelAxis = "dp";
/// The data-parallel axis of expert layers under expert parallelism
/// (@expert_mesh): the ranks that hold the same experts.
constexpr StringLiteral kExpertDataParallelAxis = "edp";

/// Megatron: no weight decay on norms and biases (rank-1 parameters).
double weightDecayOf(ParamOp p, double weightDecay) {
  return p.getTensorType().getRank() == 1 ? 0.0 : weightDecay;
}

bool isReplicated(ParamOp p) {
  ShardingAttr sharding = p.getShardingAttr();
  return !sharding || !sharding.isSplit();
}

/// Whether `p` is laid out on @expert_mesh (mt-partition-ep's experts).
bool onExpertMesh(ParamOp p) {
  ShardingAttr sharding = p.getShardingAttr();
  return sharding && sharding.getGrid().getValue() == kExpertMeshName;
}

/// One of Megatron-Core's gradient buckets (param_and_grad_buffer.py): the
/// local gradients (and parameters) of `params` laid out contiguously, each
/// from `offsets[i]`, padded to `elements`, a multiple of its data-parallel
/// size P (denseShardAxis's, or edp for experts on @expert_mesh), so that rank r owns
/// elements [r·elements/P, (r+1)·elements/P) and one reduce-scatter reduces
/// the whole bucket.
struct Bucket {
  SmallVector<ParamOp> params;
  SmallVector<int64_t> offsets;
  int64_t elements = 0;
  double weightDecay = 0;
  bool replicated = true;
  bool experts = false; // on @expert_mesh: sharded over edp
};

/// The layer every read of each parameter in @forward_backward belongs to,
/// or none (embedding, final norm, head, or read by several layers).
llvm::StringMap<std::optional<int64_t>> layersOf(ModuleOp module) {
  llvm::StringMap<std::optional<int64_t>> layers;
  llvm::StringMap<bool> mixed;
  auto fb = module.lookupSymbol<func::FuncOp>("forward_backward");
  if (!fb)
    return layers;
  fb.walk([&](WeightOp w) {
    auto attr = w->getAttrOfType<IntegerAttr>(MtDialect::kLayerAttrName);
    std::optional<int64_t> layer = attr ? std::optional(attr.getInt()) : std::nullopt;
    auto [it, inserted] = layers.try_emplace(w.getParam(), layer);
    if (!inserted && it->second != layer)
      mixed[w.getParam()] = true;
  });
  for (auto &entry : mixed)
    layers[entry.first()] = std::nullopt;
  return layers;
}

/// Buckets in the order backward finishes their gradients (parameters in
/// reverse), about `bucketElements` each, as Megatron's. Unlike Megatron's,
/// a bucket never spans two layers (pipeline stages own whole layers, and
/// an embedding or head is a bucket of its own), nor parameters of different
/// weight decay or tp replication: its shard is then one AdamW update and
/// one term of the norm.
SmallVector<Bucket> formBuckets(ModuleOp module, ArrayRef<ParamOp> params,
                                int64_t denseShards, int64_t edp, int64_t bucketElements,
                                double weightDecay) {
  llvm::StringMap<std::optional<int64_t>> layers = layersOf(module);
  // (layer, or -1 - index for a parameter outside the layers; decay;
  // replicated; experts) -> bucket under construction.
  using Key = std::tuple<int64_t, double, bool, bool>;
  std::map<Key, size_t> open;
  SmallVector<Bucket> buckets;
  for (int64_t i = int64_t(params.size()) - 1; i >= 0; --i) {
    ParamOp p = params[i];
    std::optional<int64_t> layer = layers.lookup(p.getSymName());
    Key key{layer ? *layer : -1 - i, weightDecayOf(p, weightDecay), isReplicated(p),
            p.getGroupedExperts()};
    auto it = open.find(key);
    if (it == open.end() || buckets[it->second].elements >= bucketElements) {
      buckets.push_back({{}, {}, 0, std::get<1>(key), std::get<2>(key), onExpertMesh(p)});
      it = open.insert_or_assign(key, buckets.size() - 1).first;
    }
    Bucket &b = buckets[it->second];
    b.elements = llvm::alignTo(b.elements, kBucketMemberAlignment);
    b.params.push_back(p);
    b.offsets.push_back(b.elements);
    b.elements += p.getLocalType().getNumElements();
  }
  for (Bucket &b : buckets)
    b.elements = llvm::alignTo(b.elements, kBucketMemberAlignment * (b.experts ? edp : denseShards));
  return buckets;
}

struct BuildOptimizerPass
    : public mt::impl::BuildOptimizerBase<BuildOptimizerPass> {
  using BuildOptimizerBase::BuildOptimizerBase;
  void runOnOperation() override;

  /// The data-parallel size: the dp axis of the module's `shard.grid @mesh`
  /// (1 without a mesh), read by runOnOperation; cp its context-parallel
  /// size and edp the expert data-parallel size of `@expert_mesh` (1
  /// without one).
  int64_t dp = 1, cp = 1, edp = 1, pp = 1;

  /// Each parameter's gradient in `grads` averaged over the ranks that
  /// hold replicas of it: a dense one summed over cp and averaged over dp
  /// (per-token-loss: summed, then divided by the step's tokens); an expert
  /// one (on @expert_mesh, whose gradient sums the tokens of its ep group)
  /// summed over edp and scaled by 1 / dp (per-token-loss: divided by the
  /// step's tokens instead). Megatron-Core's expert_gradient_scaling_factor
  /// is 1 / (dp·cp) because its cp ranks' losses are cp times their share
  /// and it averages dense gradients over dp·cp; here each cp rank's loss is
  /// its share of the micro-batch's, and dense gradients are summed over
  /// cp. Every collective comes before every scale, one axis after another
  /// (cp, dp, edp), then the step's token count is summed: the backends
  /// start the leading run of reductions of one axis while backward still
  /// runs (overlap_grad_reduce), and a scale or another axis in between
  /// would end that run.
  void reduceGradients(OpBuilder &b, Location loc, ArrayRef<ParamOp> params,
                       MutableArrayRef<Value> grads);

  /// With per-token-loss: the step's loss tokens, summed over the
  /// micro-batches (the argument) and over pp, cp and dp; null otherwise.
  Value stepTokens;

  /// Appends @forward_backward's mt.num_tokens to its results and to
  /// @optimizer_step's arguments (`fn`, built without it): stepTokens, the
  /// micro-batches' sum on this rank.
  LogicalResult passTokenCount(OpBuilder &b, func::FuncOp fn);
  /// Sums stepTokens over pp, cp and dp (Megatron-Core: the count of the
  /// last pipeline stage, summed over dp x cp); nothing without it.
  void sumStepTokens(OpBuilder &b, Location loc);

  /// `g` divided by the step's loss tokens under per-token-loss (unchanged
  /// otherwise): Megatron-Core's scale_gradients(1 / num_tokens).
  Value perToken(OpBuilder &b, Location loc, Value g) const {
    return stepTokens ? ScaleByOp::create(b, loc, g.getType(), g, stepTokens, b.getUnitAttr())
                      : g;
  }
  /// A gradient `g` after its sums over cp, dp or edp: divided by the
  /// step's loss tokens under per-token-loss, dense and expert alike
  /// (Megatron-Core's DistributedDataParallel sets both gradient scaling
  /// factors to 1 under calculate_per_token_loss); otherwise an expert one
  /// scaled by 1 / dp (a dense one was averaged over dp already).
  Value scaleReduced(OpBuilder &b, Location loc, Value g, bool expert) const {
    if (stepTokens || !expert)
      return perToken(b, loc, g);
    if (dp == 1)
      return g;
    return ScaleOp::create(b, loc, g, b.getF64FloatAttr(1.0 / double(dp)));
  }
  /// The reduction of dense gradients over dp: a mean, or a sum under
  /// per-token-loss (the division by the tokens replaces it).
  StringAttr dpReduce(OpBuilder &b) const {
    return b.getStringAttr(perTokenLoss ? "sum" : "mean");
  }

  /// `grad` summed over the cp ranks (unchanged without cp): each cp rank's
  /// gradients are its tokens' share of the sequence's (Megatron-Core
  /// reduces dense gradients over dp x cp).
  Value sumOverContextParallel(OpBuilder &b, Location loc, Value grad) const {
    if (cp == 1)
      return grad;
    return AllReduceOp::create(b, loc, grad, b.getStringAttr(kContextParallelAxis),
                               b.getStringAttr("sum"));
  }

  /// The axis the distributed optimizer shards dense buckets over and its
  /// size: dp, or cp when dp is 1 (Megatron-Core shards over dp x cp; with
  /// both above 1 mtc shards over dp, the cp ranks summing first). Size 1:
  /// dense buckets are not sharded (the experts may still be, over edp).
  StringRef denseShardAxis() const {
    return dp == 1 && cp > 1 ? kContextParallelAxis : kDataParallelAxis;
  }
  int64_t denseShards() const { return dp == 1 ? cp : dp; }
  /// A dense bucket's gradient (with dp > 1 summed over cp already)
  /// reduced over dp, or with dp 1 summed over cp, as its shard on
  /// denseShardAxis (whole when denseShards() is 1).
  Value reduceScatterDense(OpBuilder &b, Location loc, Value grad, Type shard) const {
    IntegerAttr dim0 = b.getI64IntegerAttr(0);
    if (dp > 1)
      return ReduceScatterOp::create(b, loc, shard, grad, b.getStringAttr(kDataParallelAxis),
                                     dim0, dpReduce(b));
    if (cp > 1)
      return ReduceScatterOp::create(b, loc, shard, grad, b.getStringAttr(kContextParallelAxis),
                                     dim0, b.getStringAttr("sum"));
    return grad;
  }

  /// The arguments and results of @optimizer_step after `step`.
  struct Signature {
    SmallVector<Type> args, results;
    SmallVector<DictionaryAttr> argAttrs, resultAttrs;
  };
  /// What the norm, clipping and schedule give the updates.
  struct Scaling {
    Value scale, lr;
  };

  /// The mesh axes that parameters are split over (null, empty: none): the
  /// dense ones' on @mesh (tp) and the experts' on @expert_mesh (ep, etp).
  struct NormAxes {
    StringAttr dense;
    SmallVector<StringAttr> experts;
    /// Whether the experts' sum is reduced apart from the dense one's: both
    /// are split, or the experts over several axes.
    bool apart() const { return (dense && !experts.empty()) || experts.size() > 1; }
    /// The one axis when only one kind of parameter is split, over one axis.
    StringAttr single() const {
      return apart() ? StringAttr() : dense ? dense : experts.empty() ? StringAttr() : experts[0];
    }
  };
  /// Fails, with a diagnostic, when the dense parameters are split over two
  /// axes.
  FailureOr<NormAxes> normAxesOf(ArrayRef<ParamOp> params, OpBuilder &b);
  /// The global norm (partial over `partialAxis` when set; the operands
  /// flagged in `experts` apart over `expertAxis` when set), the NaN/Inf
  /// check, the clip coefficient and the learning rate.
  Scaling normAndSchedule(OpBuilder &b, Location loc, Value step, ValueRange grads,
                          ArrayRef<bool> replicated, StringAttr normAxis,
                          StringAttr partialAxis, ArrayRef<StringAttr> expertAxes = {},
                          ArrayRef<bool> experts = {});
  LogicalResult buildReplicated(OpBuilder &b, ArrayRef<ParamOp> params, NormAxes axes);
  LogicalResult buildDistributed(OpBuilder &b, ArrayRef<ParamOp> params, const NormAxes &axes);
  func::FuncOp createFunction(OpBuilder &b, const Signature &signature);
};

FailureOr<BuildOptimizerPass::NormAxes>
BuildOptimizerPass::normAxesOf(ArrayRef<ParamOp> params, OpBuilder &b) {
  NormAxes axes;
  for (ParamOp p : params) {
    ShardingAttr sharding = p.getShardingAttr();
    for (unsigned d = 0; sharding && d < sharding.getSplitAxes().size(); ++d)
      for (StringRef axis : sharding.getAxes(d)) {
        if (onExpertMesh(p)) { // experts: disjoint shards over each axis
          if (!llvm::is_contained(axes.experts, b.getStringAttr(axis)))
            axes.experts.push_back(b.getStringAttr(axis));
          continue;
        }
        StringAttr &normAxis = axes.dense;
        if (normAxis && normAxis.getValue() != axis)
          return p.emitOpError() << "is split over mesh axis '" << axis
                                 << "' and another parameter over '" << normAxis.getValue()
                                 << "': a global norm over several mesh axes is not supported yet";
        normAxis = b.getStringAttr(axis);
      }
  }
  return axes;
}

func::FuncOp BuildOptimizerPass::createFunction(OpBuilder &b, const Signature &s) {
  auto stepType = RankedTensorType::get({}, b.getI64Type());
  SmallVector<Type> args = {stepType};
  args.append(s.args);
  SmallVector<DictionaryAttr> argAttrs = {
      b.getDictionaryAttr(b.getNamedAttr("mt.role", b.getStringAttr("step")))};
  argAttrs.append(s.argAttrs);
  auto fn = func::FuncOp::create(b, getOperation().getLoc(), "optimizer_step",
                                 b.getFunctionType(args, s.results));
  fn.setAllArgAttrs(argAttrs);
  fn.setAllResultAttrs(s.resultAttrs);
  b.setInsertionPointToEnd(fn.addEntryBlock());
  return fn;
}

BuildOptimizerPass::Scaling
BuildOptimizerPass::normAndSchedule(OpBuilder &b, Location loc, Value step, ValueRange grads,
                                    ArrayRef<bool> replicated, StringAttr normAxis,
                                    StringAttr partialAxis, ArrayRef<StringAttr> expertAxes,
                                    ArrayRef<bool> experts) {
  auto scalar = RankedTensorType::get({}, b.getF32Type());
  // Shards of one parameter sum over the axis they are split on; replicated
  // parameters count once.
  auto norm = GlobalNormOp::create(
      b, loc, scalar, grads, normAxis,
      normAxis ? b.getDenseBoolArrayAttr(replicated) : DenseBoolArrayAttr(), partialAxis,
      expertAxes.empty() ? ArrayAttr() : b.getStrArrayAttr(llvm::to_vector(llvm::map_range(
                                             expertAxes, [](StringAttr a) { return a.getValue(); }))),
      expertAxes.empty() ? DenseBoolArrayAttr() : b.getDenseBoolArrayAttr(experts));
  CheckFiniteOp::create(b, loc, norm);
  Value scale = ClipCoefficientOp::create(b, loc, scalar, norm, b.getF64FloatAttr(clipGrad));
  Value lrValue = LRScheduleOp::create(
      b, loc, scalar, step, b.getF64FloatAttr(lr), b.getF64FloatAttr(minLr),
      b.getI64IntegerAttr(warmupSteps), b.getI64IntegerAttr(decaySteps),
      b.getStringAttr(decayStyle));
  return {scale, lrValue};
}

/// Arguments and results that name a role of a parameter (or a bucket's
/// first parameter) and, for buckets, the bucket.
DictionaryAttr roleAttrs(OpBuilder &b, ParamOp p, StringRef role,
                         std::optional<int64_t> bucket = std::nullopt,
                         ShardingAttr sharding = {}) {
  SmallVector<NamedAttribute> attrs = {
      b.getNamedAttr("mt.role", b.getStringAttr(role)),
      b.getNamedAttr("mt.param", FlatSymbolRefAttr::get(p.getSymNameAttr()))};
  if (bucket)
    attrs.push_back(b.getNamedAttr("mt.bucket", b.getI64IntegerAttr(*bucket)));
  if (sharding)
    attrs.push_back(b.getNamedAttr("mt.sharding", sharding));
  return b.getDictionaryAttr(attrs);
}

LogicalResult BuildOptimizerPass::passTokenCount(OpBuilder &b, func::FuncOp fn) {
  ModuleOp module = getOperation();
  auto fb = module.lookupSymbol<func::FuncOp>("forward_backward");
  SmallVector<NumTokensOp> counts;
  if (fb)
    fb.walk([&](NumTokensOp n) { counts.push_back(n); });
  if (counts.size() != 1)
    return module.emitError() << "mt-build-optimizer: per-token-loss expects one mt.num_tokens "
                                 "in @forward_backward (run mt-per-token-loss before "
                                 "mt-autodiff), found " << counts.size();
  auto ret = cast<func::ReturnOp>(fb.getBody().front().getTerminator());
  ret->insertOperands(ret.getNumOperands(), counts[0].getResult());
  if (failed(fb.insertResult(fb.getNumResults(), counts[0].getType(),
                             b.getDictionaryAttr(b.getNamedAttr(
                                 "mt.role", b.getStringAttr("num_tokens"))))))
    return failure();
  const unsigned arg = fn.getNumArguments();
  if (failed(fn.insertArgument(arg, counts[0].getType(),
                               b.getDictionaryAttr(b.getNamedAttr(
                                   "mt.role", b.getStringAttr("num_tokens"))),
                               fn.getLoc())))
    return failure();
  stepTokens = fn.getArgument(arg);
  return success();
}

void BuildOptimizerPass::sumStepTokens(OpBuilder &b, Location loc) {
  if (!stepTokens)
    return;
  for (auto [axis, size] : {std::pair<StringRef, int64_t>{"pp", pp},
                            {kContextParallelAxis, cp},
                            {kDataParallelAxis, dp}})
    if (size > 1)
      stepTokens =
          AllReduceOp::create(b, loc, stepTokens, b.getStringAttr(axis), b.getStringAttr("sum"));
}

void BuildOptimizerPass::reduceGradients(OpBuilder &b, Location loc, ArrayRef<ParamOp> params,
                                         MutableArrayRef<Value> grads) {
  auto each = [&](auto &&f) {
    for (size_t i = 0; i < params.size(); ++i) {
      ParamOp p = params[i];
      f(p, p.getLoc(), grads[i]);
    }
  };
  each([&](ParamOp p, Location at, Value &g) {
    if (!onExpertMesh(p))
      g = sumOverContextParallel(b, at, g);
  });
  each([&](ParamOp p, Location at, Value &g) {
    if (!onExpertMesh(p) && dp > 1)
      g = AllReduceOp::create(b, at, g, b.getStringAttr(kDataParallelAxis), dpReduce(b));
  });
  each([&](ParamOp p, Location at, Value &g) {
    if (onExpertMesh(p) && edp > 1)
      g = AllReduceOp::create(b, at, g, b.getStringAttr(kExpertDataParallelAxis),
                              b.getStringAttr("sum"));
  });
  sumStepTokens(b, loc);
  each([&](ParamOp p, Location at, Value &g) { g = scaleReduced(b, at, g, onExpertMesh(p)); });
}

LogicalResult BuildOptimizerPass::buildReplicated(OpBuilder &b, ArrayRef<ParamOp> params,
                                                  NormAxes axes) {
  // Arguments: step, then (param, grad, exp_avg, exp_avg_sq) per parameter.
  static constexpr StringLiteral kRoles[] = {"param", "grad", "exp_avg", "exp_avg_sq"};
  Signature s;
  for (ParamOp p : params)
    for (StringRef role : kRoles) {
      s.args.push_back(p.getLocalType());
      s.argAttrs.push_back(roleAttrs(b, p, role));
      if (role != "grad") {
        s.results.push_back(p.getLocalType());
        s.resultAttrs.push_back(roleAttrs(b, p, role));
      }
    }
  func::FuncOp fn = createFunction(b, s);
  if (perTokenLoss && failed(passTokenCount(b, fn)))
    return failure();
  Block *body = &fn.getBody().front();
  auto argOf = [&](size_t param, size_t role) {
    return body->getArgument(1 + 4 * param + role);
  };
  // Data parallelism: every rank's gradients are averaged over dp first.
  SmallVector<Value> grads;
  SmallVector<bool> replicated, experts;
  for (auto [i, constParam] : llvm::enumerate(params)) {
    ParamOp p = constParam;
    grads.push_back(argOf(i, 1));
    replicated.push_back(isReplicated(p));
    experts.push_back(onExpertMesh(p));
  }
  reduceGradients(b, fn.getLoc(), params, grads);
  // MoE layers under tp (dense parameters split over tp, experts over ep),
  // or experts split over ep and etp: the two sums apart.
  const bool apart = axes.apart();
  Scaling sc = normAndSchedule(b, fn.getLoc(), body->getArgument(0), grads, replicated,
                               apart ? axes.dense : axes.single(), StringAttr(),
                               apart ? ArrayRef<StringAttr>(axes.experts)
                                     : ArrayRef<StringAttr>(),
                               experts);
  SmallVector<Value> results;
  for (auto [i, constParam] : llvm::enumerate(params)) {
    ParamOp p = constParam;
    auto update = AdamWOp::create(
        b, p.getLoc(), p.getLocalType(), p.getLocalType(), p.getLocalType(), argOf(i, 0),
        grads[i], argOf(i, 2), argOf(i, 3), sc.lr, body->getArgument(0), sc.scale,
        b.getF64FloatAttr(beta1), b.getF64FloatAttr(beta2), b.getF64FloatAttr(eps),
        b.getF64FloatAttr(weightDecayOf(p, weightDecay)));
    results.append({update.getNewParam(), update.getNewExpAvg(), update.getNewExpAvgSq()});
  }
  func::ReturnOp::create(b, fn.getLoc(), results);
  return mlir::verify(fn);
}

LogicalResult BuildOptimizerPass::buildDistributed(OpBuilder &b, ArrayRef<ParamOp> params,
                                                   const NormAxes &axes) {
  ModuleOp module = getOperation();
  SmallVector<Bucket> buckets =
      formBuckets(module, params, denseShards(), edp, bucketElements, weightDecay);
  // Arguments: step, then (param bucket, grad bucket, exp_avg shard,
  // exp_avg_sq shard) per bucket; the state is sharded over dp or cp
  // (denseShardAxis; edp for experts).
  MLIRContext *ctx = module.getContext();
  auto partsOf = [&](const Bucket &bucket) { return bucket.experts ? edp : denseShards(); };
  auto axisOf = [&](const Bucket &bucket) {
    return b.getStringAttr(bucket.experts ? StringRef(kExpertDataParallelAxis) : denseShardAxis());
  };
  Signature s;
  SmallVector<Attribute> layout;
  for (auto [k, bucket] : llvm::enumerate(buckets)) {
    auto full = RankedTensorType::get({bucket.elements}, b.getF32Type());
    auto shard = RankedTensorType::get({bucket.elements / partsOf(bucket)}, b.getF32Type());
    ShardingAttr onAxis = ShardingAttr::split(
        ctx, bucket.experts ? kExpertMeshName : kMeshName, 1, 0, axisOf(bucket).getValue());
    ParamOp first = bucket.params.front();
    s.args.append({full, full, shard, shard});
    s.argAttrs.append({roleAttrs(b, first, "param", k), roleAttrs(b, first, "grad", k),
                       roleAttrs(b, first, "exp_avg", k, onAxis),
                       roleAttrs(b, first, "exp_avg_sq", k, onAxis)});
    s.results.append({full, shard, shard});
    s.resultAttrs.append({roleAttrs(b, first, "param", k),
                          roleAttrs(b, first, "exp_avg", k, onAxis),
                          roleAttrs(b, first, "exp_avg_sq", k, onAxis)});
    SmallVector<Attribute> members;
    for (ParamOp p : bucket.params)
      members.push_back(FlatSymbolRefAttr::get(p.getSymNameAttr()));
    layout.push_back(b.getDictionaryAttr(
        {b.getNamedAttr("axis", axisOf(bucket)),
         b.getNamedAttr("params", b.getArrayAttr(members)),
         b.getNamedAttr("offsets", b.getDenseI64ArrayAttr(bucket.offsets))}));
  }
  func::FuncOp fn = createFunction(b, s);
  fn->setAttr(MtDialect::kBucketsAttrName, b.getArrayAttr(layout));
  if (perTokenLoss && failed(passTokenCount(b, fn)))
    return failure();
  Block *body = &fn.getBody().front();
  auto argOf = [&](size_t bucket, size_t role) {
    return body->getArgument(1 + 4 * bucket + role);
  };
  IntegerAttr dim0 = b.getI64IntegerAttr(0);
  Location loc = fn.getLoc();
  // Every bucket's reduction first, one axis after another, then the
  // step's token count and the scales (as reduceGradients): the backends
  // may start the leading reduce-scatters while backward still runs
  // (overlap_grad_reduce). Expert buckets are summed over edp and scaled as
  // reduceGradients' (none to scatter when edp = 1).
  SmallVector<Value> shards;
  SmallVector<bool> replicated, experts;
  for (auto [k, bucket] : llvm::enumerate(buckets)) {
    // With dp 1 the sum over cp is the reduce-scatter itself.
    shards.push_back(bucket.experts || dp == 1 ? argOf(k, 1)
                                               : sumOverContextParallel(b, loc, argOf(k, 1)));
    replicated.push_back(bucket.replicated);
    experts.push_back(bucket.experts);
  }
  for (auto [k, bucket] : llvm::enumerate(buckets))
    if (!bucket.experts)
      shards[k] = reduceScatterDense(b, loc, shards[k], argOf(k, 2).getType());
  for (auto [k, bucket] : llvm::enumerate(buckets))
    if (bucket.experts && edp > 1)
      shards[k] = ReduceScatterOp::create(b, loc, argOf(k, 2).getType(), shards[k],
                                          axisOf(bucket), dim0, b.getStringAttr("sum"));
  sumStepTokens(b, loc);
  for (auto [k, bucket] : llvm::enumerate(buckets))
    shards[k] = scaleReduced(b, loc, shards[k], bucket.experts);
  // The dense shards are partial over denseShardAxis (and split over tp);
  // whole when it has one rank; the expert
  // shards, 1/edp of each rank's experts (themselves split over ep and
  // etp), are disjoint over edp, ep and etp: tp x cp x dp ranks in all,
  // each summed once (Megatron-Core's distributed optimizer shards expert
  // parameters over the expert data-parallel group whatever etp is).
  SmallVector<StringAttr> expertAxes(axes.experts);
  if (edp > 1 && llvm::is_contained(experts, true))
    expertAxes.push_back(b.getStringAttr(kExpertDataParallelAxis));
  Scaling sc = normAndSchedule(
      b, loc, body->getArgument(0), shards, replicated, axes.dense,
      denseShards() > 1 ? b.getStringAttr(denseShardAxis()) : StringAttr(), expertAxes, experts);
  SmallVector<Value> results;
  for (auto [k, bucket] : llvm::enumerate(buckets)) {
    Type shard = argOf(k, 2).getType();
    StringAttr axis = axisOf(bucket);
    const bool split = partsOf(bucket) > 1;
    Value mine = argOf(k, 0);
    if (split)
      mine = AllSliceOp::create(b, loc, shard, mine, axis, dim0);
    auto update = AdamWOp::create(
        b, loc, shard, shard, shard, mine, shards[k], argOf(k, 2), argOf(k, 3), sc.lr,
        body->getArgument(0), sc.scale, b.getF64FloatAttr(beta1), b.getF64FloatAttr(beta2),
        b.getF64FloatAttr(eps), b.getF64FloatAttr(bucket.weightDecay));
    Value gathered = update.getNewParam();
    if (split) {
      auto gather = AllGatherOp::create(b, loc, argOf(k, 0).getType(), gathered, axis, dim0);
      gather.setDeferred(overlapParamGather); // mt.all_gather's description
      gathered = gather;
    }
    results.append({gathered, update.getNewExpAvg(), update.getNewExpAvgSq()});
  }
  func::ReturnOp::create(b, loc, results);
  return mlir::verify(fn);
}

void BuildOptimizerPass::runOnOperation() {
  ModuleOp module = getOperation();
  if (module.lookupSymbol("optimizer_step")) {
    module.emitError() << "mt-build-optimizer: @optimizer_step exists already";
    return signalPassFailure();
  }
  if (distributedOptimizer && bucketElements < 1) {
    module.emitError() << "mt-build-optimizer: bucket-elements must be >= 1, got "
                       << bucketElements;
    return signalPassFailure();
  }
  // The data-parallel size is the dp axis of the module's mesh; a module
  // without a mesh runs on one rank.
  dp = 1;
  if (auto mesh = module.lookupSymbol<shard::GridOp>(kMeshName)) {
    std::optional<int64_t> size = axisSize(mesh, "dp");
    if (!size) {
      mesh.emitError() << "mt-build-optimizer: @" << kMeshName << " has no axis 'dp' (its axes: "
                       << axisList(mesh) << ")";
      return signalPassFailure();
    }
    dp = *size;
    cp = axisSize(mesh, kContextParallelAxis).value_or(1);
    pp = axisSize(mesh, "pp").value_or(1);
  }
  edp = 1;
  if (auto experts = module.lookupSymbol<shard::GridOp>(kExpertMeshName))
    edp = axisSize(experts, kExpertDataParallelAxis).value_or(1);
  stepTokens = Value();
  SmallVector<ParamOp> params;
  for (auto param : module.getOps<ParamOp>())
    if (!param.getFrozen())
      params.push_back(param);
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  FailureOr<NormAxes> axes = normAxesOf(params, b);
  if (failed(axes))
    return signalPassFailure();
  if (failed(distributedOptimizer ? buildDistributed(b, params, *axes)
                                  : buildReplicated(b, params, *axes)))
    return signalPassFailure();
}

} // namespace
