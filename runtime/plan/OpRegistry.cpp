// The table of plan instructions (OpTable.inc) and the check of one
// instruction against it.
#include "runtime/plan/OpRegistry.h"

#include "runtime/support/CheckedMath.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>
#include <stdexcept>

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

/// The table of OpTable.inc, its notations parsed. The generator checked
/// them (tools/mt-tblgen), so a parse error here is a corrupt table.
std::vector<OpSignature> makeTable() {
  std::vector<OpSignature> table;
  auto add = [&](Op id, const char *name, const char *mlirOp, OpFamily family, int minInputs,
                 int maxInputs, int outputs, bool adds, const char *attributes,
                 const char *elements) {
    OpSignature op{id, name, mlirOp, family, minInputs, maxInputs, outputs, adds, {}, {}};
    std::string error;
    if (!parseAttributes(attributes, op.attributes, error) ||
        !parseElements(elements, op.attributes, op.elements, error))
      throw std::logic_error("runtime/plan/OpTable.inc, " + op.name + ": " + error);
    table.push_back(std::move(op));
  };
#define MT_OP(name, mlirOp, family, ...) add(Op::name, #name, mlirOp, OpFamily::family, __VA_ARGS__);
#include "runtime/plan/OpTable.inc"
#undef MT_OP
  return table;
}

} // namespace

int64_t elementsOf(const Buffer &b) { return checkedProduct(b.shape()).value_or(-1); }

const std::vector<OpSignature> &allOps() {
  static const std::vector<OpSignature> table = makeTable();
  return table;
}

const OpSignature &signature(Op op) { return allOps()[size_t(op)]; }

namespace {
using Index = std::map<std::string, const OpSignature *>;

/// The table's entries by `key` (entries whose key is empty left out).
Index indexBy(std::string OpSignature::*key) {
  Index index;
  for (const OpSignature &op : allOps())
    if (!(op.*key).empty())
      index[op.*key] = &op;
  return index;
}

const OpSignature *lookup(const Index &index, const std::string &key) {
  auto it = index.find(key);
  return it == index.end() ? nullptr : it->second;
}
} // namespace

const OpSignature *findOp(const std::string &name) {
  static const Index byName = indexBy(&OpSignature::name);
  return lookup(byName, name);
}

std::optional<Op> opOf(const Instruction &instr) {
  const OpSignature *op = findOp(instr.op());
  return op ? std::optional(op->id) : std::nullopt;
}

const OpSignature *findOpLoweredFrom(const std::string &mlirOp) {
  static const Index byOp = indexBy(&OpSignature::mlirOp);
  return lookup(byOp, mlirOp);
}

const AttrSpec *OpSignature::attribute(const std::string &attr) const {
  for (const AttrSpec &a : attributes)
    if (a.name == attr)
      return &a;
  return nullptr;
}

/// Attributes are checked non-negative, not bounded: products saturate, so
/// an overflowing one matches no buffer instead of wrapping onto one.
std::vector<int64_t> OpSignature::counts(const Attrs &attrs) const {
  std::vector<int64_t> out;
  for (const ElementCount &c : elements) {
    if (!c.guard.empty() && attrs.i(c.guard) == 0)
      continue; // an absent optional operand
    if (c.unchecked) {
      out.push_back(-1);
      continue;
    }
    std::vector<int64_t> factors;
    for (const std::string &f : c.factors)
      factors.push_back(std::isdigit(static_cast<unsigned char>(f[0])) ? std::stoll(f)
                                                                        : attrs.i(f));
    int64_t product = checkedProduct(factors).value_or(std::numeric_limits<int64_t>::max());
    if (!c.divisor.empty())
      product /= std::max<int64_t>(attrs.i(c.divisor), 1);
    out.push_back(product);
  }
  return out;
}

