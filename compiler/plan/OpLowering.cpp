// Per-op attributes of plan instructions. The instruction's name and the
// attributes it may carry are its ODS `instruction` record (OpTable.inc);
// the plan loader refuses an attribute written here that it does not declare.
#include "compiler/plan/OpLowering.h"

#include "dialects/mt/MtDialect.h"
#include "runtime/plan/OpRegistry.h"

#include "llvm/ADT/TypeSwitch.h"

#include <array>

using namespace mlir;

namespace mt {
namespace {

int64_t numel(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }
int64_t dim(Value v, int64_t i) {
  auto t = cast<RankedTensorType>(v.getType());
  return t.getDimSize(i < 0 ? t.getRank() + i : i);
}

class AttrWriter {
public:
  explicit AttrWriter(plan::Instruction &instr) : instr_(instr) {}
  AttrWriter &i(const char *name, int64_t value) {
    auto *a = instr_.add_attributes();
    a->set_name(name);
    a->set_i(value);
    return *this;
  }
  AttrWriter &f(const char *name, double value) {
    auto *a = instr_.add_attributes();
    a->set_name(name);
    a->set_f(value);
    return *this;
  }
  AttrWriter &s(const char *name, StringRef value) {
    auto *a = instr_.add_attributes();
    a->set_name(name);
    a->set_s(value.str());
    return *this;
  }

private:
  plan::Instruction &instr_;
};

void linearDims(AttrWriter &w, Value weight, Value tokensOf) {
  int64_t out = dim(weight, 0), in = dim(weight, 1);
  w.i("tokens", numel(tokensOf) / dim(tokensOf, -1)).i("in", in).i("out", out);
}

template <typename RotaryLike> void rotaryAttrs(AttrWriter &w, RotaryLike op, Value x) {
  w.i("batch", dim(x, 0)).i("seq", dim(x, 1)).i("heads", dim(x, 2))
      .i("head_dim", dim(x, 3)).f("theta", op.getTheta().convertToDouble());
  if (op.getPositionIds())
    w.i("position_ids", 1);
  if constexpr (requires { op.getContextParallelAxis(); })
    if (auto axis = op.getContextParallelAxis())
      w.s("context_parallel_axis", *axis);
  if (op.getScalingFactor())
    w.f("scaling_factor", op.getScalingFactor()->convertToDouble())
        .f("low_freq_factor", op.getLowFreqFactor()->convertToDouble())
        .f("high_freq_factor", op.getHighFreqFactor()->convertToDouble())
        .i("original_max_position", *op.getOriginalMaxPosition());
}

/// split_qkv, concat_qkv: `packed` [..., Q + 2K] and its parts q [..., Q],
/// k (and v) [..., K].
void qkvAttrs(AttrWriter &w, Value packed, Value q, Value k) {
  w.i("rows", numel(packed) / dim(packed, -1))
      .i("dim", dim(packed, -1))
      .i("q_dim", dim(q, -1))
      .i("kv_dim", dim(k, -1));
}

template <typename AttentionLike>
void attentionAttrs(AttrWriter &w, AttentionLike op, Value q) {
  w.i("batch", dim(q, 0)).i("seq", dim(q, 1)).i("kv_seq", dim(op.getKey(), 1))
      .i("heads", op.getNumHeads()).i("kv_heads", op.getNumKvHeads())
      .i("head_dim", op.getHeadDim()).f("scale", op.getScale().convertToDouble());
  if (op.getPositionIds())
    w.i("position_ids", 1);
  if (auto axis = op.getContextParallelAxis())
    w.s("context_parallel_axis", *axis);
}

template <typename BlockLike> void attentionBlockAttrs(AttrWriter &w, BlockLike op) {
  Value q = op.getQuery();
  w.i("batch", dim(q, 0)).i("seq", dim(q, 1)).i("heads", op.getNumHeads())
      .i("kv_heads", op.getNumKvHeads()).i("head_dim", op.getHeadDim())
      .f("scale", op.getScale().convertToDouble())
      .s("context_parallel_axis", op.getContextParallelAxis()).i("step", op.getStep());
  if (op.getPositionIds())
    w.i("position_ids", 1);
}

/// batch, seq, heads, head_dim of a merge's [B, S, H, D] partial outputs.
void attentionMergeAttrs(AttrWriter &w, Value out) {
  w.i("batch", dim(out, 0)).i("seq", dim(out, 1)).i("heads", dim(out, 2))
      .i("head_dim", dim(out, 3));
}

template <typename RouterLike> void routerAttrs(AttrWriter &w, RouterLike op) {
  Value x = op.getInput(), wr = op.getWeight();
  w.i("tokens", numel(x) / dim(x, -1)).i("hidden", dim(x, -1))
      .i("experts", dim(wr, 0)).i("top_k", op.getTopK())
      .i("norm_topk_prob", op.getNormTopkProb() ? 1 : 0)
      .f("aux_loss_coeff", op.getAuxLossCoeff().convertToDouble())
      .i("seq", dim(x, 1)).s("load_balancing_type", op.getLoadBalancingType().value_or("aux_loss"))
      .f("z_loss_coeff", op.getZLossCoeff() ? op.getZLossCoeff()->convertToDouble() : 0.0);
  if (Value counts = op.getTokenCounts())
    w.i("count_groups", dim(counts, 0)).i("token_shards", op.getTokenShards().value_or(1));
}

/// `t` viewed as [outer, t[d], inner] around dimension `d`.
std::array<int64_t, 3> around(Value v, int64_t d) {
  auto t = cast<RankedTensorType>(v.getType());
  int64_t outer = 1;
  for (int64_t i = 0; i < d; ++i)
    outer *= t.getDimSize(i);
  return {outer, t.getDimSize(d), t.getNumElements() / (outer * t.getDimSize(d))};
}

/// The input viewed around its split dimension, the result around its
/// concat dimension (runtime/kernels/AllToAll.h).
void allToAllAttrs(AttrWriter &w, AllToAllOp o) {
  auto [so, ss, si] = around(o.getInput(), o.getSplitDim());
  auto [co, cs, ci] = around(o.getResult(), o.getConcatDim());
  w.s("axis", o.getAxis()).i("parts", cs / dim(o.getInput(), o.getConcatDim()))
      .i("split_outer", so).i("split_size", ss).i("split_inner", si)
      .i("concat_outer", co).i("concat_size", cs).i("concat_inner", ci);
  if (std::optional<int64_t> balanced = o.getLoadBalancedDim())
    w.s("load_balanced", *balanced == int64_t(o.getSplitDim()) ? "split" : "concat");
}

/// tokens, hidden and top_k from the [B, S, K] slots of a MoE permutation;
/// rows from its [N, H] permuted buffer.
void permuteAttrs(AttrWriter &w, Value slotRows, Value permuted) {
  w.i("tokens", dim(slotRows, 0) * dim(slotRows, 1)).i("hidden", dim(permuted, 1))
      .i("top_k", dim(slotRows, 2)).i("rows", dim(permuted, 0));
}

} // namespace

LogicalResult lowerOpAttributes(Operation *op, plan::Instruction &instr) {
  if (isa<CrossEntropyOp, CrossEntropyGradOp>(op) && op->hasAttr("vocab_parallel_axis"))
    return op->emitOpError() << "is vocab-parallel: mt-expose-collectives splits it into "
                                "local ops and all-reduces before plan emission";
  if (isa<GlobalNormOp>(op))
    return op->emitOpError() << "reduces over ranks: mt-expose-collectives splits it into "
                                "sum_squares, all-reduces and sqrt before plan emission";
  const plan::OpSignature *signature = plan::findOpLoweredFrom(op->getName().getStringRef().str());
  if (!signature)
    return op->emitOpError() << "has no plan instruction (no `instruction` in its ODS "
                                "definition, dialects/mt/MtInstructions.td)";
  instr.set_op(signature->name);
  AttrWriter w(instr);
  bool known = llvm::TypeSwitch<Operation *, bool>(op)
      .Case([&](EmbeddingOp e) {
        w.i("tokens", numel(e.getIds())).i("vocab", dim(e.getTable(), 0))
            .i("hidden", dim(e.getTable(), 1));
        if (auto axis = e.getVocabParallelAxis())
          w.s("vocab_parallel_axis", *axis);
        return true;
      })
      .Case([&](EmbeddingGradOp e) {
        w.i("tokens", numel(e.getIds())).i("vocab", dim(e.getDtable(), 0))
            .i("hidden", dim(e.getDtable(), 1));
        if (auto axis = e.getVocabParallelAxis())
          w.s("vocab_parallel_axis", *axis);
        return true;
      })
      .Case([&](AllToAllVOp o) {
        Value in = o.getInput();
        w.i("rows_in", dim(in, 0)).i("rows_out", dim(o.getResult(), 0))
            .i("row", numel(in) / dim(in, 0)).i("parts", dim(o.getSendCounts(), 0))
            .s("axis", o.getAxis());
        return true;
      })
      .Case([&](AllToAllOp o) {
        allToAllAttrs(w, o);
        return true;
      })
      .Case([&](MoEExchangeCountsOp o) {
        w.i("experts", dim(o.getTokensPerExpert(), 0)).i("parts", dim(o.getSendCounts(), 0))
            .s("axis", o.getAxis());
        return true;
      })
      .Case([&](MoEGatherCountsOp o) {
        w.i("experts", dim(o.getTokensPerExpert(), 0)).i("parts", dim(o.getOffsets(), 0))
            .s("axis", o.getAxis());
        if (o.getSameExperts())
          w.i("same_experts", 1);
        return true;
      })
      .Case([&](MoESortChunksOp o) {
        Value in = o.getInput(), counts = o.getCounts();
        w.i("rows", dim(in, 0)).i("hidden", dim(in, 1)).i("parts", dim(counts, 0))
            .i("groups", dim(counts, 1)).i("inverse", o.getInverse());
        if (o.getOffsets())
          w.i("offsets", 1);
        return true;
      })
      .Case<AllGatherOp, ReduceScatterOp, AllSliceOp>([&](auto g) {
        bool gather = isa<AllGatherOp>(g.getOperation());
        auto small = cast<RankedTensorType>(gather ? g.getInput().getType() : g.getResult().getType());
        auto big = cast<RankedTensorType>(gather ? g.getResult().getType() : g.getInput().getType());
        int64_t d = g.getDim(), outer = 1;
        for (int64_t i = 0; i < d; ++i)
          outer *= small.getDimSize(i);
        w.s("axis", g.getAxis()).i("outer", outer)
            .i("run", small.getNumElements() / outer)
            .i("parts", big.getDimSize(d) / small.getDimSize(d));
        if (auto scatter = dyn_cast<ReduceScatterOp>(g.getOperation()))
          w.s("reduce", scatter.getReduce());
        // overlap_param_gather (mt.all_gather's description).
        if (auto gather = dyn_cast<AllGatherOp>(g.getOperation()); gather && gather.getDeferred())
          w.i("deferred", 1);
        if (auto gather = dyn_cast<AllGatherOp>(g.getOperation());
            gather && gather.getLoadBalanced())
          w.i("load_balanced", 1);
        return true;
      })
      .Case([&](AllReduceOp a) {
        w.i("n", numel(a.getInput())).s("axis", a.getAxis()).s("reduce", a.getReduce());
        return true;
      })
      .Case([&](ScaleOp s) {
        w.i("n", numel(s.getInput())).f("factor", s.getFactor().convertToDouble());
        return true;
      })
      .Case([&](ScaleByOp s) {
        w.i("n", numel(s.getInput()));
        if (s.getInverse())
          w.i("inverse", 1);
        return true;
      })
      .Case([&](NumTokensOp t) {
        w.i("n", numel(t.getMask()));
        return true;
      })
      .Case([&](LinearOp l) {
        linearDims(w, l.getWeight(), l.getInput());
        w.i("has_bias", l.getBias() ? 1 : 0);
        return true;
      })
      .Case([&](LinearGradInputOp l) { linearDims(w, l.getWeight(), l.getDy()); return true; })
      .Case([&](LinearGradWeightOp l) { linearDims(w, l.getDweight(), l.getDy()); return true; })
      .Case([&](BiasGradOp b) {
        w.i("tokens", numel(b.getDy()) / dim(b.getDy(), -1)).i("out", dim(b.getDy(), -1));
        return true;
      })
      .Case<RMSNormOp, RMSNormGradOp, LayerNormOp, LayerNormGradOp, AddRMSNormOp,
            AddRMSNormGradOp>([&](auto n) {
        Value x = n.getInput();
        w.i("rows", numel(x) / dim(x, -1)).i("dim", dim(x, -1))
            .f("eps", n.getEps().convertToDouble());
        return true;
      })
      .Case([&](RotaryOp r) { rotaryAttrs(w, r, r.getInput()); return true; })
      .Case([&](RotaryGradOp r) { rotaryAttrs(w, r, r.getDy()); return true; })
      .Case([&](AttentionOp a) { attentionAttrs(w, a, a.getQuery()); return true; })
      .Case([&](AttentionGradOp a) { attentionAttrs(w, a, a.getQuery()); return true; })
      .Case([&](AttentionBlockOp a) { attentionBlockAttrs(w, a); return true; })
      .Case([&](AttentionBlockGradOp a) { attentionBlockAttrs(w, a); return true; })
      .Case([&](AttentionMergeOp m) { attentionMergeAttrs(w, m.getOutA()); return true; })
      .Case([&](AttentionMergeGradOp m) { attentionMergeAttrs(w, m.getOutA()); return true; })
      .Case([&](RingShiftOp r) {
        w.i("n", numel(r.getInput())).s("axis", r.getAxis());
        if (r.getReverse())
          w.i("reverse", 1);
        return true;
      })
      .Case([&](BiasAddOp a) {
        w.i("rows", numel(a.getInput()) / dim(a.getInput(), -1)).i("dim", dim(a.getInput(), -1));
        return true;
      })
      .Case<SwiGLUOp, AddOp, ZerosOp, SwiGLUGradOp>([&](auto o) {
        w.i("n", numel(o->getResult(0)));
        return true;
      })
      .Case([&](SplitQKVOp o) {
        qkvAttrs(w, o.getInput(), o.getQ(), o.getK());
        return true;
      })
      .Case([&](ConcatQKVOp o) {
        qkvAttrs(w, o.getResult(), o.getDq(), o.getDk());
        return true;
      })
      .Case([&](SplitQKVRotaryOp o) {
        rotaryAttrs(w, o, o.getQ());
        w.i("dim", dim(o.getInput(), -1)).i("kv_heads", dim(o.getK(), 2));
        return true;
      })
      .Case([&](RotaryConcatQKVOp o) {
        rotaryAttrs(w, o, o.getDq());
        w.i("dim", dim(o.getResult(), -1)).i("kv_heads", dim(o.getDk(), 2));
        return true;
      })
      .Case<ChunkedSwiGLUOp, ChunkedSwiGLUGradOp, ChunkedSwiGLURecomputeGradOp>([&](auto o) {
        Value x = o.getInput(); // [..., 2 dim]
        w.i("rows", numel(x) / dim(x, -1)).i("dim", dim(x, -1) / 2);
        return true;
      })
      .Case([&](GELUOp g) {
        w.i("n", numel(g.getInput())).i("approximate_tanh", g.getApproximateTanh());
        return true;
      })
      .Case([&](GELUGradOp g) {
        w.i("n", numel(g.getInput())).i("approximate_tanh", g.getApproximateTanh());
        return true;
      })
      .Case<SigmoidGateOp, SigmoidGateGradOp>([&](auto g) {
        Value x = g.getInput();
        w.i("rows", numel(x) / dim(x, -1)).i("dim", dim(x, -1));
        return true;
      })
      .Case([&](MoERouterOp r) { routerAttrs(w, r); return true; })
      .Case([&](MoERouterGradOp r) { routerAttrs(w, r); return true; })
      .Case([&](MoERouterCountsOp r) {
        Value x = r.getInput();
        w.i("tokens", numel(x) / dim(x, -1)).i("hidden", dim(x, -1))
            .i("experts", dim(r.getWeight(), 0)).i("top_k", r.getTopK()).i("seq", dim(x, 1))
            .i("groups", dim(r.getCounts(), 0))
            .s("load_balancing_type", r.getLoadBalancingType().value_or("aux_loss"));
        return true;
      })
      .Case([&](MoEPermuteOp p) {
        permuteAttrs(w, p.getSlotRows(), p.getPermuted());
        w.i("experts", dim(p.getTokensPerExpert(), 0)).i("capacity", p.getCapacity().value_or(0))
            .i("pad_to_capacity", p.getPadToCapacity()).s("drop_policy", p.getDropPolicy().value_or("probs"));
        return true;
      })
      .Case([&](MoEPermuteGradOp p) {
        permuteAttrs(w, p.getSlotRows(), p.getDpermuted());
        return true;
      })
      .Case<MoEUnpermuteOp, MoEUnpermuteGradOp>([&](auto u) {
        permuteAttrs(w, u.getSlotRows(), u.getInput());
        return true;
      })
      .Case<MoEGroupedMLPOp, MoEGroupedMLPGradOp>([&](auto g) {
        w.i("rows", dim(g.getInput(), 0)).i("hidden", dim(g.getInput(), 1))
            .i("ffn", dim(g.getGate(), 1)).i("experts", dim(g.getGate(), 0));
        return true;
      })
      .Case<CrossEntropyOp, CrossEntropyGradOp>([&](auto c) {
        Value logits = c.getLogits();
        w.i("tokens", numel(logits) / dim(logits, -1)).i("vocab", dim(logits, -1));
        return true;
      })
      .Case<VocabParallelLogitsMaxOp, VocabParallelPredictedLogitsOp,
            VocabParallelCrossEntropyGradOp>([&](auto c) {
        Value logits = c.getLogits();
        w.i("tokens", numel(logits) / dim(logits, -1)).i("vocab", dim(logits, -1))
            .s("axis", c.getAxis());
        if (auto valid = c.getValidVocab())
          w.i("valid_vocab", *valid);
        return true;
      })
      .Case([&](CrossEntropyLossOp c) {
        w.i("tokens", numel(c.getMask()));
        return true;
      })
      .Case([&](SumSquaresOp g) {
        std::string flags;
        for (bool r : g.getReplicated().value_or(ArrayRef<bool>()))
          flags += r ? '1' : '0';
        if (!flags.empty())
          w.s("replicated", flags);
        w.i("replicas", g.getReplicasAttr().getInt());
        return true;
      })
      .Case([&](SqrtOp) { return true; })
      .Case([&](CheckFiniteOp) { return true; })
      .Case([&](ClipCoefficientOp c) {
        w.f("max_norm", c.getMaxNorm().convertToDouble());
        return true;
      })
      .Case([&](LRScheduleOp s) {
        w.f("max_lr", s.getMaxLr().convertToDouble())
            .f("min_lr", s.getMinLr().convertToDouble())
            .i("warmup_steps", s.getWarmupSteps())
            .i("decay_steps", s.getDecaySteps()).s("style", s.getStyle());
        return true;
      })
      .Case([&](AdamWOp a) {
        w.i("n", numel(a.getParam())).f("beta1", a.getBeta1().convertToDouble())
            .f("beta2", a.getBeta2().convertToDouble())
            .f("eps", a.getEps().convertToDouble())
            .f("weight_decay", a.getWeightDecay().convertToDouble());
        return true;
      })
      .Default([](Operation *) { return false; });
  if (!known)
    return op->emitOpError() << "has no lowering to a plan instruction";
  if (std::string bad = plan::checkAttributes(*signature, instr); !bad.empty())
    return op->emitOpError() << "lowers to a '" << signature->name
                             << "' instruction that its ODS record refuses: " << bad;
  return success();
}

} // namespace mt
