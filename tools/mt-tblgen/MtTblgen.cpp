// mt-tblgen: writes runtime/plan/OpTable.inc, the plan instructions of the
// `mt` dialect, from the Mt_Instruction records of its ODS
// (dialects/mt/MtInstructions.td), so that the runtime (which never links
// MLIR) checks plans against the op definitions. One line per instruction:
// name, op, profile family, operand counts from the ODS operands and results,
// whether it adds into its outputs, attributes and element counts.
#include "runtime/plan/OpSpec.h"

#include "mlir/TableGen/Operator.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/TableGen/Error.h"
#include "llvm/TableGen/Main.h"
#include "llvm/TableGen/Record.h"

#include <map>

using namespace llvm;

namespace {

struct Entry {
  std::string op; // "mt.linear"; empty for an instruction no op lowers to
  std::string family, attributes, elements;
  int minInputs = 0, maxInputs = 0, outputs = 0;
  bool adds = false;
  ArrayRef<SMLoc> loc;
};

/// Operand (or result) counts of an op: optional ones lower the minimum,
/// a variadic one makes the maximum unbounded (-1).
template <typename Range> std::pair<int, int> countValues(const Range &values) {
  int min = 0, max = 0;
  for (const mlir::tblgen::NamedTypeConstraint &v : values) {
    if (v.isVariadic())
      max = -1;
    else if (!v.isOptional())
      ++min;
    if (max >= 0 && !v.isVariadic())
      ++max;
  }
  return {min, max};
}

/// Collapses the whitespace of a multi-line TableGen string.
std::string oneLine(StringRef text) {
  std::string out;
  for (char c : text) {
    bool space = c == ' ' || c == '\n' || c == '\t';
    if (space && (out.empty() || out.back() == ' '))
      continue;
    out += space ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

bool check(const std::string &name, const Entry &e) {
  std::vector<mt::plan::AttrSpec> attrs;
  std::vector<mt::plan::ElementCount> counts;
  std::string error;
  if (!mt::plan::parseAttributes(e.attributes, attrs, error) ||
      !mt::plan::parseElements(e.elements, attrs, counts, error)) {
    PrintError(e.loc, "instruction '" + name + "': " + error);
    return false;
  }
  if (!counts.empty() && e.maxInputs < 0) {
    PrintError(e.loc, "instruction '" + name + "' has variadic inputs: leave its "
                      "element counts empty");
    return false;
  }
  if (!counts.empty() && int(counts.size()) != e.maxInputs + e.outputs) {
    PrintError(e.loc, "instruction '" + name + "' has " + std::to_string(e.maxInputs) +
                          " inputs and " + std::to_string(e.outputs) + " outputs but " +
                          std::to_string(counts.size()) + " element counts");
    return false;
  }
  return true;
}

bool emitOpTable(raw_ostream &os, const RecordKeeper &records) {
  std::map<std::string, Entry> entries;
  auto add = [&](std::string name, Entry e) {
    if (!mt::plan::detail::isIdentifier(name)) {
      PrintError(e.loc, "instruction name '" + name + "' is not an identifier");
      return false;
    }
    if (!check(name, e))
      return false;
    ArrayRef<SMLoc> loc = e.loc;
    if (!entries.emplace(name, std::move(e)).second) {
      PrintError(loc, "a second definition of the instruction '" + name + "'");
      return false;
    }
    return true;
  };
  for (const Record *def : records.getAllDerivedDefinitions("Op")) {
    const RecordVal *value = def->getValue("instruction");
    if (!value || !isa<DefInit>(value->getValue()))
      continue; // no instruction (unset: `?`)
    const Record *instr = def->getValueAsDef("instruction");
    mlir::tblgen::Operator op(def);
    Entry e;
    e.op = op.getOperationName();
    e.family = instr->getValueAsString("family").str();
    e.attributes = oneLine(instr->getValueAsString("attributes"));
    e.elements = oneLine(instr->getValueAsString("elements"));
    auto [minIn, maxIn] = countValues(op.getOperands());
    auto [minOut, maxOut] = countValues(op.getResults());
    if (minOut != maxOut) {
      PrintError(def->getLoc(), e.op + ": an instruction has a fixed number of outputs");
      return true;
    }
    int extraIn = int(instr->getValueAsInt("extraInputs"));
    e.minInputs = minIn + extraIn;
    e.maxInputs = maxIn < 0 ? -1 : maxIn + extraIn;
    e.outputs = maxOut + int(instr->getValueAsInt("extraOutputs"));
    e.adds = def->getValueAsBit("addsIntoResults");
    e.loc = def->getLoc();
    std::string name = instr->getValueAsString("name").str();
    if (!add(name.empty() ? op.getOperationName().substr(op.getDialectName().size() + 1)
                          : name,
             std::move(e)))
      return true;
  }
  for (const Record *def : records.getAllDerivedDefinitions("Mt_PlanInstruction")) {
    Entry e;
    e.family = def->getValueAsString("family").str();
    e.attributes = oneLine(def->getValueAsString("attributes"));
    e.elements = oneLine(def->getValueAsString("elements"));
    e.minInputs = e.maxInputs = int(def->getValueAsInt("inputs"));
    e.outputs = int(def->getValueAsInt("outputs"));
    e.adds = def->getValueAsBit("addsIntoResults");
    e.loc = def->getLoc();
    if (!add(def->getValueAsString("name").str(), std::move(e)))
      return true;
  }

  os << "// The plan instructions of the mt dialect. Generated by tools/mt-tblgen from the\n"
        "// Mt_Instruction records of dialects/mt/*.td: do not edit; regenerate with\n"
        "//   cmake --build build --target update-op-table\n"
        "//\n"
        "// MT_OP(name, op, family, min inputs, max inputs (-1: any), outputs,\n"
        "//       adds into outputs, \"attributes\", \"element counts\")\n";
  for (const auto &[name, e] : entries)
    os << "MT_OP(" << name << ", \"" << e.op << "\", " << e.family << ", " << e.minInputs
       << ", " << e.maxInputs << ", " << e.outputs << ", " << (e.adds ? "true" : "false")
       << ", \"" << e.attributes << "\", \"" << e.elements << "\")\n";
  return false;
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM y(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "the plan instruction table of the mt dialect\n");
  return TableGenMain(argv[0], &emitOpTable);
}
