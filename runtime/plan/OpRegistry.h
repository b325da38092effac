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
};

const OpSignature *findOp(const std::string &name);
const std::vector<OpSignature> &allOps();

/// Checks one instruction against its signature and the buffer table.
Status checkInstruction(const Plan &plan, const Program &program, int index);

/// Elements of a buffer: the product of its shape; -1 when that overflows
/// int64_t (validatePlan refuses such buffers).
int64_t elementsOf(const Buffer &buffer);

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_OPREGISTRY_H
