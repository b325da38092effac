// Emission of the decoder-only transformer graph (Llama, Qwen2/3,
// Qwen2/3-MoE, Mixtral) in the `mt` dialect, with Hugging Face parameter names.
#include "compiler/hf/ModelBuilder.h"

#include "dialects/mt/MtDialect.h"
#include "runtime/support/CheckedMath.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include <climits>
#include <cmath>
#include <sstream>

using namespace mlir;

namespace mt {
namespace {

/// Tags every op created while a layer is being built with `mt.layer`.
class LayerTagger : public OpBuilder::Listener {
public:
  void notifyOperationInserted(Operation *op, OpBuilder::InsertPoint) override {
    if (layer >= 0)
      op->setAttr(MtDialect::kLayerAttrName,
                  IntegerAttr::get(IntegerType::get(op->getContext(), 64), layer));
  }
  int64_t layer = -1;
};

class Builder {
public:
  Builder(MLIRContext &ctx, const HfModelSpec &spec, const ModelShape &shape)
      : ctx_(ctx), spec_(spec), shape_(shape), b_(&ctx, &tagger_),
        elem_(shape.bf16 ? Type(BFloat16Type::get(&ctx)) : Float32Type::get(&ctx)) {}

  OwningOpRef<ModuleOp> build();

private:
  RankedTensorType tensor(ArrayRef<int64_t> shape, Type elem = {}) {
    return RankedTensorType::get(shape, elem ? elem : elem_);
  }
  /// Declares a parameter at module level and reads it in the function.
  Value weight(const std::string &name, ArrayRef<int64_t> shape, InitKind init,
               bool grouped = false);
  Value linear(Value x, const std::string &prefix, int64_t out, int64_t in,
               bool bias);
  Value rmsnorm(Value x, const std::string &name, int64_t size);
  Value reshape(Value x, ArrayRef<int64_t> shape) {
    return ReshapeOp::create(b_, loc_, tensor(shape), x);
  }
  Value add(Value a, Value b) { return AddOp::create(b_, loc_, a, b); }
  Value attention(Value x, const std::string &prefix);
  Value denseMlp(Value x, const std::string &prefix, int64_t ffn, bool bias);
  /// Returns the layer output and adds its router's load-balancing loss to
  /// `auxLoss` and, with a z-loss coefficient, its z-loss to `zLoss`.
  Value moeMlp(Value x, const std::string &prefix, Value &auxLoss, Value &zLoss);

