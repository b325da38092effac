// The instructions a plan may contain: for each op, its operands, results
// and attributes, and the element count every buffer must have. The plan
// loader checks every instruction against this table before anything runs.
#ifndef MT_RUNTIME_PLAN_OPREGISTRY_H
#define MT_RUNTIME_PLAN_OPREGISTRY_H

#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <functional>
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

struct OpSignature {
  std::string name;
  int minInputs, maxInputs; // maxInputs < 0: variadic
  int outputs;
  std::vector<std::string> intAttrs, floatAttrs;
  /// Expected element counts of inputs then outputs (-1: not checked).
  std::function<std::vector<int64_t>(const Attrs &)> counts;
  /// String attributes and their valid values (an absent one takes the first).
  std::vector<std::pair<std::string, std::vector<std::string>>> choices = {};
};

const OpSignature *findOp(const std::string &name);
const std::vector<OpSignature> &allOps();

/// Checks one instruction against its signature and the buffer table.
Status checkInstruction(const Plan &plan, const Program &program, int index);

/// Elements of a buffer: the product of its shape; -1 when that overflows
/// int64_t (validatePlan refuses such buffers).
int64_t elementsOf(const Buffer &buffer);

/// Whether instructions of `op` add into their outputs (+=) rather than
/// write them: the backward ops ("*_grad") and "accumulate" add, every other
/// op writes (runtime/cpu/Kernels.md). The plan zero-fills (fill_zero) an
/// accumulated buffer before its first adder, except the main gradients,
/// which the runtime zeroes at the start of each step.
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