namespace {

const char *kindName(AttrKind kind) {
  switch (kind) {
  case AttrKind::Int:
    return "integer";
  case AttrKind::Float:
    return "float";
  case AttrKind::String:
    return "string";
  }
  return "";
}

} // namespace

std::string checkAttributes(const OpSignature &op, const Instruction &instr) {
  Attrs attrs(instr);
  for (const AttrSpec &spec : op.attributes) {
    const Attribute *a = attrs.find(spec.name);
    if (!a && !spec.required)
      continue;
    switch (spec.kind) {
    case AttrKind::Int:
      if (!a || !a->has_i() || a->i() < 0)
        return "missing or negative integer attribute '" + spec.name + "'";
      break;
    case AttrKind::Float:
      if (!a || !a->has_f())
        return "missing float attribute '" + spec.name + "'";
      break;
    case AttrKind::String:
      if (!a || !a->has_s())
        return "missing string attribute '" + spec.name + "'";
      if (!spec.choices.empty() &&
          std::find(spec.choices.begin(), spec.choices.end(), a->s()) == spec.choices.end()) {
        std::string list;
        for (const std::string &v : spec.choices)
          list += (list.empty() ? "" : ", ") + v;
        return "attribute '" + spec.name + "' must be one of " + list + ", got '" + a->s() +
               "'";
      }
      break;
    }
  }
  for (const Attribute &a : instr.attributes())
    if (!op.attribute(a.name())) {
      std::string list;
      for (const AttrSpec &spec : op.attributes)
        list += (list.empty() ? "" : ", ") + spec.name + " (" + kindName(spec.kind) + ")";
      return "attribute '" + a.name() + "' is not one of " + op.name + "'s: " +
             (list.empty() ? "it has none" : list);
    }
  return "";
}

Status checkInstructions(const Plan &plan) {
  for (const Program &program : plan.programs())
    for (int i = 0; i < program.instructions_size(); ++i)
      if (Status s = checkInstruction(plan, program, i); !s)
        return s;
  return Status::ok();
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
  if (std::string bad = checkAttributes(*op, instr); !bad.empty())
    return fail(bad);
  std::vector<uint32_t> ids(instr.inputs().begin(), instr.inputs().end());
  ids.insert(ids.end(), instr.outputs().begin(), instr.outputs().end());
  for (uint32_t id : ids)
    if (id >= uint32_t(plan.buffers_size()))
      return fail("buffer " + std::to_string(id) + " out of range (the plan has " +
                  std::to_string(plan.buffers_size()) + " buffers)");
  std::vector<int64_t> expected = op->counts(Attrs(instr));
  for (size_t i = 0; i < ids.size() && i < expected.size(); ++i) {
    const Buffer &b = plan.buffers(ids[i]);
    if (expected[i] >= 0 && elementsOf(b) != expected[i])
      return fail("buffer " + std::to_string(ids[i]) + " '" + b.name() + "' has " +
                  std::to_string(elementsOf(b)) + " elements, the op needs " +
                  std::to_string(expected[i]));
  }
  if (instr.has_workspace()) {
    const uint32_t w = instr.workspace();
    if (w >= uint32_t(plan.buffers_size()))
      return fail("workspace buffer " + std::to_string(w) + " out of range (the plan has " +
                  std::to_string(plan.buffers_size()) + " buffers)");
    const Buffer &b = plan.buffers(w);
    if (b.arena() != ACTIVATIONS || b.dtype() != F32 || b.parts_size() > 0)
      return fail("workspace buffer " + std::to_string(w) + " '" + b.name() +
                  "' is not an f32 buffer of the ACTIVATIONS arena");
    if (std::find(ids.begin(), ids.end(), w) != ids.end())
      return fail("workspace buffer " + std::to_string(w) + " '" + b.name() +
                  "' is also an input or output of the instruction");
  }
  return Status::ok();
}

bool addsIntoOutputs(const std::string &op) {
  const OpSignature *signature = findOp(op);
  return signature && signature->addsIntoOutputs;
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