  MLIRContext &ctx_;
  const HfModelSpec &spec_;
  Value positionIds_; // @forward's position_ids, when rows pack documents
  const ModelShape &shape_;
  LayerTagger tagger_;
  OpBuilder b_;
  Type elem_;
  Location loc_ = UnknownLoc::get(&ctx_);
  ModuleOp module_;
  Block *moduleBody_ = nullptr;
};

Value Builder::weight(const std::string &name, ArrayRef<int64_t> shape,
                      InitKind init, bool grouped) {
  auto type = tensor(shape);
  {
    OpBuilder::InsertionGuard guard(b_);
    b_.setListener(nullptr);
    b_.setInsertionPoint(moduleBody_, std::prev(moduleBody_->end()));
    FloatAttr std = init == InitKind::normal ? b_.getF64FloatAttr(spec_.initStd)
                                             : FloatAttr();
    ParamOp::create(b_, loc_, b_.getStringAttr(name), TypeAttr::get(type),
                    InitKindAttr::get(&ctx_, init), std,
                    grouped ? b_.getUnitAttr() : UnitAttr(), UnitAttr(), ShardingAttr(),
                    IntegerAttr());
    b_.setListener(&tagger_);
  }
  return WeightOp::create(b_, loc_, type, FlatSymbolRefAttr::get(&ctx_, name));
}

Value Builder::linear(Value x, const std::string &prefix, int64_t out,
                      int64_t in, bool bias) {
  Value w = weight(prefix + ".weight", {out, in}, InitKind::normal);
  Value bv = bias ? weight(prefix + ".bias", {out}, InitKind::zeros) : Value();
  auto xt = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> shape(xt.getShape());
  shape.back() = out;
  return LinearOp::create(b_, loc_, tensor(shape), x, w, bv);
}

Value Builder::rmsnorm(Value x, const std::string &name, int64_t size) {
  Value w = weight(name, {size}, InitKind::ones);
  return RMSNormOp::create(b_, loc_, x.getType(), x, w,
                           b_.getF64FloatAttr(spec_.normEps));
}

Value Builder::attention(Value x, const std::string &p) {
  int64_t B = shape_.microBatch, S = shape_.seq, H = spec_.hidden,
          nq = spec_.numHeads, nkv = spec_.numKvHeads, d = spec_.headDim;
  Value q = reshape(linear(x, p + "q_proj", nq * d, H, spec_.qkvBias), {B, S, nq, d});
  Value k = reshape(linear(x, p + "k_proj", nkv * d, H, spec_.qkvBias), {B, S, nkv, d});
  Value v = reshape(linear(x, p + "v_proj", nkv * d, H, spec_.qkvBias), {B, S, nkv, d});
  if (spec_.qkNorm) {
    q = rmsnorm(q, p + "q_norm.weight", d);
    k = rmsnorm(k, p + "k_norm.weight", d);
  }
  auto rotary = [&](Value t) {
    auto op = RotaryOp::create(b_, loc_, t.getType(), t, positionIds_,
                               b_.getF64FloatAttr(spec_.ropeTheta), FloatAttr(),
                               FloatAttr(), FloatAttr(), IntegerAttr(), StringAttr());
    if (const auto &s = spec_.ropeScaling) {
      op.setScalingFactorAttr(b_.getF64FloatAttr(s->factor));
      op.setLowFreqFactorAttr(b_.getF64FloatAttr(s->lowFreqFactor));
      op.setHighFreqFactorAttr(b_.getF64FloatAttr(s->highFreqFactor));
      op.setOriginalMaxPositionAttr(b_.getI64IntegerAttr(s->originalMaxPosition));
    }
    return Value(op);
  };
  q = rotary(q);
  k = rotary(k);
  Value o = AttentionOp::create(b_, loc_, q.getType(), q, k, v, positionIds_,
                                b_.getI64IntegerAttr(nq), b_.getI64IntegerAttr(nkv),
                                b_.getI64IntegerAttr(d),
                                b_.getF64FloatAttr(1.0 / std::sqrt(double(d))), StringAttr());
  return linear(reshape(o, {B, S, nq * d}), p + "o_proj", H, nq * d,
                spec_.outputBias);
}

Value Builder::denseMlp(Value x, const std::string &p, int64_t ffn, bool bias) {
  int64_t H = spec_.hidden;
  Value gate = linear(x, p + "gate_proj", ffn, H, bias);
  Value up = linear(x, p + "up_proj", ffn, H, bias);
  Value act = SwiGLUOp::create(b_, loc_, gate, up);
  return linear(act, p + "down_proj", H, ffn, bias);
}

Value Builder::moeMlp(Value x, const std::string &layerPrefix, Value &auxLoss, Value &zLoss) {
  const MoeSpec &m = *spec_.moe;
  int64_t B = shape_.microBatch, S = shape_.seq, H = spec_.hidden,
          E = m.numExperts, F = m.expertFfn, K = m.topK;
  const MoeOptions &o = shape_.moe;
  Value router = weight(layerPrefix + m.routerName + ".weight", {E, H}, InitKind::normal);
  Type f32 = Float32Type::get(&ctx_);
  double auxCoeff = auxLossCoeffOf(m, o);
  auto routed = MoERouterOp::create(
      b_, loc_, tensor({B, S, K}, f32), tensor({B, S, K}, IntegerType::get(&ctx_, 32)),
      tensor({}, f32), tensor({}, f32), x, router, /*token_counts=*/Value(),
      b_.getI64IntegerAttr(K), m.normTopkProb ? b_.getUnitAttr() : UnitAttr(),
      b_.getF64FloatAttr(auxCoeff),
      o.loadBalancingType == "aux_loss" ? StringAttr() : b_.getStringAttr(o.loadBalancingType),
      o.zLossCoeff > 0.0 ? b_.getF64FloatAttr(o.zLossCoeff) : FloatAttr(), IntegerAttr());
  std::string experts = layerPrefix + m.expertsName + ".*.";
  Value gate = weight(experts + m.gateProj + ".weight", {E, F, H}, InitKind::normal, true);
  Value up = weight(experts + m.upProj + ".weight", {E, F, H}, InitKind::normal, true);
  Value down = weight(experts + m.downProj + ".weight", {E, H, F}, InitKind::normal, true);
  auxLoss = auxLoss ? add(auxLoss, routed.getAuxLoss()) : routed.getAuxLoss();
  if (o.zLossCoeff > 0.0)
    zLoss = zLoss ? add(zLoss, routed.getZLoss()) : routed.getZLoss();
  // Megatron-Core's MoE layer: permute, grouped expert GEMMs, unpermute;
  // with a capacity factor, moe_utils.get_capacity(B·S·K, E, factor).
  int64_t rows = B * S * K;
  IntegerAttr capacity;
  StringAttr policy;
  if (o.capacityFactor) {
    int64_t c = int64_t(std::ceil(double(rows) / double(E) * *o.capacityFactor));
    capacity = b_.getI64IntegerAttr(c);
    policy = b_.getStringAttr(o.dropPolicy);
    rows = o.padToCapacity ? E * c : std::min(rows, E * c);
  }
  auto permuted = MoEPermuteOp::create(
      b_, loc_, tensor({rows, H}), tensor({E}, IntegerType::get(&ctx_, 32)),
      tensor({B, S, K}, IntegerType::get(&ctx_, 32)), x, routed.getWeights(), routed.getIndices(),
      capacity, policy, o.padToCapacity ? b_.getUnitAttr() : UnitAttr());
  Value out = MoEGroupedMLPOp::create(b_, loc_, permuted.getPermuted().getType(),
                                      tensor({2, rows, F}), permuted.getPermuted(),
                                      permuted.getTokensPerExpert(), gate, up, down)
                  .getResult();
  Value y = MoEUnpermuteOp::create(b_, loc_, x.getType(), out, routed.getWeights(),
                                   permuted.getSlotRows());
  if (m.sharedExpertFfn == 0)
    return y;
  // Qwen2MoeSparseMoeBlock: + sigmoid(shared_expert_gate(x)) * shared_expert(x).
  std::string p = layerPrefix + "mlp.";
  Value shared = denseMlp(x, p + "shared_expert.", m.sharedExpertFfn, false);
  Value logit = linear(x, p + "shared_expert_gate", 1, H, false);
  return add(y, SigmoidGateOp::create(b_, loc_, x.getType(), logit, shared));
}

OwningOpRef<ModuleOp> Builder::build() {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc_);
  module_ = *module;
  module_->setAttr(MtDialect::kHfConfigAttrName, b_.getStringAttr(spec_.json));
  moduleBody_ = module_.getBody();
  int64_t B = shape_.microBatch, S = shape_.seq, H = spec_.hidden, V = spec_.vocabSize;
  Type i32 = IntegerType::get(&ctx_, 32), f32 = Float32Type::get(&ctx_);

