// Declarations and registration of the passes of mtc (passes/Passes.td).
#ifndef MT_PASSES_PASSES_H
#define MT_PASSES_PASSES_H

#include "dialects/mt/MtDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

namespace mt {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mt

#endif // MT_PASSES_PASSES_H
