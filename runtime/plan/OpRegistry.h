// The instructions a plan may contain: for each op, its operands, results
// and attributes, and the element count every buffer must have, read from
// OpTable.inc (generated from the ODS of the mt dialect). The plan loader
// checks every instruction against this table before anything runs, and the
// backends' kernel tables are indexed by it (PerOp).
#ifndef MT_RUNTIME_PLAN_OPREGISTRY_H
#define MT_RUNTIME_PLAN_OPREGISTRY_H

#include "runtime/plan/OpSpec.h"
#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mt::plan {

/// Attribute lookup of one instruction.
class Attrs {
public:
  explicit Attrs(const Instruction &instr) : instr_(instr) {}
  const Attribute *find(const std::string &name) const;
  int64_t i(const std::string &name, int64_t fallback = 0) const;
  double f(const std::string &name, double fallback = 0) const;
  std::string s(const std::string &name) const;

private:
  const Instruction &instr_;
};

/// The profile's class of an instruction (the CUDA backend's step profile).
enum class OpFamily { Gemm, Attention, Norm, Loss, Elementwise, MoE, Fill, Optimizer, Collective, Pipeline };

/// The plan instructions: one per line of OpTable.inc, which tools/mt-tblgen
/// writes from the op definitions (dialects/mt/MtInstructions.td).
enum class Op : uint16_t {
#define MT_OP(name, ...) name,
#include "runtime/plan/OpTable.inc"
#undef MT_OP
};
inline constexpr size_t kOpCount = 0
#define MT_OP(...) +1
#include "runtime/plan/OpTable.inc"
#undef MT_OP
    ;

/// One instruction of the plan format, from its ODS definition.
struct OpSignature {
  Op id;
  std::string name;
  std::string mlirOp; // "mt.linear"; empty when no op lowers to it ("accumulate")
  OpFamily family;
  int minInputs, maxInputs; // maxInputs < 0: variadic
  int outputs;
  /// Whether instructions add into their outputs (+=) rather than write them
  /// (the backward ops and "accumulate"; runtime/cpu/Kernels.md). The plan
  /// zero-fills (fill_zero) an accumulated buffer before its first adder,
  /// except the main gradients, which the runtime zeroes at each step.
  bool addsIntoOutputs;
  std::vector<AttrSpec> attributes;
  /// Expected element counts of inputs then outputs; empty: not checked.
  std::vector<ElementCount> elements;

  const AttrSpec *attribute(const std::string &attr) const;
  /// The element counts `elements` gives for `attrs` (-1: not checked).
  std::vector<int64_t> counts(const Attrs &attrs) const;
};

const OpSignature *findOp(const std::string &name);
const OpSignature &signature(Op op);
/// The Op of `instr`; nullopt for a name the table lacks (validatePlan
/// refuses those before anything runs).
std::optional<Op> opOf(const Instruction &instr);
/// Whether `instr` is an `op` instruction. Rules about one op name it by
/// its enum, so that a renamed or removed op fails to compile instead of
/// silently never matching.
inline bool isOp(const Instruction &instr, Op op) { return instr.op() == signature(op).name; }
/// Every buffer `instr` reads or writes: its inputs, outputs and planned
/// kernel workspace (Instruction.workspace). Rules about byte overlaps
/// (reordering, overlapped transfers) must see the workspace too.
inline std::vector<uint32_t> buffersTouched(const Instruction &instr) {
  std::vector<uint32_t> ids(instr.inputs().begin(), instr.inputs().end());
  ids.insert(ids.end(), instr.outputs().begin(), instr.outputs().end());
  if (instr.has_workspace())
    ids.push_back(instr.workspace());
  return ids;
}
/// The buffers `instr` writes: its outputs and its planned workspace.
inline std::vector<uint32_t> buffersWritten(const Instruction &instr) {
  std::vector<uint32_t> ids(instr.outputs().begin(), instr.outputs().end());
  if (instr.has_workspace())
    ids.push_back(instr.workspace());
  return ids;
}
/// The instruction the op named `mlirOp` ("mt.zeros") lowers to; null: none.
const OpSignature *findOpLoweredFrom(const std::string &mlirOp);
const std::vector<OpSignature> &allOps();

/// A value per instruction (a backend's kernel table), indexed by Op; an
/// entry left empty is an instruction the backend has no kernel for.
template <typename T> class PerOp {
public:
  T &operator[](Op op) { return items_[size_t(op)]; }
  const T &operator[](Op op) const { return items_[size_t(op)]; }

private:
  std::array<T, kOpCount> items_{};
};

/// The entry of `table` for each instruction of `program`, in order; an
/// instruction whose entry is empty is an error that names the op, the
/// instruction and `backend`. The plan loader has checked every op name.
template <typename T>
Expected<std::vector<const T *>> resolveKernels(const Program &program, const PerOp<T> &table,
                                                const std::string &backend) {
  std::vector<const T *> resolved;
  for (int i = 0; i < program.instructions_size(); ++i) {
    const Instruction &instr = program.instructions(i);
    const OpSignature *op = findOp(instr.op());
    if (!op)
      return Status::error("program '" + program.name() + "' instruction " +
                           std::to_string(i) + ": unknown op '" + instr.op() + "'");
    if (!table[op->id])
      return Status::error("program '" + program.name() + "' instruction " +
                           std::to_string(i) + ": op '" + instr.op() + "' has no " + backend +
                           " kernel");
    resolved.push_back(&table[op->id]);
  }
  return resolved;
}

/// The attributes of `instr` against those `op` declares: each required one
/// present, each present one declared and of its kind; "" when they hold,
/// else what is wrong (naming the attribute and the valid ones).
std::string checkAttributes(const OpSignature &op, const Instruction &instr);

/// Checks one instruction against its signature and the buffer table (its
/// workspace, where it has one: an f32 ACTIVATIONS buffer of its own).
Status checkInstruction(const Plan &plan, const Program &program, int index);
/// checkInstruction over every instruction of every program: the first
/// error. readPlanDirectory runs it; so do the executors, for plans built
/// in memory (their kernels index inputs and outputs by position).
Status checkInstructions(const Plan &plan);

/// Elements of a buffer: the product of its shape; -1 when that overflows
/// int64_t (validatePlan refuses such buffers).
int64_t elementsOf(const Buffer &buffer);

/// OpSignature::addsIntoOutputs of the op named `op` (false when unknown).
bool addsIntoOutputs(const std::string &op);

/// What a backend kernel can do with one of its outputs.
enum class KernelOutput { Writes, Adds, WritesOrAdds };

/// How a kernel must treat one output so that the plan's meaning holds:
/// write it, write it in place of the zero-fill that was its last write
/// (the fill can be dropped), add into that zero-fill, or add to values
/// earlier instructions left; or it cannot (the two errors).
enum class OutputUse {
  Write,
  WriteOverZeroFill,
  AddIntoZeroFill,
  AddToEarlierValues,
  ErrorMustAddButWrites,  // the op adds to earlier values; the kernel only writes
  ErrorMustWriteButAdds,  // the op writes; the kernel only adds
};

/// The decision for an output of `op` whose last write in the program so far
/// was a fill_zero (`zeroFilled`), for a kernel that can do `kernel`.
OutputUse outputUse(const std::string &op, bool zeroFilled, KernelOutput kernel);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_OPREGISTRY_H