  b_.setInsertionPointToEnd(moduleBody_);
  SmallVector<Type> inputs = {tensor({B, S}, i32), tensor({B, S}, i32), tensor({B, S}, f32)};
  if (shape_.packedDocuments)
    inputs.push_back(tensor({B, S}, i32));
  auto fn = func::FuncOp::create(b_, loc_, "forward",
                                 b_.getFunctionType(inputs, {tensor({}, f32)}));
  fn.setArgAttr(0, "mt.input", b_.getStringAttr("input_ids"));
  fn.setArgAttr(1, "mt.input", b_.getStringAttr("labels"));
  fn.setArgAttr(2, "mt.input", b_.getStringAttr("loss_mask"));
  if (shape_.packedDocuments)
    fn.setArgAttr(3, "mt.input", b_.getStringAttr("position_ids"));
  Block *body = fn.addEntryBlock();
  b_.setInsertionPointToEnd(body);
  if (shape_.packedDocuments)
    positionIds_ = body->getArgument(3);

  Value embed = weight("model.embed_tokens.weight", {V, H}, InitKind::normal);
  Value x = EmbeddingOp::create(b_, loc_, tensor({B, S, H}), body->getArgument(0), embed,
                                StringAttr());
  Value auxLoss, zLoss;
  for (int64_t i = 0; i < spec_.numLayers; ++i) {
    tagger_.layer = i;
    std::string p = "model.layers." + std::to_string(i) + ".";
    Value h = rmsnorm(x, p + "input_layernorm.weight", H);
    x = add(x, attention(h, p + "self_attn."));
    h = rmsnorm(x, p + "post_attention_layernorm.weight", H);
    bool sparse = spec_.moe && spec_.moe->sparseLayers[i];
    x = add(x, sparse ? moeMlp(h, p, auxLoss, zLoss)
                      : denseMlp(h, p + "mlp.", spec_.ffn, spec_.mlpBias));
  }
  tagger_.layer = -1;
  x = rmsnorm(x, "model.norm.weight", H);
  Value head = spec_.tiedEmbeddings
                   ? embed
                   : weight("lm_head.weight", {V, H}, InitKind::normal);
  Value logits = LinearOp::create(b_, loc_, tensor({B, S, V}), x, head, Value());
  Value loss = CrossEntropyOp::create(b_, loc_, tensor({}, f32), logits,
                                      body->getArgument(1), body->getArgument(2),
                                      StringAttr(), IntegerAttr());
  // (lm + load-balancing) + z: the terms mtrun reports (PlanEmitter's
  // bindLossTerms).
  if (auxLoss)
    loss = add(loss, auxLoss);
  if (zLoss)
    loss = add(loss, zLoss);
  func::ReturnOp::create(b_, loc_, loss);
  return module;
}

} // namespace

