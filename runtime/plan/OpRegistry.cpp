// The table of plan instructions and the check of one instruction against it.
#include "runtime/plan/OpRegistry.h"

#include "runtime/support/CheckedMath.h"

#include <algorithm>
#include <sstream>

namespace mt::plan {

const Attribute *Attrs::find(const std::string &name) const {
  for (const Attribute &a : instr_.attributes())
    if (a.name() == name)
      return &a;
  return nullptr;
}
int64_t Attrs::i(const std::string &name, int64_t fallback) const {
  const Attribute *a = find(name);
  return a && a->has_i() ? a->i() : fallback;
}
double Attrs::f(const std::string &name, double fallback) const {
  const Attribute *a = find(name);
  return a && a->has_f() ? a->f() : fallback;
}
std::string Attrs::s(const std::string &name) const {
  const Attribute *a = find(name);
  return a && a->has_s() ? a->s() : std::string();
}

namespace {

using Counts = std::vector<int64_t>;

/// Attributes are checked non-negative, not bounded: products saturate, so
/// an overflowing one matches no buffer instead of wrapping onto one.
int64_t mul(std::initializer_list<int64_t> factors) { return saturatingProduct(factors); }

std::vector<OpSignature> makeTable() {
  auto tok = [](const Attrs &a) { return a.i("tokens"); };
  auto rope = [](const Attrs &a) {
    return mul({a.i("batch"), a.i("seq"), a.i("heads"), a.i("head_dim")});
  };
  auto attn = [](const Attrs &a) {
    int64_t bs = mul({a.i("batch"), a.i("seq")}), d = a.i("head_dim");
    return Counts{mul({bs, a.i("heads"), d}), mul({bs, a.i("kv_heads"), d}),
                  mul({a.i("batch"), a.i("heads"), a.i("seq")})};
  };
  auto router = [](const Attrs &a) {
    int64_t t = a.i("tokens"), h = a.i("hidden"), e = a.i("experts"), k = a.i("top_k");
    return Counts{mul({t, h}), mul({e, h}), mul({t, k})};
  };
  // Inputs, the position ids when the instruction takes them, outputs.
  auto positions = [](const Attrs &a, Counts inputs, const Counts &outputs) {
    if (a.i("position_ids"))
      inputs.push_back(mul({a.i("batch"), a.i("seq")}));
    inputs.insert(inputs.end(), outputs.begin(), outputs.end());
    return inputs;
  };
  std::vector<std::string> linearAttrs = {"tokens", "in", "out"};
  std::vector<std::string> ropeAttrs = {"batch", "seq", "heads", "head_dim"};
  std::vector<std::string> attnAttrs = {"batch", "seq", "heads", "kv_heads", "head_dim"};
  std::vector<std::string> routerAttrs = {"tokens", "hidden", "experts", "top_k"};
  std::vector<std::pair<std::string, std::vector<std::string>>> balancing = {
      {"load_balancing_type", {"aux_loss", "seq_aux_loss", "none"}}};
  auto grouped = [](const Attrs &a) {
    return Counts{mul({a.i("rows"), a.i("hidden")}), a.i("experts"),
                  mul({a.i("experts"), a.i("ffn"), a.i("hidden")})};
  };
  std::vector<std::string> permuteAttrs = {"tokens", "hidden", "experts", "top_k", "rows",
                                           "capacity", "pad_to_capacity"};
  std::vector<std::string> unpermuteAttrs = {"tokens", "hidden", "top_k", "rows"};
  std::vector<std::string> groupedAttrs = {"rows", "hidden", "ffn", "experts"};
  auto n = [](const Attrs &a) { return a.i("n"); };
  return {
      {"embedding", 2, 2, 1, {"tokens", "vocab", "hidden"}, {}, [&](const Attrs &a) {
         return Counts{a.i("tokens"), mul({a.i("vocab"), a.i("hidden")}),
                       mul({a.i("tokens"), a.i("hidden")})};
       }},
      {"embedding_grad", 2, 2, 1, {"tokens", "vocab", "hidden"}, {}, [](const Attrs &a) {
         return Counts{a.i("tokens"), mul({a.i("tokens"), a.i("hidden")}),
                       mul({a.i("vocab"), a.i("hidden")})};
       }},
      {"linear", 2, 3, 1, linearAttrs, {}, [tok](const Attrs &a) {
         Counts c{mul({tok(a), a.i("in")}), mul({a.i("out"), a.i("in")})};
         if (a.i("has_bias"))
           c.push_back(a.i("out"));
         c.push_back(mul({tok(a), a.i("out")}));
         return c;
       }},
      {"linear_grad_input", 2, 2, 1, linearAttrs, {}, [tok](const Attrs &a) {
         return Counts{mul({tok(a), a.i("out")}), mul({a.i("out"), a.i("in")}),
                       mul({tok(a), a.i("in")})};
       }},
      {"linear_grad_weight", 2, 2, 1, linearAttrs, {}, [tok](const Attrs &a) {
         return Counts{mul({tok(a), a.i("in")}), mul({tok(a), a.i("out")}),
                       mul({a.i("out"), a.i("in")})};
       }},
      {"bias_add", 2, 2, 1, {"rows", "dim"}, {}, [](const Attrs &a) {
         int64_t x = mul({a.i("rows"), a.i("dim")});
         return Counts{x, a.i("dim"), x};
       }},
      {"bias_grad", 1, 1, 1, {"tokens", "out"}, {}, [tok](const Attrs &a) {
         return Counts{mul({tok(a), a.i("out")}), a.i("out")};
       }},
      {"rmsnorm", 2, 2, 1, {"rows", "dim"}, {"eps"}, [](const Attrs &a) {
         int64_t x = mul({a.i("rows"), a.i("dim")});
         return Counts{x, a.i("dim"), x};
       }},
      {"rmsnorm_grad", 3, 3, 2, {"rows", "dim"}, {"eps"}, [](const Attrs &a) {
         int64_t x = mul({a.i("rows"), a.i("dim")});
         return Counts{x, a.i("dim"), x, x, a.i("dim")};
       }},
      {"layernorm", 3, 3, 1, {"rows", "dim"}, {"eps"}, [](const Attrs &a) {
         int64_t x = mul({a.i("rows"), a.i("dim")});
         return Counts{x, a.i("dim"), a.i("dim"), x};
       }},
      {"layernorm_grad", 3, 3, 3, {"rows", "dim"}, {"eps"}, [](const Attrs &a) {
         int64_t x = mul({a.i("rows"), a.i("dim")});
         return Counts{x, a.i("dim"), x, x, a.i("dim"), a.i("dim")};
       }},
      // position_ids = 1: one more input, the [batch, seq] i32 positions.
      {"rotary", 1, 2, 1, ropeAttrs, {"theta"}, [rope, positions](const Attrs &a) {
         return positions(a, {rope(a)}, {rope(a)});
       }},
      {"rotary_grad", 1, 2, 1, ropeAttrs, {"theta"}, [rope, positions](const Attrs &a) {
         return positions(a, {rope(a)}, {rope(a)});
       }},
      {"attention", 3, 4, 2, attnAttrs, {"scale"}, [attn, positions](const Attrs &a) {
         Counts c = attn(a);
         return positions(a, {c[0], c[1], c[1]}, {c[0], c[2]});
       }},
      {"attention_grad", 6, 7, 3, attnAttrs, {"scale"}, [attn, positions](const Attrs &a) {
         Counts c = attn(a);
         return positions(a, {c[0], c[1], c[1], c[0], c[0], c[2]}, {c[0], c[1], c[1]});
       }},
      {"swiglu", 2, 2, 1, {"n"}, {}, [n](const Attrs &a) { return Counts(3, n(a)); }},
      {"swiglu_grad", 3, 3, 2, {"n"}, {}, [n](const Attrs &a) { return Counts(5, n(a)); }},
      {"gelu", 1, 1, 1, {"n"}, {}, [n](const Attrs &a) { return Counts(2, n(a)); }},
      {"gelu_grad", 2, 2, 1, {"n"}, {}, [n](const Attrs &a) { return Counts(3, n(a)); }},
      {"add", 2, 2, 1, {"n"}, {}, [n](const Attrs &a) { return Counts(3, n(a)); }},
      {"fill_zero", 0, 0, 1, {"n"}, {}, [n](const Attrs &a) { return Counts{n(a)}; }},
      {"accumulate", 1, 1, 1, {"n"}, {}, [n](const Attrs &a) { return Counts(2, n(a)); }},
      {"all_reduce", 1, 1, 1, {"n"}, {}, [n](const Attrs &a) { return Counts(2, n(a)); },
       {{"reduce", {"sum", "max", "mean"}}}},
      {"send", 1, 1, 0, {"n", "peer_virtual_stage"}, {}, [n](const Attrs &a) { return Counts{n(a)}; }},
      {"recv", 0, 0, 1, {"n", "peer_virtual_stage"}, {}, [n](const Attrs &a) { return Counts{n(a)}; }},
      {"all_gather", 1, 1, 1, {"outer", "run", "parts"}, {}, [](const Attrs &a) {
         int64_t small = mul({a.i("outer"), a.i("run")});
         return Counts{small, mul({small, a.i("parts")})};
       }},
      {"reduce_scatter", 1, 1, 1, {"outer", "run", "parts"}, {}, [](const Attrs &a) {
         int64_t small = mul({a.i("outer"), a.i("run")});
         return Counts{mul({small, a.i("parts")}), small};
       }, {{"reduce", {"sum", "mean"}}}},
      {"all_slice", 1, 1, 1, {"outer", "run", "parts"}, {}, [](const Attrs &a) {
         int64_t small = mul({a.i("outer"), a.i("run")});
         return Counts{mul({small, a.i("parts")}), small};
       }},
      {"all_to_all_v", 3, 3, 1, {"rows_in", "rows_out", "row", "parts"}, {}, [](const Attrs &a) {
         return Counts{mul({a.i("rows_in"), a.i("row")}), a.i("parts"), a.i("parts"),
                       mul({a.i("rows_out"), a.i("row")})};
       }},
      {"moe_exchange_counts", 1, 1, 4, {"experts", "parts"}, {}, [](const Attrs &a) {
         int64_t e = a.i("experts"), p = std::max<int64_t>(a.i("parts"), 1);
         return Counts{e, p, p, e, e / p};
       }},
      {"moe_sort_chunks", 2, 2, 1, {"rows", "hidden", "parts", "groups", "inverse"}, {},
       [](const Attrs &a) {
         int64_t rows = mul({a.i("rows"), a.i("hidden")});
         return Counts{rows, mul({a.i("parts"), a.i("groups")}), rows};
       }},
      {"moe_router", 2, 2, 3, routerAttrs, {"aux_loss_coeff"}, [router](const Attrs &a) {
         Counts c = router(a);
         return Counts{c[0], c[1], c[2], c[2], 1};
       }, balancing},
      {"moe_router_grad", 4, 4, 2, routerAttrs, {"aux_loss_coeff"}, [router](const Attrs &a) {
         Counts c = router(a);
         return Counts{c[0], c[1], c[2], 1, c[0], c[1]};
       }, balancing},
      {"sigmoid_gate", 2, 2, 1, {"rows", "dim"}, {}, [](const Attrs &a) {
         int64_t x = mul({a.i("rows"), a.i("dim")});
         return Counts{a.i("rows"), x, x};
       }},
      {"sigmoid_gate_grad", 3, 3, 2, {"rows", "dim"}, {}, [](const Attrs &a) {
         int64_t x = mul({a.i("rows"), a.i("dim")});
         return Counts{a.i("rows"), x, x, a.i("rows"), x};
       }},
      // MoE token permutation (dialects/mt/MtMoEOps.td).
      {"moe_permute", 3, 3, 3, permuteAttrs, {}, [](const Attrs &a) {
         int64_t slots = mul({a.i("tokens"), a.i("top_k")});
         return Counts{mul({a.i("tokens"), a.i("hidden")}), slots, slots,
                       mul({a.i("rows"), a.i("hidden")}), a.i("experts"), slots};
       }, {{"drop_policy", {"probs", "position"}}}},
      {"moe_permute_grad", 2, 2, 1, unpermuteAttrs, {}, [](const Attrs &a) {
         return Counts{mul({a.i("rows"), a.i("hidden")}), mul({a.i("tokens"), a.i("top_k")}),
                       mul({a.i("tokens"), a.i("hidden")})};
       }},
      {"moe_unpermute", 3, 3, 1, unpermuteAttrs, {}, [](const Attrs &a) {
         int64_t slots = mul({a.i("tokens"), a.i("top_k")});
         return Counts{mul({a.i("rows"), a.i("hidden")}), slots, slots,
                       mul({a.i("tokens"), a.i("hidden")})};
       }},
      {"moe_unpermute_grad", 4, 4, 2, unpermuteAttrs, {}, [](const Attrs &a) {
         int64_t slots = mul({a.i("tokens"), a.i("top_k")}), rows = mul({a.i("rows"), a.i("hidden")});
         int64_t tokens = mul({a.i("tokens"), a.i("hidden")});
         return Counts{rows, slots, slots, tokens, rows, slots};
       }},
      {"moe_grouped_mlp", 5, 5, 1, groupedAttrs, {}, [grouped](const Attrs &a) {
         Counts c = grouped(a);
         return Counts{c[0], c[1], c[2], c[2], c[2], c[0]};
       }},
      {"moe_grouped_mlp_grad", 6, 6, 4, groupedAttrs, {}, [grouped](const Attrs &a) {
         Counts c = grouped(a);
         return Counts{c[0], c[1], c[2], c[2], c[2], c[0], c[0], c[2], c[2], c[2]};
       }},
      {"cross_entropy", 3, 3, 1, {"tokens", "vocab"}, {}, [](const Attrs &a) {
         int64_t t = a.i("tokens");
         return Counts{mul({t, a.i("vocab")}), t, t, 1};
       }},
      {"cross_entropy_grad", 4, 4, 1, {"tokens", "vocab"}, {}, [](const Attrs &a) {
         int64_t t = a.i("tokens"), l = mul({t, a.i("vocab")});
         return Counts{l, t, t, 1, l};
       }},
      {"vocab_parallel_logits_max", 1, 1, 1, {"tokens", "vocab"}, {}, [](const Attrs &a) {
         int64_t t = a.i("tokens");
         return Counts{mul({t, a.i("vocab")}), t};
       }},
      {"vocab_parallel_predicted_logits", 3, 3, 2, {"tokens", "vocab"}, {}, [](const Attrs &a) {
         int64_t t = a.i("tokens");
         return Counts{mul({t, a.i("vocab")}), t, t, t, t};
       }},
      {"cross_entropy_loss", 4, 4, 1, {"tokens"}, {}, [tok](const Attrs &a) {
         return Counts{tok(a), tok(a), tok(a), tok(a), 1};
       }},
      {"vocab_parallel_cross_entropy_grad", 6, 6, 1, {"tokens", "vocab"}, {}, [](const Attrs &a) {
         int64_t t = a.i("tokens"), l = mul({t, a.i("vocab")});
         return Counts{l, t, t, t, t, 1, l};
       }},
      {"sum_squares", 1, -1, 1, {"replicas"}, {}, nullptr},
      {"sqrt", 1, 1, 1, {}, {}, [](const Attrs &) { return Counts{1, 1}; }},
      {"check_finite", 1, 1, 0, {}, {}, [](const Attrs &) { return Counts{1}; }},
      {"clip_coefficient", 1, 1, 1, {}, {"max_norm"}, [](const Attrs &) { return Counts{1, 1}; }},
      {"lr_schedule", 1, 1, 1, {"warmup_steps", "decay_steps"}, {"max_lr", "min_lr"},
       [](const Attrs &) { return Counts{1, 1}; }},
      {"adamw", 7, 7, 3, {"n"}, {"beta1", "beta2", "eps", "weight_decay"}, [n](const Attrs &a) {
         return Counts{n(a), n(a), n(a), n(a), 1, 1, 1, n(a), n(a), n(a)};
       }},
  };
}

} // namespace

int64_t elementsOf(const Buffer &b) { return checkedProduct(b.shape()).value_or(-1); }

const std::vector<OpSignature> &allOps() {
  static const std::vector<OpSignature> table = makeTable();
  return table;
}

const OpSignature *findOp(const std::string &name) {
  for (const OpSignature &op : allOps())
    if (op.name == name)
      return &op;
  return nullptr;
}

Status checkInstruction(const Plan &plan, const Program &program, int index) {
  const Instruction &instr = program.instructions(index);
  std::ostringstream where;
  where << "program '" << program.name() << "' instruction " << index << " ("
        << instr.op() << (instr.location().empty() ? "" : ", " + instr.location())
        << "): ";
  auto fail = [&](const std::string &what) { return Status::error(where.str() + what); };
  const OpSignature *op = findOp(instr.op());
  if (!op)
    return fail("unknown op '" + instr.op() + "'");
  int inputs = instr.inputs_size();
  if (inputs < op->minInputs || (op->maxInputs >= 0 && inputs > op->maxInputs) ||
      instr.outputs_size() != op->outputs)
    return fail("expects " + std::to_string(op->minInputs) +
                (op->maxInputs == op->minInputs ? "" : "+") + " inputs and " +
                std::to_string(op->outputs) + " outputs, got " +
                std::to_string(inputs) + " and " + std::to_string(instr.outputs_size()));
  Attrs attrs(instr);
  for (const auto &name : op->intAttrs)
    if (!attrs.find(name) || !attrs.find(name)->has_i() || attrs.i(name) < 0)
      return fail("missing or negative integer attribute '" + name + "'");
  for (const auto &name : op->floatAttrs)
    if (!attrs.find(name) || !attrs.find(name)->has_f())
      return fail("missing float attribute '" + name + "'");
  for (const auto &[name, valid] : op->choices)
    if (const Attribute *a = attrs.find(name);
        a && (!a->has_s() || std::find(valid.begin(), valid.end(), a->s()) == valid.end())) {
      std::string list;
      for (const std::string &v : valid)
        list += (list.empty() ? "" : ", ") + v;
      return fail("attribute '" + name + "' must be one of " + list + ", got '" +
                  (a->has_s() ? a->s() : std::string("a non-string")) + "'");
    }
  std::vector<uint32_t> ids(instr.inputs().begin(), instr.inputs().end());
  ids.insert(ids.end(), instr.outputs().begin(), instr.outputs().end());
  for (uint32_t id : ids)
    if (id >= uint32_t(plan.buffers_size()))
      return fail("buffer " + std::to_string(id) + " out of range (the plan has " +
                  std::to_string(plan.buffers_size()) + " buffers)");
  if (!op->counts)
    return Status::ok();
  std::vector<int64_t> expected = op->counts(attrs);
  for (size_t i = 0; i < ids.size() && i < expected.size(); ++i) {
    const Buffer &b = plan.buffers(ids[i]);
    if (expected[i] >= 0 && elementsOf(b) != expected[i])
      return fail("buffer " + std::to_string(ids[i]) + " '" + b.name() + "' has " +
                  std::to_string(elementsOf(b)) + " elements, the op needs " +
                  std::to_string(expected[i]));
  }
  return Status::ok();
}

bool addsIntoOutputs(const std::string &op) {
  return op.find("_grad") != std::string::npos || op == "accumulate";
}

OutputUse outputUse(const std::string &op, bool zeroFilled, KernelOutput kernel) {
  if (!addsIntoOutputs(op)) {
    if (kernel == KernelOutput::Adds)
      return OutputUse::ErrorMustWriteButAdds;
    return zeroFilled ? OutputUse::WriteOverZeroFill : OutputUse::Write;
  }
  if (!zeroFilled)
    return kernel == KernelOutput::Writes ? OutputUse::ErrorMustAddButWrites
                                          : OutputUse::AddToEarlierValues;
  // Adding into zeros is writing: a kernel that can write replaces the fill.
  return kernel == KernelOutput::Adds ? OutputUse::AddIntoZeroFill
                                      : OutputUse::WriteOverZeroFill;
}

} // namespace mt::plan