namespace {

/// One size the model is made of: the keys it comes from and its factors.
struct Size {
  std::string keys;
  std::vector<int64_t> factors;
};

std::string factorsText(const std::vector<int64_t> &factors) {
  std::string text;
  for (int64_t f : factors)
    text += (text.empty() ? "" : " x ") + std::to_string(f);
  return text;
}

} // namespace

Status checkModelSizes(const HfModelSpec &spec, const ModelShape &shape,
                       const std::string &path) {
  const int64_t B = shape.microBatch, S = shape.seq, H = spec.hidden, V = spec.vocabSize,
                d = spec.headDim, nq = spec.numHeads, nkv = spec.numKvHeads;
  if (V > INT32_MAX)
    return Status::error(path + ": vocab_size (" + std::to_string(V) + ") exceeds " +
                         std::to_string(INT32_MAX) +
                         ", the largest vocabulary int32 token ids (input_ids, labels) can index");
  // Dimensions of the GEMMs: the CPU backend's BLAS takes 32-bit ints.
  std::vector<Size> gemm = {{"hidden_size", {H}},
                            {"intermediate_size", {spec.ffn}},
                            {"num_attention_heads x head_dim", {nq, d}},
                            {"num_key_value_heads x head_dim", {nkv, d}},
                            {"--micro-batch x --seq (tokens)", {B, S}}};
  // The largest weights and activations (checkTensorSizes' rule, on the spec).
  std::vector<Size> tensors = {{"vocab_size x hidden_size", {V, H}},
                               {"intermediate_size x hidden_size", {spec.ffn, H}},
                               {"num_attention_heads x head_dim x hidden_size", {nq, d, H}},
                               {"--micro-batch x --seq x vocab_size (logits)", {B, S, V}},
                               {"--micro-batch x --seq x intermediate_size", {B, S, spec.ffn}},
                               {"--micro-batch x --seq x num_attention_heads x head_dim",
                                {B, S, nq, d}}};
  if (const auto &m = spec.moe) {
    gemm.push_back({"moe_intermediate_size", {m->expertFfn}});
    if (m->sharedExpertFfn)
      gemm.push_back({"shared_expert_intermediate_size", {m->sharedExpertFfn}});
    tensors.push_back({"num_experts x moe_intermediate_size x hidden_size",
                       {m->numExperts, m->expertFfn, H}});
    tensors.push_back({"--micro-batch x --seq x num_experts_per_tok x hidden_size",
                       {B, S, m->topK, H}});
  }
  for (const Size &s : gemm)
    if (auto n = checkedProduct(s.factors); !n || *n > INT32_MAX)
      return Status::error(path + ": " + s.keys + " (" + factorsText(s.factors) +
                           ") exceeds " + std::to_string(INT32_MAX) +
                           ", the largest GEMM dimension of the CPU backend's 32-bit BLAS");
  for (const Size &s : tensors)
    if (auto n = checkedProduct(s.factors); !n || *n > kMaxTensorElements)
      return Status::error(path + ": " + s.keys + " (" + factorsText(s.factors) +
                           ") elements exceed 2^60, the most one tensor may have (its bytes "
                           "and offsets must fit in int64)");
  return Status::ok();
}

OwningOpRef<ModuleOp> buildModel(MLIRContext &context, const HfModelSpec &spec,
                                 const ModelShape &shape) {
  context.loadDialect<MtDialect, func::FuncDialect>();
  return Builder(context, spec, shape).build();
}

double auxLossCoeffOf(const MoeSpec &moe, const MoeOptions &options) {
  return options.auxLossCoeff ? *options.auxLossCoeff : moe.auxLossCoeff * double(moe.topK);
}

std::vector<std::string> megatronChoiceNotes(const HfModelSpec &spec, const ModelShape &shape) {
  std::vector<std::string> notes;
  const MoeOptions &o = shape.moe;
  const double coeff = spec.moe ? auxLossCoeffOf(*spec.moe, o) : 0.0;
  if (spec.moe && coeff > 0 && o.loadBalancingType != "none" && !spec.outputRouterLogits) {
    std::ostringstream c;
    c << coeff;
    notes.push_back("output_router_logits is false: transformers would train without the "
                    "routers' load-balancing loss; mtc adds Megatron-Core's, each MoE "
                    "layer's summed, with coefficient " + c.str() +
                    " (--moe-aux-loss-coeff 0, or mtc train's moe_aux_loss_coeff: 0, trains "
                    "without it)");
  }
  if (spec.padTokenId)
    notes.push_back("pad_token_id " + std::to_string(*spec.padTokenId) +
                    ": transformers' embedding gives that row no gradient and a zero initial "
                    "value (padding_idx); mtc trains and initializes it as every other row, "
                    "as Megatron-Core does");
  return notes;
}

} // namespace mt
